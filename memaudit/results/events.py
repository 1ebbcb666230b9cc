"""The run as a stream of typed events: what a subscriber (the terminal's progress bars, a notebook, a benchmark)
sees of an audit while it goes, in this order for each series:

    SeriesStarted, then per checkpoint: CheckpointStarted, TokensScored and ShardScored while it is scored (none
    when its results come from the journal), RowsScored when its probes have per-sample columns, CheckpointFinished;
    with several processes, CheckpointCollected per checkpoint once the main process has them all; after every
    series: RunFinished.

A subscriber is any callable taking one event (`memaudit run`'s progress display, `memaudit.audit(on_event=...)`);
it tells events apart by their type (`match event: case CheckpointFinished(result=r): ...`). Events are frozen and
carry only what was computed; a subscriber cannot change the run. The run's own recorders subscribe the same way
(memaudit/engine/recorders.py: the per-sample panel and the `--samples-out` writer read RowsScored, the run journal
CheckpointFinished or CheckpointCollected); only they may add to the result they record (the writer: which Parquet
file holds its rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SeriesStarted:
    """A series' data is read; its checkpoints come next."""

    name: str
    n_checkpoints: int  # this process's share of the series' checkpoints
    tokens_per_checkpoint: int


@dataclass(frozen=True)
class CheckpointStarted:
    """A checkpoint is about to be looked up in the journal, loaded and scored."""

    series: str
    name: str


@dataclass(frozen=True)
class TokensScored:
    """The forward pass went over `n` more tokens (of the current checkpoint)."""

    n: int


@dataclass(frozen=True)
class Continued:
    """The generation probe's continuations of a data set (or one shard of it) went `done` prompts further, of
    `total` (a prompt per selected sample, prefix length, scheme and draw)."""

    dataset: str
    done: int
    total: int


@dataclass(frozen=True)
class ShardScored:
    """One shard of a data set's samples was scored and journaled (data sets of several shards only)."""

    dataset: str
    done: int  # shards of this checkpoint's data set done, of `total` this process scores
    total: int
    samples: int  # samples scored so far for this checkpoint's data set
    remaining: int  # samples still to score
    seconds: float  # since the first of these shards began


@dataclass(frozen=True)
class RowsScored:
    """A checkpoint's per-sample columns (probe -> data set -> column -> (samples,) array), as its probes' rows
    functions made them (`fresh`: scored in this run; the result is `result`) or as the shard journal kept them (a
    checkpoint read back: `result` is None). The panel of series probes, `--samples-out` and a notebook read them."""

    series: str
    checkpoint: Any  # memaudit.inputs.sources.Checkpoint: name, step, sha
    rows: dict
    fresh: bool
    result: Any = None  # memaudit.results.schema.CheckpointResult, when fresh


@dataclass(frozen=True)
class CheckpointFinished:
    """A checkpoint's result (from the journal or just computed; `result.error` says when it could not be audited)."""

    series: str
    result: Any  # memaudit.results.schema.CheckpointResult
    checkpoint: Any = None  # memaudit.inputs.sources.Checkpoint: name, step, sha


@dataclass(frozen=True)
class CheckpointCollected:
    """With several processes, the main one has a checkpoint's result from whichever process audited it (after each
    series, in step order): what it journals. With one process, CheckpointFinished is that moment already."""

    series: str
    result: Any  # memaudit.results.schema.CheckpointResult
    checkpoint: Any  # memaudit.inputs.sources.Checkpoint


@dataclass(frozen=True)
class RunFinished:
    """Every series was audited (or the run was interrupted); the report is complete."""

    report: Any  # memaudit.results.schema.AuditReport


Event = (SeriesStarted | CheckpointStarted | TokensScored | Continued | ShardScored | RowsScored | CheckpointFinished
         | CheckpointCollected | RunFinished)
Subscriber = Callable[[Event], None]
