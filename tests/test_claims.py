"""memaudit/lab/claims.py: verdicts from replicate groups, on synthetic values."""

from types import SimpleNamespace

import pytest

from memaudit.lab.claims import (
    NOT_REPRODUCED,
    REPRODUCED,
    UNDECIDED,
    claims_table,
    judge,
)
from memaudit.results.replicates import spread
from memaudit.results.schema import ReplicateGroup


def group(name, n_params, probe, dataset, metric, values):
    return ReplicateGroup(name=name, seeds=list(range(len(values))), series=[f"{name}-s{i}" for i in range(len(values))],
                          n_params=n_params, metrics={probe: {dataset: {metric: spread(values)}}})


def report(*groups):
    return SimpleNamespace(replicates=list(groups))


def test_an_ordering_claim_is_reproduced_only_beyond_the_spread():
    where = ("memorization_series", "train", "T_step_interp@0.5")
    clear = report(group("small", 1, *where, [100, 104, 98]), group("medium", 2, *where, [80, 83, 79]),
                   group("large", 3, *where, [60, 58, 63]))
    [faster, *_] = judge({"forgetting-sizes": clear})
    assert faster.verdict == REPRODUCED and [c["verdict"] for c in faster.comparisons] == ["supported"] * 2
    noisy = report(group("small", 1, *where, [100, 60, 98]), group("medium", 2, *where, [80, 99, 62]),
                   group("large", 3, *where, [60, 58, 63]))
    assert judge({"forgetting-sizes": noisy})[0].verdict == UNDECIDED
    reversed_ = report(group("small", 1, *where, [50, 52, 51]), group("medium", 2, *where, [80, 83, 79]),
                       group("large", 3, *where, [90, 91, 93]))
    assert judge({"forgetting-sizes": reversed_})[0].verdict == NOT_REPRODUCED
    never = report(group("small", 1, *where, [None, None, None]), group("large", 3, *where, [60, 58, 63]))
    assert judge({"forgetting-sizes": never})[0].verdict == UNDECIDED


def test_a_no_effect_claim_and_a_gain_claim():
    where = ("forgetting", "special", "baseline_min")
    same = report(group("epoch-4", 1, *where, [0.4, 0.42, 0.41]), group("epoch-8", 1, *where, [0.41, 0.40, 0.43]),
                  group("epoch-12", 1, *where, [0.42, 0.39, 0.41]))
    epochs, horizon = judge({"forgetting-epochs": same})
    assert epochs.verdict == REPRODUCED and len(epochs.comparisons) == 3
    assert horizon.verdict == UNDECIDED and not horizon.comparisons  # no curves in this report
    apart = report(group("epoch-4", 1, *where, [0.4, 0.42, 0.41]), group("epoch-8", 1, *where, [0.6, 0.61, 0.62]))
    assert judge({"forgetting-epochs": apart})[0].verdict == NOT_REPRODUCED
    gains = ("unique_ids_series", "train", "gain_T_step_interp@0.5")
    ids = report(group("small-ids", 1, *gains, [12, 15, 11]), group("small-control", 1, *gains, [3, -4, 1]))
    speed, vocab = judge({"unique-ids": ids})
    assert (speed.verdict, vocab.verdict) == (REPRODUCED, UNDECIDED)
    assert "small-ids: 12.7 ± 2.08" in claims_table([speed])


def test_the_common_horizon_compares_equal_spans_after_injection():
    """epoch-4's curve runs 6 steps after injection, epoch-12's 3: both are judged on t <= 3."""
    where = ("forgetting", "special", "baseline_min")
    curves = {"epoch-4": ([0, 1, 2, 3, 4, 5, 6], [0.9, 0.6, 0.5, 0.45, 0.3, 0.2, 0.1]),
              "epoch-12": ([0, 1, 2, 3], [0.9, 0.62, 0.52, 0.44])}
    series, groups = [], []
    for name, (steps, m) in curves.items():
        names = [f"{name}-s{i}" for i in range(3)]
        for i, n in enumerate(names):
            shifted = [v + 0.01 * i for v in m]
            series.append(SimpleNamespace(name=n, results={"forgetting": {"special": {"steps_since": steps,
                                                                                      "M_curve": shifted}}}))
        groups.append(group(name, 1, *where, [min(m[1:]) + 0.01 * i for i in range(3)]))
    judged = judge({"forgetting-epochs": SimpleNamespace(replicates=groups, series=series)})
    whole, common = judged
    assert whole.verdict == NOT_REPRODUCED  # 0.1 vs 0.44 over unequal spans
    assert common.metric == "forgetting baseline_min_within_3_steps [special]"
    assert common.values["epoch-4"]["values"] == pytest.approx([0.45, 0.46, 0.47])
    assert common.verdict == REPRODUCED  # 0.45 vs 0.44 within the spread


def test_perturbation_claims_judge_what_the_model_writes_by_duplication_level():
    """The gain over the twin, ROUGE-L of the continuations and approximate memorization each rise with duplication
    (paired by seed); without the generation probe's numbers there is no claim about them."""
    levels = [0, 1, 4, 16, 64]

    def twin(with_generation, approx_flat=False):
        metrics = {}
        for i, level in enumerate(levels):
            row = {"gain": spread([0.1 * i, 0.1 * i + 0.02, 0.1 * i - 0.01]),
                   "auc_reference": spread([0.9, 0.92, 0.91]), "auc_loss": spread([0.6, 0.62, 0.61])}
            if with_generation:
                row["rougeL_f1"] = spread([0.2 + 0.15 * i, 0.21 + 0.15 * i, 0.19 + 0.15 * i])
                row["approx"] = spread([0.3, 0.1, 0.2] if approx_flat else [0.05 * i, 0.05 * i + 0.01, 0.05 * i])
            metrics[f"perturb[dup={level}]"] = row
        return report(ReplicateGroup(name="perturbed", seeds=[0, 1, 2], series=["a", "b", "c"], n_params=1,
                                     metrics={"twin": metrics}))

    claims = {c.claim: c for c in judge({"perturbation": twin(True)})}
    rouge = claims["what the model writes copies more with duplication (ROUGE-L F1 of greedy continuations)"]
    approx = claims["what the model writes copies more with duplication (approximate memorization, BLEU > 0.75)"]
    assert rouge.verdict == REPRODUCED and len(rouge.comparisons) == 4
    assert approx.verdict == REPRODUCED and "perturbed dup=64" in approx.values
    flat = {c.claim: c for c in judge({"perturbation": twin(True, approx_flat=True)})}
    assert flat[approx.claim].verdict != REPRODUCED
    assert not any("writes" in c.claim for c in judge({"perturbation": twin(False)}))
