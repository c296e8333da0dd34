"""The ``fhir-sandbox`` command line: the commands live in ``fhir_sandbox.commands``, a module per group."""

from __future__ import annotations

from .commands import app, population, runs, scenarios, server, staging  # noqa: F401 (they register the commands)

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
