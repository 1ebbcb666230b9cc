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


class AuditProgress:
    """Receives the run's events (`series`, `checkpoint`, `tokens`, `checkpoint_done`) and draws a bar.

    Draws nothing when stderr is not a terminal, so logs and pipes stay clean.
    """

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                 console=self.console, transient=True, disable=not self.enabled)
        self.task = None
        self.series = ""
        self.tokens = 0
        self.forward_s = 0.0
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, event: str, **kw) -> None:
        if event == "series":
            if self.task is not None:
                self.progress.update(self.task, visible=False)
            self.series = kw["name"]
            self.task = self.progress.add_task(self.series, total=kw["n_checkpoints"], rate="")
        elif event == "checkpoint":
            self.progress.update(self.task, description=f"{self.series} {kw['name']}")
        elif event == "tokens":
            self.tokens += kw["n"]
        elif event == "checkpoint_done":
            self.forward_s += kw["result"].forward_s
            rate = f"{self.tokens / self.forward_s:,.0f} tok/s" if self.forward_s else "cached"
            self.progress.update(self.task, advance=1, rate=rate)
