"""Integrations: the `memaudit` command line and the pytest plugin (`pytest --memaudit`)."""
