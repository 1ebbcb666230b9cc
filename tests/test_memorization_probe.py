"""probes/memorization.py: M(f), k-extractability (== greedy generate), T(N, tau), memorization before overfitting."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_model

from memaudit.engine.forward import score
from memaudit.engine.registry import collect, probe_on, standard_probe_dir
from memaudit.results.schema import CheckpointResult, DatasetInfo, SeriesResult

PROBES = {p.name: p for p in collect([standard_probe_dir()])}
NO_CKPT = SimpleNamespace(step=None, objective="causal")


def _info(name="train", role="train", seq_len=5, n_samples=2):
    return DatasetInfo(name=name, role=role, path="-", seq_len=seq_len, n_samples=n_samples,
                       n_tokens=seq_len * n_samples, sha256="x")


def _memorization(hits, logprobs, ids, steps=None, checkpoint=NO_CKPT, **params):
    probe = PROBES["memorization"]
    probe = type(probe)(**{**probe.__dict__, "params": {**probe.params, **params}})
    return probe_on(probe, hits=hits, logprobs=logprobs, sample_ids=ids, sample_steps=steps, checkpoint=checkpoint,
                    dataset=_info(seq_len=hits.shape[1] + 1, n_samples=len(ids)), ledger=None)


def test_memorization_metrics_on_hand_built_hits():
    hits = np.array([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)  # (samples 2, seq 4)
    logprobs = np.log(np.full((2, 4), 0.5, dtype=np.float32))
    out = _memorization(hits, logprobs, ["a", "b"], k=2, m=2)
    assert out["M"] == pytest.approx(5 / 8) and out["n_tokens"] == 8 and out["n_samples"] == 2
    assert out["loss"] == pytest.approx(np.log(2), rel=1e-6)
    assert out["ppl"] == pytest.approx(2.0, rel=1e-6)
    assert out["sample_M_mean"] == pytest.approx(0.625)
    assert out["sample_M_p50"] == pytest.approx(0.625)
    # prefix of 2 tokens -> targets 2, 3 are predicted at positions 1, 2
    assert out["extractable"] == 0.5 and out["n_extractable"] == 1
    assert out["match_len_mean"] == pytest.approx((2 + 0) / 2)


def test_extractability_is_not_applicable_to_short_samples():
    hits = np.ones((3, 10), dtype=bool)
    out = _memorization(hits, np.zeros((3, 10), np.float32), ["a", "b", "c"])
    assert out["extractable"] is None  # 11-token samples cannot hold a 32 + 32 window


def _train_to_memorize(model, tokens, steps=150):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    batch = torch.from_numpy(tokens)
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_one_pass_extractability_equals_greedy_generate():
    from memaudit.measures import extractable_samples

    k, m = 8, 8
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 200, size=(8, 20), dtype=np.int64)
    torch.manual_seed(0)
    model = _train_to_memorize(tiny_model("gpt_neox", vocab_size=200, seed=0), tokens[:4], steps=120)
    products, _ = score(model, tokens, set(), batch_size=3, device="cpu")
    verdicts, lengths = extractable_samples(products["hits"], k, m)

    model.generation_config.eos_token_id = None
    for i, sample in enumerate(tokens):
        prefix = torch.from_numpy(sample[None, :k])
        generated = model.generate(prefix, max_new_tokens=m, do_sample=False, pad_token_id=0)[0, k:].numpy()
        truth = sample[k:k + m]
        assert verdicts[i] == np.array_equal(generated, truth), f"sample {i}"
        same = generated == truth
        assert lengths[i] == (m if same.all() else int(np.argmin(same))), f"sample {i}"
    assert verdicts[:4].any() and not verdicts[4:].any()  # both kinds of verdict are exercised


def _ckpt(name, step, metrics):
    return CheckpointResult(name=name, step=step, location="-",
                            results={"memorization": {d: dict(v) for d, v in metrics.items()}})


def test_series_T_and_memorization_before_overfitting():
    ckpts = [
        _ckpt("s10", 10, {"train": {"M": 0.2, "loss": 3.0}, "valid": {"M": 0.1, "loss": 4.0}}),
        _ckpt("s20", 20, {"train": {"M": 0.6, "loss": 2.0}, "valid": {"M": 0.2, "loss": 3.5}}),
        _ckpt("s30", 30, {"train": {"M": 0.95, "loss": 1.0}, "valid": {"M": 0.2, "loss": 3.8}}),
    ]
    series = SeriesResult(name="s", source="local:-", tokenizer="t", steps_per_epoch=10, checkpoints=ckpts)
    out = PROBES["memorization_series"].fn(ckpts, [_info(), _info("valid", "valid")], series, None,
                                           taus=[0.5, 0.9, 0.99])
    train = out["train"]
    assert train["M"] == [0.2, 0.6, 0.95]
    assert train["T_step@0.5"] == 20 and train["T_epoch@0.5"] == 2.0 and train["T_checkpoint@0.5"] == "s20"
    assert train["T_step@0.9"] == 30
    assert train["T_step@0.99"] is None
    assert train["M_before_overfit"] == 0.6 and train["best_valid_step"] == 20  # lowest valid loss at s20
    assert "M_before_overfit" not in out["valid"]


def test_M_update_from_the_data_s_seen_at_step():
    hits = np.array([[1, 1], [0, 0], [1, 0]], dtype=bool)
    out = _memorization(hits, np.zeros((3, 2), np.float32), ["a", "b", "c"], np.array([5, 6, 5]),
                        SimpleNamespace(step=5, objective="causal"), k=1, m=1)
    assert out["M_update"] == pytest.approx(3 / 4)  # samples a and c were seen at step 5
