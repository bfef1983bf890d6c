"""The one place that builds concrete implementations from `Settings`: SQLite or PostgreSQL,
the in-process bus or Redis, a local or a remote recorder. Entry points (the CLI, tests,
benchmarks) call it; nothing below it knows which implementation it was given.

Import the module you need (`tars.wiring.runtime`, `.security`, ...): this package imports nothing
itself, so a worker that needs the queue never loads the database or the auth stack.
"""
