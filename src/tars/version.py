__version__ = "1.0.1"
# What /health and the `version` metric label carry; the playbook's queries match on "v1.0.1".
VERSION = f"v{__version__}"
