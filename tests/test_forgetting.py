"""probes/forgetting.py: the decay fit, the curve on hand-built results, and a short lab run."""

import json
import math

import numpy as np
import pytest
from memaudit.probes.forgetting import fit_exponential_decay

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.inputs.ledger import Intervention, Ledger
from memaudit.results.schema import CheckpointResult, DatasetInfo

FORGETTING = {p.name: p for p in collect([standard_probe_dir()])}["forgetting"]


@pytest.mark.parametrize("b, a, lam", [(0.3, 0.5, 40.0), (0.05, 0.9, 5.0), (0.6, 0.2, 200.0)])
def test_fit_recovers_known_parameters(b, a, lam):
    t = np.arange(0, 400, 10.0)
    noise = np.random.default_rng(0).normal(0, 0.002, size=t.shape)
    fit = fit_exponential_decay(t, b + a * np.exp(-t / lam) + noise)
    assert fit["note"] is None
    assert fit["b"] == pytest.approx(b, abs=0.01)
    assert fit["a"] == pytest.approx(a, abs=0.02)
    assert fit["lam"] == pytest.approx(lam, rel=0.1)
    assert 0 < fit["b_stderr"] < 0.01


def test_fit_equals_scipy_curve_fit():
    """The variable-projection fit reaches the least-squares optimum scipy's curve_fit finds from the truth."""
    optimize = pytest.importorskip("scipy.optimize")
    t = np.arange(0, 300, 15.0)
    m = 0.25 + 0.6 * np.exp(-t / 30.0) + np.random.default_rng(1).normal(0, 0.01, size=t.shape)
    fit = fit_exponential_decay(t, m)
    (b, a, lam), cov = optimize.curve_fit(lambda t, b, a, lam: b + a * np.exp(-t / lam), t, m, p0=(0.25, 0.6, 30.0))
    assert (fit["b"], fit["a"], fit["lam"]) == pytest.approx((b, a, lam), rel=1e-5)
    assert fit["b_stderr"] == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-3)


def test_fit_refuses_too_few_points():
    fit = fit_exponential_decay([0, 10], [0.9, 0.5])
    assert "not enough checkpoints to fit" in fit["note"] and "b" not in fit


def test_fit_says_when_the_drop_is_faster_than_the_checkpoints():
    fit = fit_exponential_decay([0, 50, 100, 150, 200], [0.9, 0.3, 0.3, 0.3, 0.3])
    assert fit["b"] == pytest.approx(0.3, abs=1e-6) and "faster than the checkpoints" in fit["note"]


def _ckpt(step, m):
    return CheckpointResult(name=f"step-{step}", step=step, location="-",
                            results={"memorization": {"special": {"M": m}}})


def test_curve_and_baselines_on_hand_built_results():
    steps = [0, 10, 20, 21, 30, 40, 50, 60]
    ms = [0.1, 0.1, 0.1] + [0.2 + 0.6 * math.exp(-t / 15) for t in (0, 9, 19, 29, 39)]
    ledger = Ledger(series="s", n_params=1, steps_per_epoch=10, epochs=6, updates=[], epoch_end_steps=[10, 20, 30],
                    interventions=[Intervention(kind="special_batch", steps=[21], epochs=[3],
                                                detail={"epoch": 3, "repeats": 1, "spacing": None})])
    special = DatasetInfo(name="special", role="special", path="-", seq_len=8, n_samples=8, n_tokens=64, sha256="x")
    out = FORGETTING.fn([_ckpt(s, m) for s, m in zip(steps, ms)], [special], ledger)["special"]
    assert out["injected_at"] == [21] and out["injection_epoch"] == 3 and out["repeats"] == 1
    assert out["steps_since"] == [0, 9, 19, 29, 39]
    assert out["M_before"] == 0.1 and out["M_after"] == pytest.approx(0.8)
    assert out["baseline_min"] == pytest.approx(ms[-1])
    assert out["baseline_fit"] == pytest.approx(0.2, abs=1e-3)
    assert out["half_life"] == pytest.approx(15 * math.log(2), rel=1e-2)


def test_seen_at_step_from_the_yaml_replaces_the_ledger():
    special = DatasetInfo(name="special", role="special", path="-", seq_len=8, n_samples=8, n_tokens=64,
                          sha256="x", seen_at_step=[20])
    out = FORGETTING.fn([_ckpt(10, 0.1), _ckpt(20, 0.7), _ckpt(30, 0.4)], [special], None)["special"]
    assert out["M_after"] == 0.7 and out["baseline_min"] == 0.4 and "not enough" in out["fit_note"]


def test_a_lab_run_shows_the_jump_and_the_fall(tmp_path, run_cli):
    from memaudit.lab.config import parse_lab_config
    from memaudit.lab.train import run_lab

    lab = parse_lab_config({
        "out": str(tmp_path / "lab"), "vocab_size": 300, "seq_len": 16, "n_samples": 16, "n_valid": 4, "n_special": 4,
        "batch_size": 4, "epochs": 8, "lr": 0.01, "save_every": 1,
        "runs": [{"name": "s", "layers": 1, "width": 32, "heads": 2, "special": {"epoch": 3, "repeats": 8}}]}, tmp_path)
    out = run_lab(lab)
    code, _, err = run_cli("run", out / "checkpoints.yaml", "-k", "memorization or forgetting", "--json",
                           tmp_path / "r.json")
    assert code in (0, 1), err
    row = json.loads((tmp_path / "r.json").read_text())["series"][0]["results"]["forgetting"]["special"]
    assert row["injected_at"] == list(range(9, 17))
    assert row["M_after"] > row["M_before"] + 0.1  # trained on it eight times: a jump
    assert row["M_curve"][-1] < row["M_after"]  # then it falls while training goes on
