"""On-disk cache of per-token products, keyed by `memaudit.engine.identity.products_key` (weights, sample
tokens, scoring settings, scoring code). An entry that lacks a product or has the wrong shape counts
as missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memaudit.engine.store import KeyedStore


class ProductsCache:
    """Products of one (checkpoint, data set, settings) key, stored under `root/products/`."""

    def __init__(self, root: Path | None, enabled: bool = True):
        self.store = KeyedStore(root, "products", ".npz", enabled)
        self.enabled = enabled

    def get(self, key: str, needed: set[str], shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
        """The cached products if every `needed` one is there with `shape`; else None."""
        arrays = self.store.read_arrays(key)
        if arrays is None or not needed <= arrays.keys() or any(a.shape != shape for a in arrays.values()):
            return None
        return arrays

    def put(self, key: str, products: dict[str, np.ndarray]) -> None:
        """Store products, merged with any already cached for the same key."""
        shape = next(iter(products.values())).shape
        self.store.write_arrays(key, {**(self.get(key, set(), shape) or {}), **products})

    def get_generations(self, key: str) -> dict[str, np.ndarray] | None:
        """The generations stored under `key` (memaudit.engine.generations.Generations.arrays), or None."""
        return self.store.read_arrays(key)

    def put_generations(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store one data set's generations (their key is not a products key: nothing is merged)."""
        self.store.write_arrays(key, arrays)
