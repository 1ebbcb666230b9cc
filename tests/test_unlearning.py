"""Unlearning audit: lab unlearning and retraining, the `unlearning` probes, PrivLeak, the relearning check."""

import numpy as np
import pytest
from memaudit.measures import roc_auc
from memaudit.probes.unlearning import privleak

import memaudit
from memaudit.errors import ConfigError
from memaudit.inputs.ledger import read_ledger
from memaudit.lab.config import parse_lab_config
from memaudit.lab.train import run_lab

LAB = {
    "vocab_size": 300, "seq_len": 16, "n_samples": 12, "n_forget": 4, "n_valid": 8, "n_special": 0,
    "batch_size": 4, "epochs": 12, "lr": 0.01, "save_every": 4,
    "runs": [{"name": "ga", "layers": 1, "width": 32, "heads": 2,
              "unlearn": {"steps": 3, "lr": 0.005, "relearn": {"steps": 3, "fraction": 0.5}}},
             {"name": "npo", "layers": 1, "width": 32, "heads": 2, "unlearn": {"method": "npo", "steps": 3,
                                                                                "lr": 0.005}},
             {"name": "retrain", "layers": 1, "width": 32, "heads": 2, "retrain": True}],
}


@pytest.fixture(scope="module")
def unlearned(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlearn")
    out = run_lab(parse_lab_config({**LAB, "out": str(root / "lab")}, root))
    return out, memaudit.audit(out / "checkpoints.yaml", cache=False, select="memorization or unlearning")


def test_the_ledger_records_the_unlearning_steps_and_the_reference_never_saw_the_forget_set(unlearned):
    out, _ = unlearned
    forget = {f"train:{i}" for i in range(4)}
    ga = read_ledger(out / "ga" / "ledger.json")
    steps = [u.step for u in ga.updates if u.kind == "unlearn"]
    assert steps == [37, 38, 39] and all(set(u.sample_ids) == forget for u in ga.updates if u.kind == "unlearn")
    [intervention] = [i for i in ga.interventions if i.kind == "unlearning"]
    assert intervention.steps == steps and intervention.detail["method"] == "gradient_ascent"
    assert {f"step-{s}" for s in steps} <= {p.name for p in (out / "ga").iterdir()}
    retrain = read_ledger(out / "retrain" / "ledger.json")
    seen = {s for u in retrain.updates for s in u.sample_ids}
    assert not seen & forget and seen == {f"train:{i}" for i in range(4, 12)}
    assert [i.kind for i in retrain.interventions] == ["retrain"]


def test_the_unlearning_probe_reports_the_three_sets_and_privleak(unlearned):
    out, report = unlearned
    series = {s.name: s for s in report.series}
    row = series["ga"].results["unlearning"]["forget"]
    assert row["steps"] == [36, 37, 38, 39] and row["before"] == "step-36" and row["reference"] == "retrain"
    ckpt = {c.step: c for c in series["ga"].checkpoints}
    assert row["M_forget"] == [ckpt[s].metric("memorization", "forget", "M") for s in row["steps"]]
    assert row["M_forget_before"] > row["M_forget_after"]  # gradient ascent lowers it
    assert row["forget_excess"] == pytest.approx(row["M_forget"][-1] - row["M_holdout"][-1])
    assert row["retain_M_change"] == pytest.approx(row["M_retain"][-1] - row["M_retain"][0])
    ref_last = series["retrain"].checkpoints[-1]
    expected = privleak(ckpt[39].metric("unlearning_membership", "all", "auc_loss"),
                        ref_last.metric("unlearning_membership", "all", "auc_loss"))
    assert row["privleak_loss"] == pytest.approx(expected)
    assert series["retrain"].results["unlearning"] == {}  # the reference is not an unlearning run
    assert row["relearn_steps"] == 3 and 0 <= row["relearn_M_before"] <= 1
    assert "unlearning" in memaudit.plots.figures(report)


def test_privleak_and_aucs_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    forget, holdout = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 50)
    direct = np.mean([(f > h) + 0.5 * (f == h) for f in forget for h in holdout])
    assert roc_auc(forget, holdout) == pytest.approx(direct)
    ties = rng.integers(0, 3, 30).astype(float), rng.integers(0, 3, 20).astype(float)
    assert roc_auc(*ties) == pytest.approx(np.mean([(a > b) + 0.5 * (a == b) for a in ties[0] for b in ties[1]]))
    assert privleak(0.8, 0.5) == pytest.approx(0.6) and privleak(0.5, 0.5) == 0.0 and privleak(None, 0.5) is None


