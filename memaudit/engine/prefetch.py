"""Load the next checkpoint's model on a background thread while the current one is scored."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class ModelPrefetcher:
    """At most one load runs ahead of the model in use, so at most two models are in memory."""

    def __init__(self, load: Callable[[Any], Any]):
        self._load = load
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memaudit-prefetch")
        self._pending: dict[str, Future] = {}

    def _timed_load(self, ckpt) -> tuple[Any, float]:
        t = time.perf_counter()
        model = self._load(ckpt)
        return model, time.perf_counter() - t

    def prefetch(self, ckpt) -> None:
        """Start loading `ckpt` in the background (no-op when already started)."""
        if ckpt.identity not in self._pending:
            self._pending[ckpt.identity] = self._pool.submit(self._timed_load, ckpt)

    def get(self, ckpt) -> tuple[Any, float, float]:
        """The model of `ckpt`, the seconds its load (download included) took, and the seconds this call waited for
        it: all of the load when nothing prefetched it, the part still running otherwise."""
        started = time.perf_counter()
        self.prefetch(ckpt)
        model, load_s = self._pending.pop(ckpt.identity).result()
        return model, load_s, time.perf_counter() - started

    def close(self) -> None:
        """Drop loads nobody will use."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
