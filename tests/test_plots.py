"""memaudit/report/plots.py and memaudit/report/html.py: figures and the HTML report from hand-built reports."""

import json
import re

import pytest

from memaudit.results.schema import (
    AuditReport,
    CheckpointResult,
    CheckResult,
    DatasetInfo,
    ProbeInfo,
    Provenance,
    SeriesResult,
)

pytest.importorskip("matplotlib")


def _report(with_pos=True, with_forgetting=True) -> AuditReport:
    series = []
    for n_params, name, speed in ((1_000_000, "small", 0.2), (4_000_000, "large", 0.4)):
        ckpts = []
        for step in (0, 10, 1000, 10000):
            m = min(1.0, speed * step / 100)
            results = {"memorization": {"train": {"M": m}, "valid": {"M": 0.1}}}
            if with_pos:
                results["pos"] = {"train": {"R": {"NOUN": m, "VERB": m / 2, "NUM": m}, "count": {"NOUN": 3}}}
            ckpts.append(CheckpointResult(name=f"step{step}", step=step, location="-", results=results))
        results = {"memorization_series": {"train": {"T_step@0.5": 100 if speed > 0.3 else 1000, "T_step@0.9": 1000}}}
        if with_forgetting:
            results["forgetting"] = {"special": {"steps_since": [0, 10, 20, 30], "M_curve": [0.9, 0.5, 0.4, 0.35],
                                                 "baseline_fit": 0.33}}
        series.append(SeriesResult(name=name, source="-", tokenizer="t", n_params=n_params, checkpoints=ckpts,
                                   results=results))
    provenance = Provenance(memaudit_version="0", python_version="3", platform="x", dtype="float32", batch_size=1,
                            seed=0, config_hash="h", command="c", started_at="t", duration_s=1.0)
    datasets = [DatasetInfo(name=n, role=r, path="-", seq_len=8, n_samples=1, n_tokens=8, sha256="x")
                for n, r in (("train", "train"), ("valid", "valid"))]
    check = CheckResult(name="c1", metric="memorization.M", dataset="valid", series="small", checkpoint=None,
                        value=0.1, min=None, max=0.5, passed=True, message="ok <&>")
    return AuditReport(status="passed", exit_code=0, provenance=provenance, datasets=datasets, series=series,
                       checks=[check])


def test_memorization_figure_has_a_line_per_series_and_data_set():
    from memaudit.probes.memorization import fig_memorization

    fig = fig_memorization(_report())
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4 and all(len(line.get_xdata()) == 4 for line in lines)
    assert fig.axes[0].get_xscale() == "symlog"  # steps span three decades
    assert "memorization" in fig.axes[0].get_ylabel()


def test_T_vs_params_is_log_log_with_a_line_per_tau():
    from memaudit.probes.memorization import fig_T_vs_params

    ax = fig_T_vs_params(_report()).axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert sorted(len(line.get_xdata()) for line in ax.get_lines()) == [2, 2]


def test_pos_and_forgetting_figures():
    from memaudit.probes.forgetting import fig_forgetting
    from memaudit.probes.pos import fig_pos

    pos = fig_pos(_report())
    assert len(pos.axes) == 2 and len(pos.axes[0].get_lines()) == 3
    forgetting = fig_forgetting(_report()).axes[0]
    assert len(forgetting.get_lines()) == 4  # a curve and a baseline line per series
    assert [line.get_linestyle() for line in forgetting.get_lines()][1] == "--"


def test_missing_data_skips_the_figure_and_pngs_are_written(tmp_path):
    from memaudit.probes.forgetting import fig_forgetting
    from memaudit.probes.pos import fig_pos
    from memaudit.probes.privacy import fig_privacy

    from memaudit.plots import write_figures

    bare = _report(with_pos=False, with_forgetting=False)
    assert fig_pos(bare) is None and fig_forgetting(bare) is None and fig_privacy(bare) is None
    paths = write_figures(bare, tmp_path)
    assert sorted(p.name for p in paths) == ["T_vs_params.png", "memorization.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 1000 for p in paths)


def test_html_is_self_contained_with_every_section():
    from memaudit.engine.registry import figure_makers
    from memaudit.report.html import render_html

    page = render_html(_report(), makers=figure_makers())
    for section in ("id='provenance'", "id='checks'", "id='tables'", "id='figures'", "fig-memorization", "fig-pos"):
        assert section in page
    assert not re.findall(r"(?:src|href)=['\"]?(?:https?:)?//", page)
    assert "ok &lt;&amp;&gt;" in page  # escaped
    assert page.count("data:image/png;base64,") == 4


def test_html_states_the_largest_risk_has_contents_and_no_python_reprs():
    from memaudit.report.html import render_html

    report = _report()
    for s, share in zip(report.series, (0.25, 0.5)):
        s.checkpoints[-1].results["memorization"]["train"]["extractable"] = share
    s.results["pos_series"] = {"train": {"first_step": {"ADJ": 144, "NOUN": 12}}}
    report.probes.append(ProbeInfo(name="pos_series", kind="series", source="-", products=[], params={}))
    page = render_html(report, with_figures=False)
    assert "Largest risk found: <b>50.0%</b>" in page and "large/step10000 [train]" in page
    assert "<nav><b>Contents</b>" in page and "<a href='#checks'>" in page and "<a href='#figures'>" not in page
    assert "{&#x27;ADJ&#x27;" not in page and "{'ADJ'" not in page
    assert "first_step[ADJ]" in page


def test_plot_and_html_commands(basic_config, run_cli, tmp_path):
    code, _, err = run_cli("run", basic_config(select="memorization"), "--json", tmp_path / "r.json",
                           "--html", tmp_path / "r.html")
    assert code == 0, err
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    code, out, _ = run_cli("plot", tmp_path / "r.json", "--out", tmp_path / "figs")
    assert code == 0 and (tmp_path / "figs" / "memorization.png").exists()
    code, _, _ = run_cli("show", tmp_path / "r.json", "--html", tmp_path / "again.html", "-q")
    assert code == 0 and "id='figures'" in (tmp_path / "again.html").read_text()


def test_plot_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    (tmp_path / "r.json").write_text(_report().model_dump_json())
    code = ("import sys; from memaudit.integrations.cli import main; c = main(['plot', sys.argv[1], '--out', sys.argv[2]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(c)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.json"), str(tmp_path / "figs")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "figs" / "memorization.png").exists()


