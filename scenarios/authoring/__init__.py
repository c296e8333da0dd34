"""The scripts that wrote the bundled suites from the default population (kept so a suite can be regenerated
and reviewed); the suites themselves are the JSON files, which maintainers may also edit by hand."""
