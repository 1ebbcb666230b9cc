"""One keyed file store under the cache folder, the base of the products cache, the tag cache and
the run journal: a key (a hex digest from memaudit.engine.identity) names one file, written atomically
(temp file, fsync, rename); a missing, unreadable or corrupt entry reads as None and is recomputed."""

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


class KeyedStore:
    """Entries `<root>/<kind>/<key[:2]>/<key><suffix>`; nothing is read or written when disabled."""

    def __init__(self, root: Path | None, kind: str, suffix: str, enabled: bool = True):
        self.root = Path(root or default_cache_dir()) / kind
        self.suffix = suffix
        self.enabled = enabled

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key[:40]}{self.suffix}"

    def read(self, key: str) -> bytes | None:
        """The entry's bytes, or None."""
        if not self.enabled:
            return None
        try:
            return self.path(key).read_bytes()
        except OSError:
            return None

    def write(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically."""
        if self.enabled:
            atomic_write_bytes(self.path(key), data)

    def read_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays of an `.npz` entry (read without pickle), or None when missing or corrupt."""
        data = self.read(key)
        if data is None:
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                return {name: f[name] for name in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None  # truncated or corrupt: recompute

    def write_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store arrays as one `.npz` entry."""
        if self.enabled:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            self.write(key, buffer.getvalue())
