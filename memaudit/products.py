"""On-disk cache of per-token products, keyed by `memaudit.identity.products_key` (weights, sample
tokens, scoring settings, scoring code).

Entries are `.npz` files written atomically (temp file + rename) and read without pickle. An
entry that fails to read, or lacks a product or has the wrong shape, counts as missing.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from memaudit.atomic import atomic_write_bytes


def default_cache_dir() -> Path:
    """`$MEMAUDIT_CACHE`, else `~/.cache/memaudit`."""
    return Path(os.environ.get("MEMAUDIT_CACHE") or Path.home() / ".cache" / "memaudit").expanduser()


class ProductsCache:
    """Products of one (checkpoint, data set, settings) key, stored under `root/products/`."""

    def __init__(self, root: Path | None, enabled: bool = True):
        self.root = Path(root or default_cache_dir()) / "products"
        self.enabled = enabled

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, needed: set[str], shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
        """The cached products if every `needed` one is there with `shape`; else None."""
        path = self._path(key)
        if not self.enabled or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None  # truncated or corrupt: recompute
        if not needed <= arrays.keys() or any(a.shape != shape for a in arrays.values()):
            return None
        return arrays

    def put(self, key: str, products: dict[str, np.ndarray]) -> None:
        """Store products atomically, merged with any already cached for the same key."""
        if not self.enabled:
            return
        shape = next(iter(products.values())).shape
        merged = {**(self.get(key, set(), shape) or {}), **products}
        buffer = io.BytesIO()
        np.savez(buffer, **merged)
        atomic_write_bytes(self._path(key), buffer.getvalue())
