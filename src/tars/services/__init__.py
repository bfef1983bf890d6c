"""Use cases shared by the APIs, the worker and the CLI."""