def test_a_users_probe_declares_its_own_figure(tmp_path, run_cli):
    (tmp_path / "r.json").write_text(_report().model_dump_json())
    (tmp_path / "mine.py").write_text(
        "from memaudit import plots, probe\n\n"
        "def fig_loss_hist(report):\n"
        "    plt = plots.pyplot()\n    fig, ax = plt.subplots()\n    ax.plot([0, 1], [1, 0])\n    return fig\n\n"
        "@probe(figures=(fig_loss_hist,))\ndef memorization_extra(hits):\n    return {}\n")
    report = json.loads((tmp_path / "r.json").read_text())
    report["series"][0]["checkpoints"][0]["results"]["memorization_extra"] = {"train": {}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    code, out, _ = run_cli("plot", tmp_path / "r.json", "--out", tmp_path / "figs")
    assert code == 0 and not (tmp_path / "figs" / "loss_hist.png").exists()  # a report's paths never run
    code, out, _ = run_cli("plot", tmp_path / "r.json", "--out", tmp_path / "figs", "--probe-path", tmp_path / "mine.py")
    assert code == 0 and (tmp_path / "figs" / "loss_hist.png").exists()


def _sections(page: str) -> list[str]:
    return re.findall(r"<h2 id='([a-z]+)'", page)


def test_html_reads_verdict_checks_figures_tables_then_provenance():
    from memaudit.engine.registry import figure_makers
    from memaudit.report.html import render_html

    page = render_html(_report(), makers=figure_makers())
    assert _sections(page) == ["checks", "figures", "tables", "series", "provenance"]
    assert page.index("class='verdict'") < page.index("id='checks'")
    assert "<details><summary>" in page[page.index("id='provenance'"):]  # provenance collapsed
    assert "prefers-color-scheme: dark" in page and "@media print" in page
    figures = re.findall(r"<figure id='fig-([A-Za-z_]+)'>.*?<figcaption>([^<]+)</figcaption>", page, re.S)
    assert {name for name, _ in figures} == {"memorization", "T_vs_params", "pos", "forgetting"}
    assert all(len(caption) > 20 for _, caption in figures)  # each says what to look for


def test_html_has_one_sortable_table_per_probe_and_data_set():
    from memaudit.report.html import render_html
    from memaudit.results.schema import ProbeInfo

    report = _report()
    report.probes = [ProbeInfo(name="memorization", kind="checkpoint", source="-", products=[], params={}, show=["M"]),
                     ProbeInfo(name="memorization_series", kind="series", source="-", products=[], params={},
                               show=["T_step@tau"])]
    page = render_html(report, with_figures=False)
    tables = re.findall(r"<table class='sortable' data-probe='memorization' data-dataset='([a-z]+)'>", page)
    assert sorted(tables) == ["train", "train", "valid", "valid"]  # two series x two data sets
    assert "data-probe='memorization_series'" in page and "<th>T_step@0.5</th>" in page
    assert "background: rgba(var(--shade)" in page  # M cells shaded
    assert "data-v='0.1'" in page  # sortable numbers carry their value


def test_html_escapes_every_name_from_the_configuration():
    from memaudit.report.html import render_html

    report = _report()
    report.series[0].name = "<script>alert(1)</script>"
    report.series[0].checkpoints[0].error = "bad & <b>worse</b>"
    page = render_html(report, with_figures=False)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "bad &amp; &lt;b&gt;worse&lt;/b&gt;" in page and "id='errors'" in page
    assert not re.findall(r"(?:src|href)=['\"]?(?:https?:)?//", page)


@pytest.mark.slow
def test_the_demo_report_renders_in_a_headless_browser(tmp_path):
    """Chromium (Debian's `chromium`) renders the page to a PNG and logs no error."""
    import shutil
    import subprocess

    from memaudit.report.html import write_html

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    write_html(_report(), tmp_path / "r.html")
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                             f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1280,2000",
                             (tmp_path / "r.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert (tmp_path / "shot.png").read_bytes().startswith(b"\x89PNG")
    console_errors = [line for line in result.stderr.splitlines()
                      if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors


def test_without_matplotlib_plot_says_what_to_install_and_html_has_no_figures(tmp_path, run_cli, monkeypatch):
    import sys

    from memaudit.report.html import render_html

    (tmp_path / "r.json").write_text(_report().model_dump_json())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run_cli("plot", tmp_path / "r.json", "--out", tmp_path / "figs")
    assert code == 2 and 'pip install "memaudit-lm[plot]"' in err and "Traceback" not in err
    from memaudit.engine.registry import figure_makers

    page = render_html(_report(), makers=figure_makers())
    assert "No figures: Figures need matplotlib" in page and "id='checks'" in page
