"""Seed replicates: the lab's `seeds:`, the report's spreads, comparisons beyond the spread, interpolated T."""

import math

import numpy as np
import pytest
from memaudit.measures import crossing_step

import memaudit
from memaudit.errors import ConfigError
from memaudit.inputs.ledger import read_ledger
from memaudit.lab.config import parse_lab_config
from memaudit.lab.train import plan_updates, run_lab
from memaudit.results.replicates import compare, spread, t95

LAB = {
    "vocab_size": 300, "seq_len": 16, "n_samples": 12, "n_valid": 4, "n_special": 4, "batch_size": 4,
    "epochs": 3, "lr": 0.01, "save_every": 1, "seeds": [0, 1, 2],
    "runs": [{"name": "base", "layers": 1, "width": 16, "heads": 2, "special": {"epoch": 2, "updates": 3}},
             {"name": "ids", "layers": 1, "width": 16, "heads": 2, "ids": "prefix"}],
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """The lab trained with three seeds and audited."""
    root = tmp_path_factory.mktemp("seeds")
    out = run_lab(parse_lab_config({**LAB, "out": str(root / "lab")}, root))
    return out, memaudit.audit(out / "checkpoints.yaml", cache=False)


def test_every_run_is_trained_once_per_seed_on_the_same_samples(seeded):
    out, _ = seeded
    for seed in (0, 1, 2):
        ledger = read_ledger(out / f"base-s{seed}" / "ledger.json")
        assert ledger.series == f"base-s{seed}" and ledger.run["seed"] == seed and ledger.run["name"] == "base"
    assert (out / "base-s0" / "data" / "train.jsonl").read_text() == (out / "base-s2" / "data" / "train.jsonl").read_text()
    weights = {(out / f"base-s{s}" / "step-3" / "model.safetensors").read_bytes() for s in (0, 1, 2)}
    assert len(weights) == 3  # other initialization and batch order
    orders = [[u.sample_ids for u in read_ledger(out / f"base-s{s}" / "ledger.json").updates] for s in (0, 1)]
    assert orders[0] != orders[1]


def test_the_report_gives_each_series_metric_over_the_seeds(seeded):
    _, report = seeded
    groups = {g.name: g for g in report.replicates}
    assert set(groups) == {"base", "ids"} and groups["base"].seeds == [0, 1, 2]
    assert groups["base"].series == ["base-s0", "base-s1", "base-s2"]
    by_name = {s.name: s for s in report.series}
    M = groups["base"].metrics["forgetting"]["special"]["M_after"]
    values = [by_name[f"base-s{s}"].metric("forgetting", "special", "M_after") for s in (0, 1, 2)]
    assert M.values == values and M.mean == pytest.approx(np.mean(values))
    assert M.std == pytest.approx(np.std(values, ddof=1)) and (M.min, M.max, M.n) == (min(values), max(values), 3)
    gain = groups["ids"].metrics["unique_ids_series"]["train"]
    assert "gain_M_mean" in gain  # each ID run against the baseline of its own seed
    assert [by_name[f"ids-s{s}"].metric("unique_ids_series", "train", "baseline") for s in (0, 1, 2)] == \
        ["base-s0", "base-s1", "base-s2"]


def test_the_terminal_and_the_figures_show_the_spread(seeded, tmp_path):
    import io

    from rich.console import Console

    from memaudit.plots import figures
    from memaudit.report.render import render_report

    _, report = seeded
    buffer = io.StringIO()
    render_report(report, Console(file=buffer, width=240))
    assert "forgetting · over seeds" in buffer.getvalue() and "base ×3" in buffer.getvalue()
    drawn = figures(report)
    legend = [t.get_text() for t in drawn["memorization"].axes[0].get_legend().get_texts()]
    assert "base (mean ± sd, 3 seeds) · train" in legend and not any("base-s1" in t for t in legend)
    assert drawn["memorization"].axes[0].collections  # the ± sd bands


def test_special_batch_exposures_of_several_updates(tmp_path):
    lab = parse_lab_config({**LAB, "seeds": None, "runs": [{"name": "r", "layers": 1, "width": 16, "special": {
        "epoch": 2, "repeats": 2, "spacing": 1, "updates": 3}}]}, tmp_path)
    updates, _, save = plan_updates(lab, lab.runs[0])
    special = [(u.step, u.epoch) for u in updates if u.kind == "special"]
    assert special == [(4, 2), (5, 2), (6, 2), (10, 3), (11, 3), (12, 3)]  # 3 updates per epoch before
    assert {6, 12} <= save  # a checkpoint right after each exposure


def test_seeds_must_be_distinct_and_given(tmp_path):
    for seeds, words in (([1, 1], "seeds must be distinct"), ([], "at least 1 item"),
                         ([2**63], r"seeds\[0\]: Input should be less than")):
        with pytest.raises(ConfigError, match=words):
            parse_lab_config({**LAB, "seeds": seeds}, tmp_path)
    with pytest.raises(ConfigError, match="seed: Input should be less than 9223372036854775808"):
        parse_lab_config({**LAB, "seed": 2**63}, tmp_path)


def test_spread_and_comparisons_equal_a_direct_computation():
    a, b = [10.0, 12.0, 11.0, 14.0], [7.0, 9.0, 8.5, 8.0]
    s = spread([*a, None])
    assert (s.mean, s.n, s.values[-1]) == (np.mean(a), 4, None) and s.std == pytest.approx(np.std(a, ddof=1))
    d = np.array(a) - np.array(b)
    paired = compare(a, b, paired=True)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(4))
    assert paired["t"] == pytest.approx(t) and paired["df"] == 3 and paired["t_critical"] == pytest.approx(2.353, abs=1e-3)
    assert paired["verdict"] == "supported" and compare(b, a, paired=True)["verdict"] == "reversed"
    welch = compare(a, b, paired=False)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 4
    assert welch["t"] == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    assert welch["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3))
    assert compare([1.0, 3.0, 2.0], [2.0, 1.5, 2.5], paired=False)["verdict"] == "not decidable"
    assert compare([1.0], [0.0], paired=False)["verdict"] == "not decidable"  # one seed: no spread to judge by
    assert t95(1) == pytest.approx(6.314, abs=1e-3) and t95(500) == pytest.approx(1.648, abs=1e-3)
    assert 2.353 < t95(2.7) < 2.920  # fractional Welch degrees of freedom are not rounded down


def test_the_t_statistics_equal_scipy_s():
    stats = pytest.importorskip("scipy.stats")
    a, b = [10.0, 12.0, 11.0, 14.0, 9.5], [7.0, 9.0, 8.5, 8.0, 9.9]
    welch, paired = compare(a, b, paired=False), compare(a, b, paired=True)
    reference = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert welch["t"] == pytest.approx(reference.statistic, rel=1e-12)
    assert welch["df"] == pytest.approx(reference.df, rel=1e-12)
    assert paired["t"] == pytest.approx(stats.ttest_rel(a, b).statistic, rel=1e-12)
    assert (welch["verdict"] == "supported") == (reference.pvalue < 0.05)


def test_interpolated_crossing_of_tau():
    assert crossing_step([0, 10, 20], [0.2, 0.4, 0.8], 0.5) == pytest.approx(12.5)
    assert crossing_step([0, 10], [0.6, 0.9], 0.5) == 0.0
    assert crossing_step([0, 10, 20], [0.1, None, 0.7], 0.4) == pytest.approx(10.0)
    assert crossing_step([0, 10], [0.1, 0.2], 0.5) is None


def test_the_html_page_has_the_spread_over_seeds(seeded):
    from memaudit.report.html import render_html

    _, report = seeded
    page = render_html(report, with_figures=False)
    assert "<h2 id='replicates'>Over seeds</h2>" in page and "<td>base</td><td>0, 1, 2</td>" in page
