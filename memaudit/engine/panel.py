"""The per-sample panel: each sample's values across a series' checkpoints (samples x checkpoints).

A per-checkpoint probe with a `rows` function reduces each sample to a few numbers (memorization: M, loss,
...). A series probe that asks for `panel` by argument name reads those numbers across the checkpoints,
`panel.values("memorization", "loss", "train")` -> (checkpoints, samples): memorization profiles (causal
effects of training on a sample) and comparisons with a twin series read it. The panel holds the columns
of the probes such series probes `use`, filled checkpoint by checkpoint from the rows the run computed or,
for a checkpoint whose results came from the run journal, from the shard journal (never recomputed). Each
checkpoint's columns go to a temporary folder as they come, so a panel of a million samples over many
checkpoints does not sit in memory while the run goes on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


class Panel:
    """Per-sample columns of one series across its checkpoints, in step order."""

    def __init__(self, samples: dict, probes: set[str]):
        self.samples = samples  # data set name -> Samples (ids, training steps, role)
        self.probes = probes  # the probes whose columns it keeps
        self._folder = tempfile.TemporaryDirectory(prefix="memaudit-panel-")
        self._checkpoints: list[tuple[str, int | None]] = []  # (name, step), in the order added
        self._columns: dict[tuple[str, str, str], list[Path]] = {}  # (probe, column, data set) -> file per checkpoint

    def add(self, name: str, step: int | None, rows: dict) -> None:
        """The columns of checkpoint `name` (`rows`: probe -> data set -> column -> (samples,))."""
        t = len(self._checkpoints)
        self._checkpoints.append((name, step))
        for probe in self.probes & rows.keys():
            for dataset, columns in rows[probe].items():
                if dataset not in self.samples:  # a group_by group: its samples are its data set's
                    continue
                for column, values in columns.items():
                    files = self._columns.setdefault((probe, column, dataset), [])
                    path = Path(self._folder.name) / f"{list(self._columns).index((probe, column, dataset))}-{t}.npy"
                    np.save(path, np.asarray(values))
                    files.append(path)

    @property
    def checkpoints(self) -> list[str]:
        """Names of the checkpoints in the panel, in step order."""
        return [self._checkpoints[t][0] for t in self._order()]

    @property
    def steps(self) -> list[int | None]:
        """Their training steps."""
        return [self._checkpoints[t][1] for t in self._order()]

    def _order(self) -> list[int]:
        """The checkpoints in the order they were added, sorted by step (those without one last)."""
        return sorted(range(len(self._checkpoints)), key=lambda t: (self._checkpoints[t][1] is None,
                                                                     self._checkpoints[t][1] or 0))

    def has(self, probe: str, column: str, dataset: str) -> bool:
        """Whether every checkpoint has this column."""
        return len(self._columns.get((probe, column, dataset), ())) == len(self._checkpoints) > 0

    def columns(self, probe: str, dataset: str) -> list[str]:
        """The columns of `probe` the panel holds for `dataset` at every checkpoint, in the order they came."""
        return [c for (p, c, d) in self._columns if p == probe and d == dataset and self.has(p, c, d)]

    def values(self, probe: str, column: str, dataset: str, dtype=np.float64) -> np.ndarray:
        """(checkpoints, samples) of one column on one data set, checkpoints in step order."""
        files = self._columns.get((probe, column, dataset), [])
        if len(files) != len(self._checkpoints):
            raise KeyError(f"the panel has no column {probe}.{column} of data set '{dataset}' at every checkpoint")
        out = np.empty((len(files), len(self.samples[dataset].ids)), dtype=dtype)  # (checkpoints, samples)
        for row, t in enumerate(self._order()):
            out[row] = np.load(files[t], mmap_mode="r")
        return out

    def close(self) -> None:
        """Remove the panel's temporary files."""
        self._folder.cleanup()
