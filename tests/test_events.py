"""The run as a stream of typed events (memaudit/results/events.py): their order, what they carry, and that the
progress display reads them by type."""

import dataclasses

import pytest


def test_an_audit_emits_its_events_in_order(basic_config):
    import memaudit
    from memaudit.results.events import (
        CheckpointFinished,
        CheckpointStarted,
        RowsScored,
        RunFinished,
        SeriesStarted,
        ShardScored,
        TokensScored,
    )

    events = []
    report = memaudit.audit(basic_config(), select="memorization", cache=False, on_event=events.append)
    kinds = [type(e).__name__ for e in events if not isinstance(e, (TokensScored, ShardScored))]
    assert kinds == ["SeriesStarted"] + ["CheckpointStarted", "RowsScored", "CheckpointFinished"] * 3 + ["RunFinished"]
    for rows, result in zip([e for e in events if isinstance(e, RowsScored)], report.series[0].checkpoints):
        # the per-sample columns, live: each data set's mean M is the checkpoint's M
        assert rows.fresh and rows.checkpoint.name == result.name
        for name, columns in rows.rows["memorization"].items():
            assert columns["M"].mean() == pytest.approx(result.results["memorization"][name]["M"], abs=1e-6)
    assert events[0] == SeriesStarted("tiny", n_checkpoints=3, tokens_per_checkpoint=12 * 32)
    assert [e.name for e in events if isinstance(e, CheckpointStarted)] == ["step-1", "step-2", "step-4"]
    finished = [e.result for e in events if isinstance(e, CheckpointFinished)]
    assert finished == report.series[0].checkpoints and events[-1] == RunFinished(report)
    assert sum(e.n for e in events if isinstance(e, TokensScored)) == 3 * 12 * 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].name = "other"  # a subscriber sees the run, it does not change it


def test_the_progress_display_follows_the_events():
    from memaudit.results.events import CheckpointFinished, CheckpointStarted, SeriesStarted, ShardScored, TokensScored
    from memaudit.report.progress import AuditProgress
    from memaudit.report.render import make_console
    from memaudit.results.schema import CheckpointResult

    progress = AuditProgress(make_console(stderr=True))
    with progress:
        progress(SeriesStarted("s", n_checkpoints=2, tokens_per_checkpoint=100))
        progress(CheckpointStarted("s", "step-1"))
        progress(TokensScored(100))
        progress(ShardScored("train", done=1, total=2, samples=10, remaining=10, seconds=1.0))
        progress(CheckpointFinished("s", CheckpointResult(name="step-1", step=1, location="-", forward_s=0.5)))
    assert progress.series == "s" and progress.checkpoint == "step-1"
    assert progress.tokens == 100 and progress.forward_s == 0.5


def test_continuations_are_announced_and_drawn(basic_config):
    """With the generation probe, `Continued` says how many prompts are done of how many, per data set; the progress
    display draws a bar (a terminal) or a line when a data set is done (a log)."""
    import io

    from rich.console import Console

    import memaudit
    from memaudit.report.progress import AuditProgress
    from memaudit.results.events import CheckpointStarted, Continued, SeriesStarted

    events = []
    config = basic_config(probes={"generation": {"prefixes": [6], "schemes": [{"top_k": 5}], "n": 2}},
                          run={"batch_size": 5})
    memaudit.audit(config, select="generation", cache=False, on_event=events.append)
    continued = [e for e in events if isinstance(e, Continued)]
    per_checkpoint = 12 * (1 + 2)  # every sample, greedy once and two draws of the scheme
    assert [e.total for e in continued] == [per_checkpoint] * len(continued)
    assert [e.done for e in continued[:9]] == [5, 10, 12, 17, 22, 24, 29, 34, 36]  # batches of 5 per pass
    assert sum(e.done == e.total for e in continued) == 3  # one data set, three checkpoints
    log = io.StringIO()
    with AuditProgress(Console(file=log, width=200)) as progress:
        progress(SeriesStarted("tiny", n_checkpoints=1, tokens_per_checkpoint=100))
        progress(CheckpointStarted("tiny", "step-1"))
        for e in continued[:9]:
            progress(e)
    assert log.getvalue().count("tiny step-1 train: 36 prompts continued") == 1
    terminal = io.StringIO()
    with AuditProgress(Console(file=terminal, force_terminal=True, width=200)) as progress:
        progress(SeriesStarted("tiny", n_checkpoints=1, tokens_per_checkpoint=100))
        progress(continued[3])
        progress.progress.refresh()
    assert "continuing train" in terminal.getvalue() and "17/36" in terminal.getvalue()
