"""Conformance tests of the FHIR server against R4 http.html and search.html (a package, so that these module
names cannot clash with test modules of the same name elsewhere)."""
