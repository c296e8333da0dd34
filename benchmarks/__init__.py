"""Benchmarks of the FHIR server: ``python -m benchmarks`` (see README.md)."""
