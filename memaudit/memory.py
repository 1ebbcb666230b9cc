"""Handing memory back to the OS during a long audit, so that resident memory stays flat however many samples
and checkpoints a run scores: pages of memory-mapped data, the C heap's free space, an accelerator's cache."""

from __future__ import annotations

import ctypes
import functools
import mmap


def release_pages(array) -> None:
    """Drop the pages of a memory-mapped array (a .npy or Megatron .bin file) from this process's resident
    memory; they stay in the OS page cache and are read back when touched again. Reading a large file
    chunk by chunk, and releasing after each pass or shard, keeps memory flat whatever the file's size."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            base.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # a platform or mapping that does not allow it: the pages just stay
            pass


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim from the symbols already loaded into this process, or None (another C library)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no dlopen(NULL)
        return None


def trim_heap() -> bool:
    """Return the C heap's free pages to the OS (glibc's malloc_trim); False where there is no such call.

    Why: once glibc has freed a large block it raises its mmap threshold (up to 32 MiB), so torch's per-batch
    temporaries on the CPU then come from the heap, whose free holes stay resident and fragment: resident
    memory crept up with the number of batches scored (a 100k-sample CPU audit: 609 MiB after the first
    batches, 677 MiB at the end), and the holes that loading a large data set left (a 1M-sample Megatron index)
    added ~50 MiB to the first batch's peak. Trimming before each shard bounds the growth by what one shard
    does, whatever the data's size, at the cost of one call per shard (a fixed mmap threshold would do it
    too, but made the forward pass about 50% slower)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def release_device(device) -> None:
    """Hand freed accelerator memory back (between checkpoints), so that a long series does not grow."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.empty_cache()
