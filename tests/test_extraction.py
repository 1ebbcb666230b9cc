"""probes/extraction.py and memaudit/engine/sampling.py: (n, p)-discoverable extraction from one pass."""

import math

import numpy as np
import pytest
import torch
from conftest import random_tokens, tiny_model
from memaudit.measures import extractable_samples, log_pz
from memaudit.probes.extraction import extractable, queries_needed

from memaudit.engine.forward import score
from memaudit.engine.sampling import SamplingScheme, product_name, warpers

SCHEMES = [SamplingScheme(), SamplingScheme(top_k=40), SamplingScheme(temperature=0.8, top_p=0.9),
           SamplingScheme(temperature=1.3, top_k=20, top_p=0.7)]


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_scheme_logprobs_equal_transformers_warpers_on_full_logits(arch):
    model = tiny_model(arch, vocab_size=300, seed=2)
    tokens = random_tokens(300, n=4)
    products, _ = score(model, tokens, {product_name(s) for s in SCHEMES}, batch_size=3, device="cpu")
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens)).logits[:, :-1].float()  # (samples, seq - 1, vocab)
    targets = torch.from_numpy(tokens[:, 1:])
    for scheme in SCHEMES:
        expected = torch.stack([warpers(scheme)(None, row).log_softmax(-1).gather(-1, t[:, None])[:, 0]
                                for row, t in zip(logits, targets)]).numpy()  # (samples, seq - 1)
        got = products[product_name(scheme)]
        assert np.array_equal(np.isinf(got), np.isinf(expected))  # excluded tokens agree exactly
        finite = np.isfinite(expected)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5, atol=1e-5)
        pz, pz_expected = log_pz(got, 4, 8), log_pz(expected, 4, 8)
        np.testing.assert_allclose(np.exp(pz), np.exp(pz_expected), rtol=1e-5, atol=0)


def test_top_k_1_gives_the_greedy_verdict():
    model = tiny_model("gpt_neox", vocab_size=300, seed=3)
    random = random_tokens(300, n=3, seq_len=12)
    with torch.no_grad():  # samples greedy decoding reproduces by construction, beside random ones
        greedy = model.generate(torch.from_numpy(random[:, :4]), do_sample=False, max_new_tokens=8, min_new_tokens=8,
                                pad_token_id=0, attention_mask=torch.ones(3, 4, dtype=torch.long)).numpy()
    tokens = np.concatenate([random, greedy])  # (6, 12)
    name = product_name({"top_k": 1})
    products, _ = score(model, tokens, {name}, batch_size=6, device="cpu")
    verdict, _ = extractable_samples(products["hits"], 4, 8)
    pz = np.exp(log_pz(products[name], 4, 8))
    assert set(pz.tolist()) <= {0.0, 1.0} and np.array_equal(pz == 1.0, verdict)
    assert verdict.tolist() == [False] * 3 + [True] * 3


def test_n_p_extractability_and_queries():
    with np.errstate(divide="ignore"):
        logp = np.log(np.array([1.0, 0.5, 0.01, 0.0]))
    assert extractable(logp, 1, 0.5).tolist() == [True, True, False, False]
    assert extractable(logp, 100, 0.5).tolist() == [True, True, True, False]  # 1 - 0.99^100 = 0.63
    assert extractable(logp, 10**9, 1.0).tolist() == [True, False, False, False]
    q = queries_needed(logp, 0.5)
    assert q[0] == 1 and q[1] == 1 and q[2] == math.ceil(math.log(0.5) / math.log(0.99)) and np.isinf(q[3])


@pytest.fixture(scope="module")
def memorizing_model():
    """A tiny GPT-NeoX trained to memorize 4 sequences of 12 tokens over a 64-token vocabulary."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=32))
    data = torch.from_numpy(random_tokens(64, n=4, seq_len=12, seed=7))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(35):  # partly memorized: per-sample success probabilities spread between 0 and 1
        loss = model(input_ids=data, labels=data).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), data.numpy()


@pytest.mark.parametrize("scheme", [SamplingScheme(), SamplingScheme(top_k=3), SamplingScheme(temperature=0.9, top_p=0.95)])
def test_sampling_with_generate_succeeds_as_often_as_p_z_says(memorizing_model, scheme):
    """Monte Carlo: sample 2000 continuations of each prefix with generate(do_sample=True); the share that
    reproduces the suffix lies within a 5-sigma binomial interval of p_z for every sample with p_z > 1e-2."""
    model, data = memorizing_model
    k, m, draws = 4, 6, 2000
    name = product_name(scheme)
    products, _ = score(model, data, {name}, batch_size=4, device="cpu")
    pz = np.exp(log_pz(products[name], k, m))
    checked = 0
    for i, sample in enumerate(data):
        if pz[i] <= 1e-2:
            continue
        torch.manual_seed(i)
        prefix = torch.from_numpy(sample[:k])[None].repeat(draws, 1)
        out = model.generate(prefix, do_sample=True, max_new_tokens=m, min_new_tokens=m, temperature=scheme.temperature,
                             top_k=scheme.top_k or 0, top_p=scheme.top_p or 1.0, pad_token_id=0,
                             attention_mask=torch.ones_like(prefix))
        rate = (out[:, k:k + m].numpy() == sample[k:k + m]).all(axis=1).mean()
        sigma = math.sqrt(pz[i] * (1 - pz[i]) / draws)
        assert abs(rate - pz[i]) <= 5 * sigma + 1e-3, (i, rate, pz[i])
        checked += 1
    assert checked >= 1, pz


def test_top_k_ties_at_the_boundary_are_kept_as_transformers_does():
    from memaudit.engine.sampling import scheme_logprobs

    logits = torch.tensor([[5.0, 4.0, 3.0, 3.0, 3.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])  # row 0: k-th score tied
    targets = torch.tensor([4, 3])
    for scheme in (SamplingScheme(top_k=3), SamplingScheme(top_k=3, temperature=0.5), SamplingScheme(top_k=1)):
        got = scheme_logprobs(logits, targets, [product_name(scheme)])[product_name(scheme)]
        expected = warpers(scheme)(None, logits).log_softmax(-1).gather(-1, targets[:, None])[:, 0]
        assert torch.equal(torch.isinf(got), torch.isinf(expected))
        finite = torch.isfinite(expected)
        torch.testing.assert_close(got[finite], expected[finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scheme", [{"temperature": 1e-40}, {"temperature": 1e-40, "top_k": 5},
                                    {"temperature": 1e-40, "top_p": 0.9}])
def test_a_tiny_temperature_is_greedy_sampling_not_an_overflow(scheme):
    """logits / T overflows float32 for T = 1e-40: the schemes' log-probabilities are those of the limit
    (0 for the argmax token, -inf or astronomically low for the others), never NaN."""
    import torch

    from memaudit.engine.sampling import product_name, scheme_logprobs

    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 10  # (rows, vocab)
    targets = torch.cat([logits[:32].argmax(-1), torch.randint(0, 50, (32,), generator=torch.Generator())])
    name = product_name(scheme)
    got = scheme_logprobs(logits, targets, [name])[name]  # (rows,)
    greedy = targets == logits.argmax(-1)
    assert not got.isnan().any()
    assert torch.all(got[greedy] == 0) and torch.all(got[~greedy] < -1e6)
