"""Log-likelihood and perplexity in the units the field reports them: per token, per UTF-8 byte and per word, as
lm-evaluation-harness's `loglikelihood_rolling` tasks (wikitext, Hubble's passages) aggregate them.

A record's log-likelihood is the sum over its tokens of log p(token | the tokens before it in its window), every
token scored once (rolling windows past `seq_len`, see memaudit.engine.forward.record_windows). Over a data set:
token perplexity exp(-sum ll / sum tokens), word perplexity exp(-sum ll / sum words), byte perplexity
exp(-sum ll / sum bytes) and bits per byte -sum ll / sum bytes / ln 2, as lm-eval's `weighted_perplexity` and
`bits_per_byte` aggregations compute them, with bytes and words counted on each record's text as lm-eval counts
them. Bytes and words exist for `samples: records` data; for fixed-length chunks only the per-token units do.
"""

from __future__ import annotations

import math

import numpy as np

from memaudit import Column, probe
from memaudit.measures import own_targets

METRICS = {
    "token_perplexity": "exp(-sum of log-likelihoods / scored tokens)",
    "word_perplexity": "exp(-sum of log-likelihoods / words), lm-eval's word_perplexity (samples: records)",
    "byte_perplexity": "exp(-sum of log-likelihoods / UTF-8 bytes), lm-eval's byte_perplexity (samples: records)",
    "bits_per_byte": "-sum of log-likelihoods / UTF-8 bytes / ln 2, lm-eval's bits_per_byte (samples: records)",
    "nll_per_token": "-sum of log-likelihoods / scored tokens (nats)",
    "loglikelihood_mean": "mean over samples of each sample's summed log-likelihood (nats)",
    "n_samples": "samples scored",
    "n_tokens": "tokens scored",
    "n_bytes": "UTF-8 bytes of the samples' text (samples: records)",
    "n_words": "words of the samples' text, lm-eval's count (samples: records)",
    "samples": "with per_sample: one column per field, one entry per sample (id, loglikelihood, n_tokens, n_bytes, "
               "n_words)",
}

COLUMNS = {
    "loglikelihood": Column("float64", "sum of the log-probabilities of the sample's scored tokens (lm-eval's "
                                       "loglikelihood_rolling of the record)", unit="nats", higher="more memorized"),
    "n_tokens": Column("int64", "tokens scored", unit="tokens"),
    "n_bytes": Column("int64", "UTF-8 bytes of the record's text (samples: records)", unit="bytes"),
    "n_words": Column("int64", "words of the record's text, lm-eval's count (samples: records)", unit="words"),
}


def likelihood_rows(logprobs, lengths, n_bytes, n_words):
    """Per sample: its summed log-likelihood (float64) and the tokens, bytes and words it is divided by. Rows of
    whole records (`lengths`) count only their own targets."""
    if lengths is None:  # fixed-length samples: every position is a target
        out = {"loglikelihood": logprobs.astype(np.float64).sum(axis=1),
               "n_tokens": np.full(len(logprobs), logprobs.shape[1], dtype=np.int64)}
    else:
        valid = own_targets(lengths, logprobs.shape[1])  # (samples, positions)
        out = {"loglikelihood": np.where(valid, logprobs, 0).astype(np.float64).sum(axis=1), "n_tokens": lengths - 1}
    if n_bytes is not None:
        out.update(n_bytes=np.asarray(n_bytes, dtype=np.int64), n_words=np.asarray(n_words, dtype=np.int64))
    return out


def _perplexity(nll: float) -> float:
    return math.exp(min(nll, 700.0))


@probe(metrics=METRICS, show=("token_perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"),
       rows=likelihood_rows, columns=COLUMNS, opt_in=True, not_numbers=("samples",))
def perplexity(rows, sample_ids, per_sample: bool = False):
    """Token, word and byte perplexity and bits per byte of each data set, as lm-eval aggregates a
    `loglikelihood_rolling` task's documents (opt-in: name it under `probes:`); `per_sample` also lists every
    sample's log-likelihood and units (`--samples-out` writes them to Parquet instead)."""
    ll = float(rows["loglikelihood"].sum())
    tokens = int(rows["n_tokens"].sum())
    out = {"token_perplexity": _perplexity(-ll / tokens), "nll_per_token": -ll / tokens,
           "loglikelihood_mean": float(rows["loglikelihood"].mean()), "n_samples": len(rows["loglikelihood"]),
           "n_tokens": tokens, "word_perplexity": None, "byte_perplexity": None, "bits_per_byte": None,
           "n_bytes": None, "n_words": None}
    if "n_bytes" in rows:
        n_bytes, n_words = int(rows["n_bytes"].sum()), int(rows["n_words"].sum())
        out.update(word_perplexity=_perplexity(-ll / n_words), byte_perplexity=_perplexity(-ll / n_bytes),
                   bits_per_byte=-ll / n_bytes / math.log(2), n_bytes=n_bytes, n_words=n_words)
    if per_sample:
        out["samples"] = {"id": list(sample_ids), **rows}
    return out
