"""Storage: the schema, the engine, the repository (sessions, versions, write log) and bulk loading."""
