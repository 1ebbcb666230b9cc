"""memaudit/engine/forward.py: the batched pass equals a naive one, whatever the batch size."""

import os

import numpy as np
import pytest
import torch
from conftest import random_tokens as _tokens
from conftest import tiny_model

from memaudit.engine.forward import reduce_logits, score
from memaudit.errors import ConfigError


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_batched_products_equal_naive_per_sample(arch):
    model = tiny_model(arch, vocab_size=300, seed=3)
    tokens = _tokens(300)
    products, batches = score(model, tokens, {"ranks", "entropy"}, batch_size=3, device="cpu")
    assert batches == 3  # 7 samples in batches of 3
    with torch.no_grad():
        for i, sample in enumerate(tokens):
            logits = model(torch.from_numpy(sample[None])).logits[0, :-1]  # (seq - 1, vocab)
            targets = torch.from_numpy(sample[1:])
            logp = torch.log_softmax(logits, -1)
            assert np.array_equal(products["hits"][i], (logits.argmax(-1) == targets).numpy())
            np.testing.assert_allclose(products["logprobs"][i], logp[torch.arange(len(targets)), targets].numpy(),
                                       rtol=1e-5, atol=1e-5)
            m = float((logits.argmax(-1) == targets).float().mean())
            assert products["hits"][i].mean() == pytest.approx(m)


def test_batch_size_does_not_change_hits():
    model = tiny_model("gpt_neox", vocab_size=300, seed=1)
    tokens = _tokens(300, n=10)
    runs = [score(model, tokens, set(), batch_size=b, device="cpu")[0] for b in (1, 4, 10)]
    for r in runs[1:]:
        assert np.array_equal(r["hits"], runs[0]["hits"])
        np.testing.assert_allclose(r["logprobs"], runs[0]["logprobs"], atol=1e-5)


def test_reduce_logits_rank_and_entropy():
    logits = torch.tensor([[[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]]])  # (batch 1, seq 2, vocab 3)
    targets = torch.tensor([[2, 2]])
    out = reduce_logits(logits, targets, {"ranks", "entropy"})
    assert out["hits"].tolist() == [[False, True]]
    assert out["ranks"].tolist() == [[2, 1]]
    p = torch.softmax(logits, -1)
    np.testing.assert_allclose(out["entropy"].numpy(), (-(p * p.log()).sum(-1)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["logprobs"].numpy(), torch.log_softmax(logits, -1)[0, [0, 1], [2, 2]][None].numpy(),
                               atol=1e-6)


def test_only_requested_products_are_computed():
    model = tiny_model("gpt2", vocab_size=100, seed=0)
    products, _ = score(model, _tokens(100, n=2), set(), batch_size=2, device="cpu")
    assert set(products) == {"hits", "logprobs"}


def test_token_ids_beyond_the_vocabulary_are_refused():
    model = tiny_model("gpt_neox", vocab_size=50, seed=0)
    with pytest.raises(ConfigError, match="another tokenizer"):
        score(model, _tokens(100), set(), batch_size=2, device="cpu")


def test_samples_longer_than_the_context_are_refused():
    model = tiny_model("gpt2", vocab_size=50, seed=0, context=16)
    with pytest.raises(ConfigError, match="context of 16"):
        score(model, _tokens(50, seq_len=32), set(), batch_size=2, device="cpu")


def test_a_position_the_pass_did_not_write_is_never_returned(monkeypatch):
    """The scorer checks that it wrote every product position exactly once (here: a mask group is lost)."""
    from transformers import BertConfig, BertForMaskedLM

    import memaudit.engine.forward as forward

    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=32)).eval()
    real = forward.mask_groups
    monkeypatch.setattr(forward, "mask_groups", lambda *a, **k: real(*a, **k)[1:])
    with pytest.raises(AssertionError, match="not at all"):
        score(model, _tokens(50, n=2, seq_len=12), set(), batch_size=2, device="cpu", mask_token_id=3)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        score(model, _tokens(50, n=2, seq_len=12), set(), batch_size=0, device="cpu", mask_token_id=3)


