"""memaudit's version, below everything that records it (reports, Parquet metadata, journal keys)."""

__version__ = "0.1.0"
