"""Names are data (memaudit/report/escape.py): one hostile name through every output medium."""

import csv
import errno
import io
import json
import os
import xml.etree.ElementTree as ET

import pytest
from conftest import hand_report

from memaudit.report.escape import csv_cell, figure_text, visible, xml_text

HOSTILE = "=HYPERLINK(1) [red]x[/red] [/i] :x: $\\alpha$ \x1b[2J\x07 \u202eevil small[deduped]"
"""Rich markup and a closing tag, an emoji code, matplotlib math text, a clear-screen escape and a bell, a
right-to-left override, a bracketed suffix; it starts like a spreadsheet formula."""
SHOWN = visible(HOSTILE)


def test_each_medium_escapes_its_own_way():
    assert visible("a\x1b[31mb\x07\u202e") == "a\\x1b[31mb\\x07\\u202e"
    assert visible("[bold]x[/bold] $y$") == "[bold]x[/bold] $y$"  # printable text is kept as it is
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@a", "\tx", "ok", -1.5)] == \
        ["'=1+1", "'+1", "'-1", "'@a", "'\tx", "ok", -1.5]
    assert xml_text("a\x00b\x1bc\td") == "a\\x00b\\x1bc\td"
    assert figure_text("$x$\x1b") == r"\$x\$\x1b"


@pytest.fixture
def hostile_config(make_series, text_file, write_config):
    return write_config({"series": [{"name": HOSTILE, "local": str(make_series(steps=(1, 2)))}],
                         "datasets": [{"name": HOSTILE, "path": str(text_file), "seq_len": 24, "max_samples": 6}],
                         "probes": {"memorization": {"k": 8, "m": 8, "per_sample": True}},
                         "checks": [{"metric": "memorization.M", "min": 0.99, "name": HOSTILE}],
                         "run": {"batch_size": 4}})


def test_a_hostile_name_shows_as_itself_in_every_output(hostile_config, run_cli, tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("matplotlib")
    out = {k: tmp_path / f"out.{k}" for k in ("json", "html", "xml", "csv", "samples.csv")}
    code, stdout, err = run_cli("run", hostile_config, "-k", "memorization", "--json", out["json"],
                                "--html", out["html"], "--junit-xml", out["xml"],
                                "--samples-out", tmp_path / "rows")
    assert code == 1, err  # the hostile check (min 0.99) fails: the run itself went through
    report = json.loads(out["json"].read_text())
    assert report["series"][0]["name"] == HOSTILE  # the JSON keeps the name exactly

    # terminal: no markup eaten, no escape sequence sent, brackets kept
    assert "\x1b" not in stdout and "\x07" not in stdout and "\u202e" not in stdout
    assert SHOWN in stdout.replace("\n", "") or SHOWN[:40] in stdout
    assert "[/i]" in stdout and "small[deduped]" in stdout.replace("\n", "")

    # HTML: escaped, never markup
    page = out["html"].read_text()
    assert "[red]x[/red]" in page and "<red>" not in page and HOSTILE.replace("$", "") not in page

    # JUnit XML: well-formed, the name readable
    suite = ET.parse(out["xml"]).getroot()
    assert any("HYPERLINK" in (c.get("name") or "") for c in suite.iter("testcase"))

    # CSV: no cell is a formula
    code, _, err = run_cli("show", out["json"], "-q", "--csv", out["csv"], "--samples-csv", out["samples.csv"])
    assert code == 1, err
    for path in (out["csv"], out["samples.csv"]):
        cells = [c for row in csv.reader(io.StringIO(path.read_text())) for c in row]
        assert not any(c.startswith(("=", "+", "@")) for c in cells) and "'" + HOSTILE in cells

    # figures: drawn with the name as text ($ is no math text)
    code, printed, err = run_cli("plot", out["json"], "--out", tmp_path / "figs")
    assert code == 0 and "Traceback" not in err and list((tmp_path / "figs").glob("*.png"))


def test_rich_markup_in_a_name_is_printed_as_text(run_cli, tmp_path):
    report = hand_report(series="valid[/i]", dataset="[k=32,m=32]")
    (tmp_path / "r.json").write_text(report.model_dump_json())
    code, out, err = run_cli("show", tmp_path / "r.json")
    assert code == 0, err
    assert "valid[/i]" in out and "[k=32,m=32]" in out


@pytest.fixture
def rows_config(make_series, text_file, write_config):
    return write_config({"series": [{"name": "s", "local": str(make_series(steps=(1,)))}],
                         "datasets": [{"name": "train", "path": str(text_file), "seq_len": 24, "max_samples": 6}],
                         "run": {"batch_size": 4}})


def test_a_full_disk_under_samples_out_still_writes_the_report(rows_config, run_cli, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    def full(self, batch, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", full)
    code, out, err = run_cli("run", rows_config, "-k", "memorization", "--samples-out", tmp_path / "rows",
                             "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 2 and report["exit_code"] == 2 and "Traceback" not in err
    assert "disk is full" in report["unwritten"][0] and "NOT WRITTEN" in out
    assert report["series"][0]["checkpoints"][0]["results"]["memorization"]["train"]["M"] is not None
    assert not list((tmp_path / "rows").rglob("*.tmp"))


def test_samples_out_never_follows_a_planted_link(rows_config, run_cli, tmp_path):
    pytest.importorskip("pyarrow")
    from memaudit.engine.samples_out import file_for

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = file_for(tmp_path / "rows", "s", "step-1")
    target.parent.mkdir(parents=True)
    for planted in (target, target.with_name(f".{target.name}.tmp")):
        os.symlink(victim, planted)
    code, _, err = run_cli("run", rows_config, "-k", "memorization", "--samples-out", tmp_path / "rows")
    assert code == 0, err
    assert victim.read_text() == "keep me" and not target.is_symlink() and target.stat().st_size > 0


def test_figures_escape_names_but_keep_matplotlib_s_own_math_text():
    """Log axes label their ticks with math text ($10^{3}$): it must stay on; a `$` in a name is escaped."""
    pytest.importorskip("matplotlib")
    from memaudit import plots

    assert plots.pyplot().rcParams["text.parse_math"]
    report = hand_report(series="cost $5 [x]")
    fig = plots.figures(report)["memorization"]
    assert any(r"cost \$5 [x]" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
