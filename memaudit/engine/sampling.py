"""Sampling schemes and the probability that sampling reproduces a training sample.

A scheme is what `generate(do_sample=True, temperature=T, top_k=K, top_p=P)` applies to the next-token
logits, in transformers' order (temperature, then top-k, then top-p, with min_tokens_to_keep=1). The
forward pass reduces each chunk of logits to the log-probability of the true token under each scheme
(-inf where the scheme excludes it), using transformers' own warpers, so "what generate with these
settings would do" holds by construction. A scheme names every warper it applies: generate's default
top_k=50 is not implied (pass top_k=0 to generate for pure sampling). Hayes et al. 2024 turn these
per-token log-probabilities into (n, p)-discoverable extraction: see probes/extraction.py.

Only pydantic at import time; torch and transformers load when a pass runs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PREFIX = "sampling_logprobs:"


class SamplingScheme(BaseModel):
    """One sampling configuration, as generate(do_sample=True, ...) would apply it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(1.0, gt=0, allow_inf_nan=False)
    """Logits divided by this before the other warpers."""
    top_k: int | None = Field(None, ge=1)
    """Keep the k most likely tokens (ties with the k-th kept, as TopKLogitsWarper does)."""
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    """Keep the smallest set of most likely tokens whose probability reaches top_p (TopPLogitsWarper)."""

    @property
    def label(self) -> str:
        """A short, canonical name that keeps every digit: `T=1.0`, `T=1.0,top_k=40`, `T=0.8,top_p=0.9`."""
        parts = [f"T={float(self.temperature)!r}"]
        parts += [f"top_k={self.top_k}"] if self.top_k is not None else []
        parts += [f"top_p={float(self.top_p)!r}"] if self.top_p is not None and self.top_p < 1 else []
        return ",".join(parts)


def product_name(scheme) -> str:
    """The forward product holding the log-probabilities under `scheme` (a SamplingScheme or its dict)."""
    return PREFIX + SamplingScheme.model_validate(scheme).label


def scheme_of(name: str) -> SamplingScheme:
    """The scheme a product name (`sampling_logprobs:T=1.0,top_k=40`) stands for."""
    values = dict(part.split("=", 1) for part in name.removeprefix(PREFIX).split(","))
    return SamplingScheme(temperature=float(values["T"]), top_k=int(values["top_k"]) if "top_k" in values else None,
                          top_p=float(values["top_p"]) if "top_p" in values else None)


def warpers(scheme: SamplingScheme):
    """transformers' own logits warpers for the scheme, in generate's order."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out = LogitsProcessorList()
    if scheme.temperature != 1.0:
        out.append(TemperatureLogitsWarper(scheme.temperature))
    if scheme.top_k is not None:
        out.append(TopKLogitsWarper(top_k=scheme.top_k, min_tokens_to_keep=1))
    if scheme.top_p is not None and scheme.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=scheme.top_p, min_tokens_to_keep=1))
    return out


def scheme_logprobs(logits, targets, names, logprobs=None) -> dict:
    """For each product name, log P_scheme(target) of every row: logits (rows, vocab) float32, targets (rows,);
    returns {name: (rows,)} tensors, -inf where the scheme excludes the target. `logprobs`, the plain
    log-probabilities of the targets (rows,) when already computed, is the answer for plain sampling (T=1).

    Temperature and top-k take a short path that computes what the warpers do (the scores divided by T,
    then every score below the k-th largest removed, ties kept) without building the warped logits: the
    normaliser comes from the k largest scores, or, where the k-th ties with the next, from every score
    at least the k-th. Top-p runs transformers' TopPLogitsWarper itself (its sort and min_tokens_to_keep)."""
    import torch

    out = {}
    shifted = None  # the logits less each row's largest: the warpers' result is the same, and no temperature,
    for name in names:  # however small, makes them overflow (logits / T = inf would give NaN, read as "never")
        scheme = scheme_of(name)
        if scheme.temperature != 1.0 or (scheme.top_p is not None and scheme.top_p < 1):
            shifted = logits - logits.amax(dim=-1, keepdim=True) if shifted is None else shifted  # (rows, vocab)
        if scheme.top_p is not None and scheme.top_p < 1:
            warped = warpers(scheme)(None, shifted)  # (rows, vocab), excluded tokens at -inf
            out[name] = warped.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            continue
        top_k = scheme.top_k if scheme.top_k is not None and scheme.top_k < logits.shape[-1] else None
        if top_k is None and scheme.temperature == 1.0 and logprobs is not None:
            out[name] = logprobs
            continue
        z = shifted / scheme.temperature if scheme.temperature != 1.0 else logits  # TemperatureLogitsWarper
        target = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (rows,)
        if top_k is None:
            out[name] = target - torch.logsumexp(z, dim=-1)
            continue
        top = torch.topk(z, min(top_k + 1, z.shape[-1]), dim=-1).values  # (rows, k + 1), largest first
        kth = top[:, top_k - 1]  # (rows,): TopKLogitsWarper removes every score below it
        kept = torch.logsumexp(top[:, :top_k], dim=-1)  # (rows,)
        tied = (top[:, top_k] == kth).nonzero().squeeze(-1) if top.shape[1] > top_k else kth[:0].long()
        if len(tied):  # the k-th score ties with the next: every tied score is kept
            rows = z[tied]
            kept[tied] = torch.logsumexp(rows.masked_fill(rows < kth[tied, None], float("-inf")), dim=-1)
        out[name] = torch.where(target < kth, float("-inf"), target - kept)
    return out
