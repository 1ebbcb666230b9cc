"""Megatron-LM's indexed data sets (`name.bin` + `name.idx`, the "MMIDIDX" format Pythia's pre-tokenized
Pile ships in), read through numpy memory maps: nothing is loaded until a batch needs it.

`.idx`: the 9-byte header `MMIDIDX\\x00\\x00`, version (<u8, 1), token dtype code (<u1), sequence count (<u8),
document count (<u8), then the sequence lengths (int32), their byte offsets into `.bin` (int64) and the
document boundaries (int64). `.bin`: the tokens of every sequence, one after another. This reader is
tested against files written by megatron-core's own `IndexedDatasetBuilder` (tests/test_megatron.py);
megatron-core itself is not needed to read them (its import pulls in the training stack).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memaudit.errors import ConfigError

HEADER = b"MMIDIDX\x00\x00"
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
          8: np.uint16}


@dataclass
class IndexedTokens:
    """The sequences of a Megatron indexed data set, memory-mapped."""

    sizes: np.ndarray  # (sequences,) int32 tokens per sequence
    offsets: np.ndarray  # (sequences,) int64 offset of each sequence in `tokens`, in tokens
    tokens: np.ndarray  # (all tokens,) memory map of the .bin

    def __len__(self) -> int:
        return len(self.sizes)

    def rows(self, first: int, n: int, length: int) -> np.ndarray:
        """Sequences first..first+n-1 cut to `length` tokens: (n, length), a view of the memory map when the
        sequences lie evenly spaced (fixed-length data such as Pythia's), else a copy."""
        offsets = self.offsets[first:first + n]
        if n > 1 and np.all(np.diff(offsets) == offsets[1] - offsets[0]) and offsets[1] > offsets[0]:
            stride = int(offsets[1] - offsets[0]) * self.tokens.itemsize
            return np.lib.stride_tricks.as_strided(self.tokens[int(offsets[0]):], shape=(n, length),
                                                   strides=(stride, self.tokens.itemsize), writeable=False)
        return np.stack([self.tokens[int(o):int(o) + length] for o in offsets]) if n else \
            np.empty((0, length), self.tokens.dtype)


def prefix_of(path: Path) -> Path:
    """`data/pile.bin` or `data/pile.idx` -> `data/pile`."""
    return Path(path).with_suffix("")


def open_indexed(path: Path, name: str) -> IndexedTokens:
    """The data set at `path` (its .bin or .idx); a missing half, a bad header or sizes that do not fit
    the files are ConfigErrors naming data set `name`."""
    prefix = prefix_of(path)
    idx, bin_ = prefix.with_suffix(".idx"), prefix.with_suffix(".bin")
    where = f"Data set '{name}': '{prefix}.idx/.bin'"
    for part in (idx, bin_):
        if not part.is_file():
            raise ConfigError(f"{where}: no file '{part}'. A Megatron indexed data set is a .bin with its .idx next "
                              "to it (same name).")
    raw = idx.read_bytes()
    fixed = len(HEADER) + 8 + 1 + 8 + 8
    if len(raw) < fixed or raw[:len(HEADER)] != HEADER:
        raise ConfigError(f"{where}: '{idx}' is not a Megatron index (no MMIDIDX header). Give the .idx written "
                          "with its .bin (megatron-core's IndexedDatasetBuilder, or Pythia's batch viewer data).")
    version, code, n_seq, n_doc = struct.unpack("<QBQQ", raw[len(HEADER):fixed])
    if version != 1 or code not in DTYPES:
        raise ConfigError(f"{where}: index version {version}, token type code {code}: memaudit reads version 1 with "
                          f"type codes {sorted(DTYPES)}.")
    dtype = np.dtype(DTYPES[code])
    if not np.issubdtype(dtype, np.integer):
        raise ConfigError(f"{where}: the tokens are {dtype}, not integer token ids.")
    if len(raw) < fixed + n_seq * 12 + n_doc * 8:
        raise ConfigError(f"{where}: '{idx}' is cut short ({len(raw)} bytes for {n_seq} sequences).")
    sizes = np.frombuffer(raw, np.int32, n_seq, fixed)
    pointers = np.frombuffer(raw, np.int64, n_seq, fixed + n_seq * 4)
    n_bytes = bin_.stat().st_size
    if n_seq and (sizes.min() < 0 or pointers.min() < 0 or  # ends compared without a sum that could overflow
                  np.any(pointers > n_bytes - sizes.astype(np.int64) * dtype.itemsize) or
                  np.any(pointers % dtype.itemsize)):
        raise ConfigError(f"{where}: the index does not fit '{bin_}' ({n_bytes} bytes): were the two written "
                          "together?")
    end = int((pointers + sizes.astype(np.int64) * dtype.itemsize).max()) if n_seq else 0  # no overflow: checked
    if end != n_bytes:
        raise ConfigError(f"{where}: '{idx}' says its sequences of {dtype} tokens (type code {code}) end at byte "
                          f"{end}, but '{bin_}' holds {n_bytes} bytes. The index belongs to another .bin, or its "
                          "token type is wrong: write the two together (megatron-core's IndexedDatasetBuilder).")
    tokens = np.memmap(bin_, dtype=dtype, mode="r") if n_bytes else np.empty(0, dtype)
    return IndexedTokens(sizes=sizes, offsets=pointers // dtype.itemsize, tokens=tokens)
