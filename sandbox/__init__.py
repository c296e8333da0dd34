"""FHIR Agent Sandbox."""
