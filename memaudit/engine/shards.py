"""A checkpoint's samples, a shard at a time: the way memaudit scales over samples.

Each data set is cut into shards of `run.shard_size` samples. A shard is scored, its per-token products
are reduced by the probes' `rows` functions to per-sample columns (M, loss, greedy verdict, membership
scores...) and dropped; only the columns (a few numbers per sample) are kept until every shard is done,
and the probes reduce them to metrics (percentiles and AUCs included). A probe without a `rows` function
still receives whole per-token arrays, so a data set it reads keeps them.

Finished shards are journaled: their columns are written to `<cache>/shards/` under a key of everything
they depend on (the checkpoint's weights, the data set's content, the shard's bounds, the scoring and text
settings, and the code and parameters of every probe whose columns it holds), so a killed run resumes at
the last finished shard. With several processes and fewer checkpoints than processes, shard i of a
checkpoint is scored by process i mod P and the columns are gathered (memaudit.engine.run).

Scoring a shard runs the same batches as scoring the whole data set when the shard size is a multiple of
the batch size, so the results are the same however the samples are cut (tests/test_shards.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memaudit.engine.registry import ProbeDef, reads, row_columns
from memaudit.engine.store import KeyedStore


def shard_parts(n: int, size: int) -> list[slice]:
    """The shards of n samples: consecutive slices of `size` samples (the last one shorter)."""
    return [slice(start, min(n, start + size)) for start in range(0, n, size)] or [slice(0, 0)]


def shard_rows(probes: list[ProbeDef], arguments: dict) -> dict[str, dict[str, np.ndarray]]:
    """probe -> its rows function's columns on one shard (`arguments`: the shard's probe_arguments), for
    every probe with a rows function that reads this data set."""
    return {p.name: row_columns(p, arguments) for p in probes if p.rows is not None and reads(p, arguments)}


def joined(shards: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """The columns of consecutive shards as one: probe -> column -> (samples,). Consumes the shards' columns
    one at a time, so that at most one column is held twice."""
    if len(shards) == 1:
        return shards[0]
    return {probe: {col: np.concatenate([s[probe].pop(col) for s in shards]) for col in list(shards[0][probe])}
            for probe in shards[0]}


def joined_products(shards: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-token products of consecutive shards as one (samples, seq_len - 1) array each."""
    if len(shards) == 1:
        return shards[0]
    return {name: np.concatenate([s[name] for s in shards]) for name in shards[0]}


class ShardJournal:
    """Finished shards' columns, one `.npz` entry each (`<probe>.<column>` arrays) under `<cache>/shards/`."""

    def __init__(self, cache_root: Path | None, enabled: bool = True):
        self.store = KeyedStore(cache_root, "shards", ".npz", enabled)

    def get(self, key: str, probes: set[str], n: int) -> dict[str, dict[str, np.ndarray]] | None:
        """The shard's columns when every probe in `probes` is there with n values per column; else None."""
        arrays = self.store.read_arrays(key)
        if arrays is None:
            return None
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, values in arrays.items():  # in the order they were written: the probes' order
            probe, _, col = name.partition(".")
            if values.shape != (n,):
                return None
            if probe in probes:
                out.setdefault(probe, {})[col] = values
        return out if out.keys() == probes else None

    def put(self, key: str, rows: dict[str, dict[str, np.ndarray]]) -> None:
        """Record one finished shard."""
        self.store.write_arrays(key, {f"{probe}.{col}": values for probe, cols in rows.items()
                                      for col, values in cols.items()})
