"""Integrations: the `memaudit` command line, the pytest plugin (`pytest --memaudit`) and the transformers
Trainer callback (`MemauditCallback`)."""


def __getattr__(name: str):
    """`MemauditCallback` on first use (it imports transformers)."""
    if name in ("MemauditCallback", "CheckFailedWarning"):
        from memaudit.integrations import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'memaudit.integrations' has no attribute {name!r}")