def _arch(name: str, vocab: int = 300):
    """Tiny random causal LMs of four families (GPT-NeoX and GPT-2 from the fixtures, Llama-style, OPT)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig

    if name in ("gpt_neox", "gpt2"):
        return tiny_model(name, vocab_size=vocab, seed=4)
    torch.manual_seed(4)
    config = (LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128)
              if name == "llama" else
              OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                        max_position_embeddings=128, word_embed_proj_dim=16))  # OPT-350m-style projection
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2", "llama", "opt"])
def test_the_fused_head_gives_the_products_of_the_full_logits(arch):
    from memaudit.engine.forward import fused_head

    model = _arch(arch)
    tokens = _tokens(300, n=5, seq_len=20)
    wanted = {"ranks", "entropy", "logp2"}
    fused, _ = score(model, tokens, wanted, batch_size=2, device="cpu", fused=True)
    assert fused_head(model, torch.from_numpy(tokens))[2] == "fused"
    plain, _ = score(model, tokens, wanted, batch_size=2, device="cpu", fused=False)
    assert np.array_equal(fused["hits"], plain["hits"]) and np.array_equal(fused["ranks"], plain["ranks"])
    for name in ("logprobs", "entropy", "logp2"):
        np.testing.assert_allclose(fused[name], plain[name], rtol=1e-5, atol=1e-5)


def test_the_fused_head_is_checked_once_per_model_and_again_when_its_head_changes():
    """score() used to run the check's two extra forward passes at every call (per batch in the GPU benchmark)."""
    from memaudit.engine.forward import fused_head

    model = _arch("gpt_neox")
    tokens = _tokens(300, n=4, seq_len=12)
    checks = []
    model.gpt_neox.register_forward_hook(lambda *_: checks.append(1))
    for _ in range(3):
        score(model, tokens, set(), batch_size=4, device="cpu")
    assert len(checks) == 2 + 3  # the check's body pass once (and its full pass), then one pass per score() call
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(-1)  # an edited head: logits change, so the check runs again
    checks.clear()
    assert fused_head(model, torch.from_numpy(tokens))[2] == "fused" and len(checks) == 2
    model.set_output_embeddings(torch.nn.Linear(32, 300, bias=True))  # a swapped head, with a bias
    checks.clear()
    assert fused_head(model, torch.from_numpy(tokens))[2] == "fused" and len(checks) == 2


def test_a_masked_lm_keeps_the_unfused_path():
    from transformers import BertConfig, BertForMaskedLM

    from memaudit.engine.forward import fused_head

    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=32)).eval()
    assert fused_head(model, torch.from_numpy(_tokens(50, n=1, seq_len=8)))[2].startswith("unfused")


def test_bf16_and_fp32_hits_agree_but_for_near_ties():
    """bf16 weights and activations, float32 reduction: the argmax differs only where the top two logits of the
    float32 model are nearly tied (within bf16's resolution of the logits)."""
    model = tiny_model("gpt_neox", vocab_size=300, seed=5)
    tokens = _tokens(300, n=8, seq_len=48)
    fp32, _ = score(model, tokens, {"ranks"}, batch_size=4, device="cpu")
    bf16, _ = score(model.to(torch.bfloat16), tokens, {"ranks"}, batch_size=4, device="cpu")
    differ = fp32["hits"] != bf16["hits"]
    assert differ.mean() < 0.05  # documented share (README): a few percent of positions on a random tiny model
    with torch.no_grad():
        logits = tiny_model("gpt_neox", vocab_size=300, seed=5)(torch.from_numpy(tokens)).logits[:, :-1].float()
    top2 = logits.topk(2, dim=-1).values  # (samples, seq - 1, 2)
    gap = (top2[..., 0] - top2[..., 1]).numpy()
    assert (gap[differ] < 0.1).all()  # every disagreement is a near-tie


def test_the_batch_size_halves_on_out_of_memory_and_memory_is_cleared_only_then(monkeypatch):
    import gc

    from memaudit.engine.forward import score_adaptive

    model = _arch("gpt_neox")
    tokens = _tokens(300, n=8, seq_len=12)
    collected = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(1) or real_collect(*a))
    wanted, batches, used = score_adaptive(model, tokens, set(), 8, "cpu")
    assert used == 8 and batches == 1 and collected == []  # no out-of-memory: nothing collected
    body = model.gpt_neox
    real_forward = body.forward

    def small_batches_only(input_ids=None, **kwargs):
        if input_ids.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(body, "forward", small_batches_only)
    model.lm_head.weight.data = model.lm_head.weight.data.clone()  # the head reads as new: checked again
    got, batches, used = score_adaptive(model, tokens, set(), 8, "cpu")
    assert used == 2 and batches == 4 and len(collected) == 2  # 8 -> 4 -> 2, memory released after each failure
    for name in ("hits", "logprobs"):
        np.testing.assert_allclose(got[name], wanted[name], rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(body, "forward", lambda *a, **kw: (_ for _ in ()).throw(ValueError("not memory")))
    model.lm_head.weight.data = model.lm_head.weight.data.clone()
    with pytest.raises(ValueError, match="not memory"):
        score_adaptive(model, tokens, set(), 8, "cpu")


def test_compiled_kernels_are_kept_under_the_cache_folder_unless_the_user_chose_one(monkeypatch, tmp_path):
    import memaudit.engine.forward as forward

    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    forward.keep_compiled_kernels(tmp_path, "cpu")  # nothing is compiled on a CPU
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    monkeypatch.setattr(forward, "compiles", lambda device: True)
    monkeypatch.setenv("TRITON_CACHE_DIR", "/theirs")
    forward.keep_compiled_kernels(tmp_path, "cuda")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compiled" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == "/theirs"
