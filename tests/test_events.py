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
