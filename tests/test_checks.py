"""memaudit/results/checks.py: thresholds over checkpoints and series aggregates."""

import pytest

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.inputs.config import CheckConfig, DatasetConfig
from memaudit.results.checks import evaluate_checks
from memaudit.results.schema import CheckpointResult, SeriesResult

PROBES = collect([standard_probe_dir()])
DATA = [DatasetConfig(name="train", path="x")]


def _series():
    ckpts = [CheckpointResult(name=f"s{i}", step=i, location="-", results={"memorization": {"train": {"M": m}}})
             for i, m in enumerate([0.1, 0.5, 0.3])]
    return SeriesResult(name="a", source="local:-", tokenizer="t", checkpoints=ckpts,
                        results={"memorization_series": {"train": {"T_step@0.5": 1}}})


@pytest.mark.parametrize("at, bounds, value, passed", [
    ("last", {"max": 0.4}, 0.3, True), ("first", {"min": 0.2}, 0.1, False), ("max", {"max": 0.4}, 0.5, False),
    ("min", {"min": 0.1}, 0.1, True), ("mean", {"max": 0.3}, 0.3, True), ("s1", {"max": 0.49}, 0.5, False)])
def test_at_and_bounds(at, bounds, value, passed):
    [r] = evaluate_checks([CheckConfig(metric="memorization.M", at=at, **bounds)], [_series()], PROBES, DATA)
    assert r.value == pytest.approx(value) and r.passed is passed


def test_each_gives_one_result_per_checkpoint():
    results = evaluate_checks([CheckConfig(metric="memorization.M", at="each", max=0.4)], [_series()], PROBES, DATA)
    assert [r.passed for r in results] == [True, False, True]
    assert "> max 0.4" in results[1].message


def test_series_probe_metric_and_missing_value():
    ok, missing = evaluate_checks([CheckConfig(metric="memorization_series.T_step@0.5", max=2),
                                   CheckConfig(metric="memorization_series.T_step@0.9", max=2)],
                                  [_series()], PROBES, DATA)
    assert ok.passed and ok.value == 1
    assert not missing.passed and "not available" in missing.message


def test_a_check_needs_a_bound():
    with pytest.raises(ValueError, match="min"):
        CheckConfig(metric="memorization.M")
