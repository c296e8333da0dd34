"""Agents and the tools they act with: the FHIR tool set, the agent interface, and the agents that need no model
(reference, do-nothing)."""
