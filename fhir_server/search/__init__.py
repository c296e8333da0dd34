"""The search engine: index extraction on write, parsing and execution on read."""