def _muse_scores(folder, rows: list[list[int]]) -> dict[str, np.ndarray]:
    """MUSE's privleak.inference per sample (swj0419/muse_bench, metrics/privleak.py), on token ids: PPL is the
    mean next-token loss, Min-40% minus the mean of the lowest int(40% of the positions) log-probabilities."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = {"PPL": [], "Min-40%": []}
    with torch.no_grad():
        for ids in rows:
            ids = torch.tensor(ids).unsqueeze(0)
            logits = model(ids).logits
            all_prob = torch.log_softmax(logits, dim=-1)[0, :-1].gather(1, ids[0, 1:, None])[:, 0].numpy()
            out["PPL"].append(-all_prob.mean())
            out["Min-40%"].append(-np.mean(np.sort(all_prob)[:int(len(all_prob) * 0.4)]))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def _muse_auc(forget: np.ndarray, holdout: np.ndarray) -> float:
    """MUSE's sweep(): roc_curve over the forget set (label 0) and the holdout set (label 1) on -ppl."""
    metrics = pytest.importorskip("sklearn.metrics")
    y = np.array([0] * len(forget) + [1] * len(holdout))
    fpr, tpr, _ = metrics.roc_curve(y, -np.concatenate([forget, holdout]))
    return metrics.auc(fpr, tpr)


def test_unlearning_aucs_and_privleak_equal_a_port_of_muse(unlearned):
    """Orientation and formula as MUSE's: forget label 0, holdout label 1, score -PPL or -Min-40%; PrivLeak
    (AUC_unlearned - AUC_retrained) / AUC_retrained, negative when the forget set is not unlearned."""
    import json

    pytest.importorskip("sklearn")
    out, report = unlearned
    series = {s.name: s for s in report.series}

    def rows(series_name, file):
        return [json.loads(line)["tokens"] for line in (out / series_name / "data" / file).read_text().splitlines()]

    aucs = {}
    for name in ("ga", "npo", "retrain"):
        last = series[name].checkpoints[-1]
        forget, holdout = (_muse_scores(out / name / last.name, rows(name, f)) for f in ("forget.jsonl", "valid.jsonl"))
        for score, key in (("loss", "PPL"), ("min_k", "Min-40%")):
            aucs[name, score] = _muse_auc(forget[key], holdout[key])
            assert last.metric("unlearning_membership", "all", f"auc_{score}") == pytest.approx(aucs[name, score],
                                                                                             abs=1e-9)
    for name in ("ga", "npo"):
        row = series[name].results["unlearning"]["forget"]
        for score in ("loss", "min_k"):
            muse = (aucs[name, score] - aucs["retrain", score]) / aucs["retrain", score]
            assert row[f"privleak_{score}"] == pytest.approx(muse, abs=1e-9)


def test_the_relearning_check_brings_memorization_back(tokenizer, corpus_text):
    """A tiny model trained to memorize 8 samples, unlearned by gradient ascent: a few steps on half of them
    restore M on the other half, the sign of hidden rather than removed knowledge."""
    import torch
    from conftest import tiny_model

    from memaudit.lab.config import Relearn, Unlearn
    from memaudit.lab.unlearn import relearn, unlearning_loss

    ids = torch.tensor(tokenizer(corpus_text[:4000], add_special_tokens=False)["input_ids"][:8 * 24]).view(8, 24)
    torch.manual_seed(0)
    model = tiny_model("gpt_neox", len(tokenizer), seed=0, context=64).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(80):  # memorize
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    for _ in range(6):  # unlearn
        loss = unlearning_loss(model, ids, Unlearn())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = relearn(model, tokenizer, ids, Relearn(steps=5, fraction=0.5, lr=2e-3), 1e-2)
    assert (result["n_fit"], result["n_measured"]) == (4, 4)
    assert result["M_after"] > result["M_before"] + 0.2, result
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model itself is unchanged


@pytest.mark.parametrize("change, words", [
    ({"n_forget": 0}, "set n_forget between 1"), ({"n_valid": 0}, "needs holdout text"),
    ({"runs": [{"name": "x", "layers": 1, "width": 16, "retrain": True, "unlearn": {}}]}, "not both"),
    ({"runs": [{"name": "x", "layers": 1, "width": 16, "unlearn": {"method": "forget"}}]}, "gradient_ascent"),
])
def test_bad_unlearning_settings_are_refused(tmp_path, change, words):
    with pytest.raises(ConfigError, match=words):
        parse_lab_config({**LAB, **change}, tmp_path)


def test_checks_gate_privleak_and_the_forget_excess(unlearned, run_cli, tmp_path):
    import yaml

    out, report = unlearned
    raw = yaml.safe_load((out / "checkpoints.yaml").read_text())
    raw["checks"] = [{"name": "PrivLeak within 5%", "metric": "unlearning.privleak_loss", "dataset": "forget",
                      "series": "ga", "min": -0.05, "max": 0.05},
                     {"name": "forget M back at holdout level", "metric": "unlearning.forget_excess",
                      "dataset": "forget", "series": "ga", "max": 0.02}]
    path = out / "gated.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli("run", path, "-k", "memorization or unlearning", "--json", tmp_path / "r.json")
    gated = memaudit.read_report(tmp_path / "r.json")
    row = report.series[0].results["unlearning"]["forget"]
    values = {c.name: c.value for c in gated.checks}
    assert values == {"PrivLeak within 5%": pytest.approx(row["privleak_loss"]),
                      "forget M back at holdout level": pytest.approx(row["forget_excess"])}
    expected = all(c.passed for c in gated.checks)
    assert code == (0 if expected else 1), err
