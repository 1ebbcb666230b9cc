"""memaudit: pytest-style memorization audits for series of language-model checkpoints.

Probe authors need only `probe` and `series_probe`; nothing here imports torch.
"""

from memaudit.registry import probe, series_probe

__version__ = "0.1.0"
__all__ = ["probe", "series_probe", "__version__"]
