"""Persistence: tables, migrations and the query functions every entry point shares."""
