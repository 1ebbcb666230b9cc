"""The state of one audit in progress (`RunState`): its settings, stores, and what it has produced so far. The loop
(memaudit/engine/run.py) makes and fills it; a series (memaudit/engine/series.py) and a checkpoint read it."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from memaudit.engine.plan import Plan, RunOptions
from memaudit.engine.recorders import journal_recorder, panel_recorder, samples_recorder
from memaudit.inputs.config import AuditConfig, RunConfig
from memaudit.inputs.ledger import Ledger
from memaudit.results.events import Subscriber
from memaudit.results.schema import DatasetInfo, SeriesResult


def now() -> str:
    """The time now, UTC, to the second (ISO 8601)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunState:
    """One audit in progress: its settings, stores and what it has produced so far (so an interrupted
    run can still report it)."""

    plan: Plan
    config: AuditConfig  # the yaml with the command line's overrides
    opts: RunOptions
    subscriber: Subscriber  # the user's: the progress display, memaudit.audit(on_event=...); main process only
    device: Any  # torch.device
    processes: Any  # accelerate's PartialState
    resolved: list  # (SeriesConfig, [Checkpoint]) per series
    cache: Any  # ProductsCache
    journal: Any  # Journal
    shards: Any  # ShardJournal: finished shards of checkpoints in progress
    started: str = field(default_factory=lambda: now())
    t0: float = field(default_factory=time.perf_counter)
    series: list[SeriesResult] = field(default_factory=list)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    ledgers: dict[str, Ledger | None] = field(default_factory=dict)
    said: dict = field(default_factory=dict)  # tagger, identifiers, text_included: for the provenance
    panels: dict = field(default_factory=dict)  # series name -> its per-sample Panel (when a series probe reads one)
    unwritten: list[str] = field(default_factory=list)  # outputs that could not be written, with why
    config_hash: str = ""  # of the yaml: the report's provenance and the --samples-out files' metadata say it
    batch_size: int | None = None  # the batch size chosen when the user fixed none
    field_types: dict = field(default_factory=dict)  # group_by field -> (its type, where first seen): one per run
    contexts: dict = field(default_factory=dict)  # series name -> its SeriesContext, as the series is audited
    recorders: list = field(default_factory=list)  # the run's own subscribers (memaudit/engine/recorders.py)

    def __post_init__(self):
        self.recorders = self.recorders or [panel_recorder(self), samples_recorder(self), journal_recorder(self)]

    def emit(self, event) -> dict:
        """Give an event to the run's recorders, then to the user's subscriber; returns the updates the recorders
        make to the result the event carries (memaudit.results.events.RowsScored: its `samples_file`)."""
        updates = {}
        for record in self.recorders:
            updates.update(record(event) or {})
        self.subscriber(event)
        return updates

    @property
    def run_cfg(self) -> RunConfig:
        return self.config.run


