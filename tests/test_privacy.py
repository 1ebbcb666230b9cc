"""probes/privacy.py, memaudit/inputs/canaries.py, memaudit/inputs/texts.py: exposure, membership inference, redaction."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from memaudit.measures import roc_auc, tpr_at_fpr

from memaudit.engine.registry import collect, standard_probe_dir
from memaudit.inputs.canaries import Canary, candidate_samples, exposure
from memaudit.inputs.texts import redact

PROBES = {p.name: p for p in collect([standard_probe_dir()])}
CAUSAL = SimpleNamespace(objective="causal")


def test_exposure_from_an_exact_rank_table():
    scores = np.array([2.0, 1.0, 3.0, 1.5, 4.0, 5.0, 6.0, 7.0])  # the secret (2.0) is beaten by 1.0 and 1.5
    e = exposure(scores, space=8, exact=True)
    assert e["rank"] == 3 and e["exposure"] == pytest.approx(3 - math.log2(3))
    top = exposure(np.array([0.1, 1.0, 2.0, 3.0]), space=4, exact=True)
    assert top["rank"] == 1 and top["exposure"] == pytest.approx(2.0)


def test_exposure_estimated_from_a_sample():
    rng = np.random.default_rng(0)
    scores = np.concatenate([[1.0], rng.uniform(0, 10, size=2000)])  # ~10% of candidates beat the secret
    e = exposure(scores, space=10**6, exact=False)
    assert not e["exact"] and e["rank"] == pytest.approx(1e5, rel=0.2)
    assert e["exposure"] == pytest.approx(math.log2(10), abs=0.3) and 0 < e["exposure_stderr"] < 0.2


def test_candidate_sets_exact_and_sampled(tokenizer):
    small = Canary(id="a", format="code {secret} here", secret="042", alphabet="0123456789", length=3)
    big = Canary(id="b", format="call {secret}", secret="482913", alphabet="0123456789", length=6)
    tokens, mask, ids, meta = candidate_samples([small, big], tokenizer, max_candidates=500)
    assert meta == {"a": {"space": 1000, "exact": False, "n_candidates": 501},
                    "b": {"space": 10**6, "exact": False, "n_candidates": 501}}
    tokens, mask, ids, meta = candidate_samples([small], tokenizer, max_candidates=2000)
    assert meta["a"]["exact"] and meta["a"]["n_candidates"] == 1000 and ids[0] == "a#0"
    first = tokenizer.decode(tokens[0][tokens[0] != tokenizer.eos_token_id])
    assert first == "code 042 here"
    assert mask[0].any() and not mask[0][0]  # "code" is not scored, the secret is


def test_auc_and_tpr_on_hand_built_scores():
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert roc_auc(np.array([2.0]), np.array([2.0])) == 0.5  # ties count half
    members, non = np.arange(100, 200, dtype=float), np.arange(0, 100, dtype=float)
    assert tpr_at_fpr(members, non) == 1.0 and tpr_at_fpr(non, members) == 0.0


def test_memorized_strings_on_hand_built_hits():
    hits = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1]], dtype=bool)
    logprobs = {"T=1.0": np.log(np.full((3, 4), 0.5)), "T=1.0,top_k=40": np.zeros((3, 4))}  # p = 0.5 and 1 per token
    out = PROBES["memorized_strings"].fn(hits, logprobs, ["a", "b", "c"], None, CAUSAL, None, None, k=2, m=2)
    pz = {"T=1.0": pytest.approx(2 * np.log10(0.5)), "T=1.0,top_k=40": 0.0}  # two suffix tokens
    assert out == {"n_extractable": 2, "strings": [{"id": "a", "match_len": 2, "log10_pz": pz},
                                                   {"id": "c", "match_len": 2, "log10_pz": pz}]}
    shown = PROBES["memorized_strings"].fn(hits, logprobs, ["a", "b", "c"], lambda i: f"text {i}", CAUSAL, None, None,
                                           k=2, m=2)
    assert shown["strings"][0]["text"] == "text 0"


def test_redaction_of_known_strings():
    from memaudit.inputs.tagging import load_pipeline

    text = "Write to jane.doe@example.org or call +44 20 7946 0958; Mr Hale paid 1,200 pounds at www.x.org."
    out = redact(text, load_pipeline("auto")[0])
    for secret in ("jane.doe", "7946", "1,200", "Hale", "www.x.org"):
        assert secret not in out
    assert "[EMAIL]" in out and "[PHONE]" in out and "[NUMBER]" in out and "[NAME]" in out and "[URL]" in out


@pytest.fixture(scope="module")
def privacy_lab(tmp_path_factory):
    from memaudit.lab.config import parse_lab_config
    from memaudit.lab.train import run_lab

    base = tmp_path_factory.mktemp("privacy")
    lab = parse_lab_config({"out": str(base / "lab"), "vocab_size": 300, "seq_len": 48, "n_samples": 8, "n_valid": 8,
                            "n_special": 0, "batch_size": 4, "epochs": 12, "lr": 0.01, "save_every": 4,
                            "canaries": {"copies": 6},
                            "runs": [{"name": "s", "layers": 1, "width": 32, "heads": 2}]}, base)
    return run_lab(lab)


def test_exposure_rises_on_a_model_trained_with_the_canary_repeated(privacy_lab, run_cli, tmp_path):
    code, out, err = run_cli("run", privacy_lab / "checkpoints.yaml", "--json", tmp_path / "r.json",
                             "-k", "canaries or membership")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    ckpts = report["series"][0]["checkpoints"]
    first, last = (c["results"]["canaries"]["canaries"] for c in (ckpts[0], ckpts[-1]))
    assert last["exposure_max"] > first["exposure_max"] + 3
    assert last["exact"] == {"pin-3": True, "phone-6": False}
    assert ckpts[-1]["results"]["membership"]["all"]["auc_loss"] > 0.8
    meta = next(d for d in report["datasets"] if d["role"] == "canary")["canaries"]
    assert meta["pin-3"]["space"] == 1000
    for c in ckpts:  # timings and times are numbers that can hold the digits by chance
        c["load_s"] = c["wait_s"] = c["forward_s"] = 0
    del report["provenance"]
    text = json.dumps(report)
    assert "731" not in text and "482913" not in text  # the secrets never reach the report


def test_no_training_text_in_the_default_report(privacy_lab, run_cli, tmp_path):
    train = [json.loads(line) for line in (privacy_lab / "s" / "data" / "train.jsonl").read_text().splitlines()]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(privacy_lab / "s" / "step-0")
    phrase = tok.decode(train[0]["tokens"][4:16])
    run_cli("run", privacy_lab / "checkpoints.yaml", "--json", tmp_path / "r.json", "-k", "memorized")
    plain = (tmp_path / "r.json").read_text()
    assert phrase not in plain and json.loads(plain)["text_included"] is False
    import yaml

    config = yaml.safe_load((privacy_lab / "checkpoints.yaml").read_text())
    config["probes"]["memorized_strings"] = {"k": 4, "m": 4}
    (privacy_lab / "short-strings.yaml").write_text(yaml.safe_dump(config))
    run_cli("run", privacy_lab / "short-strings.yaml", "--json", tmp_path / "t.json", "-k", "memorized", "--show-text")
    shown = json.loads((tmp_path / "t.json").read_text())
    assert shown["text_included"] is True
    strings = shown["series"][0]["checkpoints"][-1]["results"]["memorized_strings"]["train"]["strings"]
    assert strings and all("text" in s for s in strings)
    assert not any("731" in s["text"] or "482913" in s["text"] for s in strings)  # numbers are redacted


def test_min_k_keeps_int_of_k_percent_of_the_targets_as_the_reference_code():
    from memaudit.measures import membership_rows

    logprobs = -np.arange(1, 64, dtype=np.float32)[None]  # (1, 63): 63 targets, k% = 20 -> int(12.6) = 12
    scores = membership_rows(logprobs, np.ones_like(logprobs), np.full_like(logprobs, 2.0), np.array([10]), 20.0)
    assert scores["min_k"][0] == pytest.approx(-np.arange(52, 64).mean())  # the 12 lowest, not 13
    assert scores["zlib"][0] == pytest.approx(logprobs.mean() / 10)  # mean log-likelihood per zlib byte
