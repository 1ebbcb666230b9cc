"""memaudit.memory: memory handed back to the OS during long audits (heap holes, memory-mapped pages)."""

import sys

import numpy as np
import pytest

from memaudit.memory import _malloc_trim, release_pages, trim_heap

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def _resident_mib(kind: str) -> float:
    """RssAnon or RssFile of this process, in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(f"{kind}:"))


@linux_only
@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_trim_heap_returns_free_holes_of_the_heap():
    big = bytearray(16 << 20)
    del big  # glibc raises its mmap threshold to 16 MiB: the blocks below now come from the heap
    blocks = [bytearray(1 << 20) for _ in range(100)]
    top = blocks[-1]  # keeps the heap's top in use, so that free() alone cannot shrink it
    del blocks
    held = _resident_mib("RssAnon")
    assert trim_heap() is True
    assert held - _resident_mib("RssAnon") > 80  # the ~99 MiB of free holes left our memory
    del top


@linux_only
def test_release_pages_drops_the_pages_of_a_memory_map(tmp_path):
    path = tmp_path / "tokens.npy"
    np.save(path, np.arange(16 << 20, dtype=np.int32).reshape(-1, 64))  # 64 MiB
    tokens = np.load(path, mmap_mode="r")
    before = _resident_mib("RssFile")
    assert int(tokens[::64].sum(dtype=np.int64)) > 0  # touches every page
    assert _resident_mib("RssFile") - before > 40
    release_pages(tokens[10:20])  # a view: its memory map is found through .base
    assert _resident_mib("RssFile") - before < 10


def test_release_pages_leaves_ordinary_arrays_alone():
    rows = np.ones((4, 8), dtype=np.int64)
    release_pages(rows)
    release_pages(rows[1:])
    assert rows.sum() == 32
