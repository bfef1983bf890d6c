"""Clients of T.A.R.S.'s own services, for the CLI, tests and anyone scripting against them."""
