"""memaudit/report/render.py: pure functions of a report."""

import pytest
from rich.console import Console

from memaudit.report.render import (
    checkpoint_table,
    fmt,
    make_console,
    render_report,
    sparkline,
    summary_line,
)
from memaudit.results.schema import (
    AuditReport,
    CheckpointResult,
    CheckResult,
    ProbeInfo,
    Provenance,
    SeriesResult,
)

PROBE = ProbeInfo(name="memorization", kind="checkpoint", source="-", products=[], params={}, show=["M"])
EMPTY = ProbeInfo(name="canaries", kind="checkpoint", source="-", products=[], params={}, show=["exposure_max"])


def _report(n=16, error=False, failed=False) -> AuditReport:
    ckpts = [CheckpointResult(name=f"step-{i}", step=i, location="-",
                              results={"memorization": {"train": {"M": i / n}}, "canaries": {}}) for i in range(n)]
    if error:
        ckpts.append(CheckpointResult(name="bad", step=n, location="-", error="OSError: broken"))
    checks = [CheckResult(name="c", metric="memorization.M", dataset="train", series="s", checkpoint=None, value=0.5,
                          min=None, max=0.4 if failed else 0.9, passed=not failed, message="m")]
    provenance = Provenance(memaudit_version="0", python_version="3", platform="x", dtype="float32", batch_size=1,
                            seed=0, config_hash="h", command="c", started_at="t", duration_s=2.5)
    return AuditReport(status="error" if error else "failed" if failed else "passed", exit_code=0,
                       provenance=provenance, probes=[PROBE, EMPTY], checks=checks,
                       series=[SeriesResult(name="s", source="-", tokenizer="t", checkpoints=ckpts)])


def test_sparkline_and_fmt():
    assert sparkline([0, 0.5, 1]) == "▁▅█" and sparkline([None, 1]) == " ▁" and sparkline([]) == ""
    assert len(sparkline(range(100), width=10)) == 10
    assert fmt(None) == "–" and fmt(0.1234) == "0.123" and fmt(1234567) == "1,234,567" and fmt(14.0) == "14"
    assert fmt(["NOUN", "VERB"]) == "NOUN › VERB"


def test_long_series_tables_are_thinned_with_first_and_last_kept():
    table = checkpoint_table(_report().series[0], PROBE, ["train"])
    assert table.row_count == 10 and table.caption == "10 of 16 checkpoints"
    names = table.columns[0]._cells
    assert names[0] == "step-0" and names[-1] == "step-15"


def test_summary_line_counts_checks_and_errors():
    assert "1 passed in 2.5s" in summary_line(_report()).title
    assert "1 failed" in summary_line(_report(failed=True)).title
    assert "1 passed, 1 error in" in summary_line(_report(error=True)).title


def test_probes_without_results_print_no_table():
    console = Console(record=True, width=120, file=open("/dev/null", "w"))
    render_report(_report(error=True), console)
    text = console.export_text()
    assert "memorization · s" in text and "canaries · s" not in text and "ERROR s/bad: OSError: broken" in text


def test_the_extraction_series_table_shows_each_rate_by_its_whole_name():
    """Bracketed metric names (`first_step[rate[T=1.0][k=32,m=32][n=1,p=0.5]]`) are data, not markup: each row
    of the extraction_risk_series table is told apart by its full name."""
    import io

    rates = [f"first_step[rate[T={t}][k=32,m=32][n={n},p=0.5]]" for t in ("1.0", "0.8") for n in (1, 1000)]
    probe = ProbeInfo(name="extraction_risk_series", kind="series", source="-", products=[], params={}, show=[])
    report = _report(n=2).model_copy(update={"probes": [probe]})
    report.series[0].results = {"extraction_risk_series": {"train": {rate: i for i, rate in enumerate(rates)}}}
    console = make_console(width=200)
    console.file = io.StringIO()
    render_report(report, console)
    out = console.file.getvalue()
    assert all(rate in out for rate in rates)


@pytest.mark.parametrize("metrics, datasets, tables, transposed", [
    (["M", "loss"], ["a", "b"], 1, False),  # fits: one table
    ([f"m{i}" for i in range(6)], [f"set_{i}" for i in range(6)], 6, False),  # 36 columns: a table per data set
    ([f"rougeL_precision_stemmed_{i}" for i in range(8)], ["a", "b"], 2, True),  # one data set too wide: transposed
])
def test_a_table_too_wide_for_the_terminal_is_printed_a_data_set_at_a_time(metrics, datasets, tables, transposed):
    """Many shown metrics over several data sets (generation: per scheme and prefix), wider than the terminal: a
    table per data set, or, where even that is too wide, the data set's metrics as rows and checkpoints as columns;
    never a table of squeezed columns."""
    import io

    wide = ProbeInfo(name="memorization", kind="checkpoint", source="-", products=[], params={}, show=metrics)
    ckpts = [CheckpointResult(name=f"step-{i}", step=i, location="-",
                              results={"memorization": {d: {m: i / 10 for m in metrics} for d in datasets}})
             for i in range(3)]
    report = _report().model_copy(update={"probes": [wide], "series": [
        SeriesResult(name="s", source="-", tokenizer="t", checkpoints=ckpts)]})
    console = Console(record=True, width=120, file=io.StringIO())
    render_report(report, console)
    text = console.export_text()
    assert text.count("memorization · s") == tables and ("┃ metric " in text) == transposed
    assert text.count("0.200") >= len(metrics) * len(datasets)  # every value of step-2 readable, none squeezed
    assert "…" not in text.split("trend")[0]
