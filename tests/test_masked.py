"""Masked-LM checkpoints: mask groups, masked M(f) against a naive computation, a tiny masked lab run."""

import json

import numpy as np
import pytest
import torch

from memaudit.engine.forward import mask_groups, score


def test_mask_groups_cover_every_position_exactly_once():
    groups = mask_groups(50, fraction=0.15, seed=3)
    assert len(groups) == 7
    covered = np.concatenate(groups)
    assert sorted(covered.tolist()) == list(range(1, 50))
    assert [g.tolist() for g in groups] == [g.tolist() for g in mask_groups(50, 0.15, 3)]  # seeded


@pytest.fixture
def tiny_bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    return BertForMaskedLM(config).eval()


def test_masked_M_equals_a_naive_one_position_at_a_time_computation(tiny_bert):
    mask_id = 59
    tokens = np.random.default_rng(0).integers(0, 59, size=(5, 20))
    products, batches = score(tiny_bert, tokens, set(), batch_size=2, device="cpu", mask_token_id=mask_id)
    groups = mask_groups(20)
    assert batches == 3 * len(groups)
    group_of = {int(p): g for g in groups for p in g}
    with torch.no_grad():
        for i, sample in enumerate(tokens):
            for position in range(1, 20):
                masked = torch.tensor(sample)[None].clone()
                masked[0, group_of[position]] = mask_id
                logits = tiny_bert(input_ids=masked).logits[0, position]
                assert products["hits"][i, position - 1] == (int(logits.argmax()) == sample[position])
                expected = float(torch.log_softmax(logits, -1)[sample[position]])
                assert products["logprobs"][i, position - 1] == pytest.approx(expected, abs=1e-5)


def test_masked_lm_without_mask_token_is_refused(tiny_bert):
    from memaudit.errors import ConfigError

    with pytest.raises(ConfigError, match="no mask token"):
        score(tiny_bert, np.zeros((1, 8), dtype=np.int64), set(), 1, "cpu")


def test_a_tiny_masked_lab_run_shows_M_rising(tmp_path, run_cli):
    from memaudit.lab.config import parse_lab_config
    from memaudit.lab.train import run_lab

    lab = parse_lab_config({"out": str(tmp_path / "lab"), "vocab_size": 300, "seq_len": 16, "n_samples": 16,
                            "n_valid": 4, "n_special": 0, "batch_size": 4, "epochs": 15, "lr": 0.01, "save_every": 5,
                            "runs": [{"name": "bert", "layers": 2, "width": 32, "heads": 2, "objective": "masked"},
                                     {"name": "gpt", "layers": 2, "width": 32, "heads": 2}]}, tmp_path)
    out = run_lab(lab)
    code, _, err = run_cli("run", out / "checkpoints.yaml", "--json", tmp_path / "r.json", "-k", "memorization")
    assert code in (0, 1), err
    report = json.loads((tmp_path / "r.json").read_text())
    bert = next(s for s in report["series"] if s["name"] == "bert")
    curve = [c["results"]["memorization"]["train"]["M"] for c in bert["checkpoints"]]
    assert all(c["objective"] == "masked" for c in bert["checkpoints"])
    assert curve[-1] > curve[0] + 0.1 and curve[-1] == max(curve)
    assert bert["checkpoints"][-1]["results"]["memorization"]["train"]["extractable"] is None
    assert report["provenance"]["masking"] == "fraction 0.15, seed 0"
    import memaudit  # a masked LM writes no continuations: the generation probe reports nothing for it, and no error

    generated = memaudit.audit(out / "checkpoints.yaml", select="generation", params={"generation": {"prefixes": [4]}})
    by_name = {s.name: s for s in generated.series}
    assert generated.exit_code in (0, 1) and all(c.error is None for s in generated.series for c in s.checkpoints)
    assert all(not any(c.results["generation"].values()) for c in by_name["bert"].checkpoints)
    assert by_name["gpt"].checkpoints[-1].results["generation"]["train"]["n_generated[k=4]"] == 16
