"""Live progress on stderr: which checkpoint, how far, tokens per second."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from memaudit.report.escape import visible
from memaudit.report.render import make_console
from memaudit.results.events import (
    CheckpointFinished,
    CheckpointStarted,
    Continued,
    Event,
    SeriesStarted,
    ShardScored,
    TokensScored,
)


class AuditProgress:
    """Receives the run's events (memaudit.results.events: a series started, a checkpoint started, tokens and shards
    scored, a checkpoint finished) and draws a bar
    per series and, while a data set is scored in several shards, one for its shards (samples/s and ETA).

    Draws nothing when stderr is not a terminal, so pipes stay clean; a sharded data set then logs one line
    per finished shard (a long audit in a batch job still says how far it is).
    """

    def __init__(self, console: Console | None = None):
        self.console = console or make_console(stderr=True)
        self.enabled = self.console.is_terminal
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}", markup=False), TimeElapsedColumn(),
                                 console=self.console, transient=True, disable=not self.enabled)
        self.task = None
        self.shard_task = None
        self.continued_task = None
        self.checkpoint = ""
        self.series = ""
        self.tokens = 0
        self.forward_s = 0.0
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        """One event of the run (memaudit.results.events), told apart by its type."""
        match event:
            case SeriesStarted():
                if self.task is not None:
                    self.progress.update(self.task, visible=False)
                self.series = visible(event.name)
                self.task = self.progress.add_task(self.series, total=event.n_checkpoints, rate="")
            case CheckpointStarted():
                self.checkpoint = visible(event.name)
                self.progress.update(self.task, description=f"{self.series} {self.checkpoint}")
            case ShardScored():
                self._shard(event)
            case TokensScored():
                self.tokens += event.n
            case Continued():
                self._continued(event)
            case CheckpointFinished():
                for task in (self.shard_task, self.continued_task):
                    if task is not None:
                        self.progress.remove_task(task)
                self.shard_task = self.continued_task = None
                self.forward_s += event.result.forward_s
                rate = f"{self.tokens / self.forward_s:,.0f} tok/s" if self.forward_s else "cached"
                self.progress.update(self.task, advance=1, rate=rate)

    def _shard(self, event: ShardScored) -> None:
        """A finished shard: samples/s of this checkpoint's scoring so far and the time left at that rate."""
        done, total = event.done, event.total
        rate = event.samples / event.seconds if event.seconds > 0 and event.samples else None
        eta = time.strftime("%H:%M:%S", time.gmtime(event.remaining / rate)) if rate else "?"
        said = f"{rate:,.0f} samples/s, ETA {eta}" if rate else "from the shard journal"
        dataset = visible(event.dataset)
        if not self.enabled:
            self.console.print(f"memaudit: {self.series} {self.checkpoint} {dataset}: shard {done}/{total}, {said}",
                               highlight=False, soft_wrap=True)
            return
        if self.shard_task is None:
            self.shard_task = self.progress.add_task("", total=total, rate="")
        self.progress.update(self.shard_task, description=f"  shards of {dataset}", total=total, completed=done,
                             rate=said)

    def _continued(self, event: Continued) -> None:
        """The generation probe's prompts continued so far for a data set (or shard); without a terminal, a line
        when a data set's (or shard's) are all done."""
        dataset = visible(event.dataset)
        if not self.enabled:
            if event.done == event.total:
                self.console.print(f"memaudit: {self.series} {self.checkpoint} {dataset}: {event.total} prompts "
                                   "continued", highlight=False, soft_wrap=True)
            return
        if self.continued_task is None:
            self.continued_task = self.progress.add_task("", total=event.total, rate="")
        self.progress.update(self.continued_task, description=f"  continuing {dataset}", total=event.total,
                             completed=event.done)
