"""Load the next checkpoint's model on a background thread while the current one is scored."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class ModelPrefetcher:
    """At most one load runs ahead of the model in use, so at most two models are in memory. Loads and the work
    queued with `after_loads` (evicting a revision from the HF cache) run on one thread, one at a time, in order."""

    def __init__(self, load: Callable[[Any], Any]):
        self._load = load
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memaudit-prefetch")
        self._pending: dict[str, Future] = {}
        self._queued: list[Future] = []

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

    def after_loads(self, work: Callable, *args) -> None:
        """Run `work(*args)` once the loads started so far are done, before any load started later: deleting a
        revision from the HF cache never races with a download into it (a blob the next revision shares, such as an
        identical generation_config.json, would be deleted under its new link). Its error is raised by `close`."""
        self._queued.append(self._pool.submit(work, *args))

    def close(self, raise_errors: bool = True) -> None:
        """Drop loads nobody will use; finish the queued work and (with `raise_errors`) raise its first error."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)
        errors = [f.exception() for f in self._queued if f.exception() is not None]
        if errors and raise_errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(raise_errors=exc[0] is None)  # never hides the error that is leaving the block
        return False
