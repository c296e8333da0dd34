"""Tests of the search engine (a package, so that these module names cannot clash with test modules elsewhere)."""
