"""The one batched, teacher-forced forward pass: the only place a model runs.

Logits never leave the device: each batch is reduced there to the forward products of
memaudit.engine.catalog (target log-probability and argmax hit, and, when a probe asks, the target's rank,
the entropy and the second moment E_p[(log p)^2] of the next-token distribution).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from memaudit.engine.catalog import ALWAYS, PRODUCTS
from memaudit.errors import ConfigError


class NonFiniteLogits(RuntimeError):
    """The model produced NaN or infinite logits: the checkpoint is broken (reported, not fatal)."""



CPU_CHUNK_ELEMENTS = 1 << 20  # logits reduced in row chunks of ~4 MB on the CPU: each chunk stays in cache


def reduce_logits(logits: torch.Tensor, targets: torch.Tensor, products: set[str],
                  chunk_elements: int | None = None) -> dict[str, torch.Tensor]:
    """Per-token products from next-token logits, computed where the logits are.

    logits: (batch, seq, vocab) predicting `targets`: (batch, seq). Returns (batch, seq) tensors.
    The rows are reduced in chunks of about `chunk_elements` logits (default: the whole tensor on a
    GPU, ~4 MB on the CPU, where cache-sized chunks run several times faster than one big reduction).
    """
    batch, seq, vocab = logits.shape
    flat, flat_targets = logits.reshape(batch * seq, vocab), targets.reshape(batch * seq)  # (rows, vocab), (rows,)
    if chunk_elements is None:
        chunk_elements = CPU_CHUNK_ELEMENTS if logits.device.type == "cpu" else flat.numel()
    rows = max(1, chunk_elements // vocab)
    wanted = set(products) | set(ALWAYS)
    out = {name: torch.empty(batch * seq, dtype=getattr(torch, PRODUCTS[name].type), device=logits.device)
           for name in wanted}
    for start in range(0, batch * seq, rows):
        x = flat[start:start + rows].float()  # (rows, vocab); a no-op for float32 models
        t = flat_targets[start:start + rows]
        target_logit = x.gather(-1, t.unsqueeze(-1)).squeeze(-1)  # (rows,)
        lse = torch.logsumexp(x, dim=-1)  # (rows,)
        part = slice(start, start + rows)
        # torch.max returns the first maximal index, like argmax (and greedy decoding), and is faster
        out["hits"][part] = x.max(dim=-1).indices == t
        out["logprobs"][part] = target_logit - lse
        if "ranks" in wanted:
            out["ranks"][part] = (x > target_logit.unsqueeze(-1)).sum(dim=-1).to(torch.int32) + 1
        if "entropy" in wanted or "logp2" in wanted:
            logp = x - lse.unsqueeze(-1)  # (rows, vocab)
            p_logp = logp.exp() * logp  # (rows, vocab)
            if "entropy" in wanted:
                out["entropy"][part] = -p_logp.sum(dim=-1)
            if "logp2" in wanted:
                out["logp2"][part] = (p_logp * logp).sum(dim=-1)
    return {name: value.view(batch, seq) for name, value in out.items()}


def is_masked_lm(model) -> bool:
    """A BERT-style masked language model (scored with mask groups) rather than a causal one."""
    return type(model).__name__.endswith("ForMaskedLM")


def mask_groups(seq_len: int, fraction: float = 0.15, seed: int = 0) -> list[np.ndarray]:
    """Positions 1..seq_len-1 split into ceil(1 / fraction) disjoint groups, by a seeded permutation:
    every position is masked in exactly one group."""
    k = max(1, math.ceil(1 / fraction))
    perm = np.random.default_rng(seed).permutation(np.arange(1, seq_len))
    return [np.sort(g) for g in np.array_split(perm, k) if len(g)]


@torch.inference_mode()
def score(model, tokens: np.ndarray, products: set[str], batch_size: int, device: torch.device | str,
          mask_token_id: int | None = None, mask_fraction: float = 0.15,
          mask_seed: int = 0) -> tuple[dict[str, np.ndarray], int]:
    """Teacher-forced pass over `tokens` (samples, seq_len); returns products (samples, seq_len - 1)
    and the number of forward batches run.

    Causal LMs: position j's products are about token j + 1 predicted from tokens 0..j. Masked LMs:
    about token j + 1 predicted with its whole mask group replaced by the mask token (one pass per
    group), so the products have the same shape and meaning for every probe."""
    masked = is_masked_lm(model)
    if masked and mask_token_id is None:
        raise ConfigError("This checkpoint is a masked language model but its tokenizer has no mask token: "
                          "memaudit cannot score it. Give the tokenizer a [MASK] token.")
    groups = mask_groups(tokens.shape[1], mask_fraction, mask_seed) if masked else None
    products = set(products) | set(ALWAYS)
    n, seq_len = tokens.shape
    if batch_size < 1 or n == 0 or seq_len < 2:
        raise ValueError(f"score() needs batch_size >= 1 and samples of >= 2 tokens (got {batch_size}, {tokens.shape})")
    check_fits(model, tokens)
    out = {name: np.empty((n, seq_len - 1), dtype=PRODUCTS[name].type) for name in products}
    filled = np.zeros((n, seq_len - 1), dtype=np.int8)  # (samples, seq_len - 1): times each product was written
    batches = 0
    for start in range(0, n, batch_size):
        ids = torch.from_numpy(tokens[start:start + batch_size]).to(device)  # (batch, seq_len)
        rows = slice(start, start + len(ids))
        passes = _masked_passes(model, ids, groups, mask_token_id) if masked else _causal_pass(model, ids)
        for columns, logits, targets, keep in passes:
            reduced = reduce_logits(logits, targets, products)  # (batch, positions) each
            if not bool(torch.isfinite(reduced["logprobs"][:, keep]).all()):
                raise NonFiniteLogits(f"the model's logits are NaN or infinite (samples {start}..{rows.stop - 1}): "
                                      "the checkpoint's weights are broken")
            for name, value in reduced.items():
                out[name][rows][:, columns] = value[:, keep].cpu().numpy()  # small: (batch, positions)
            filled[rows][:, columns] += 1
            batches += 1
    if not (filled == 1).all():  # a result is never read from memory that was not written
        raise AssertionError(f"the forward pass wrote {int((filled == 0).sum())} product positions not at all and "
                             f"{int((filled > 1).sum())} more than once")
    return out, batches


def _causal_pass(model, ids):
    """One pass. Every position is reduced, the last one (which predicts nothing) against a dummy
    target so that the logits stay contiguous; `keep` then drops it."""
    logits = model(input_ids=ids, use_cache=False).logits  # (batch, seq_len, vocab)
    targets = torch.nn.functional.pad(ids[:, 1:], (0, 1))  # (batch, seq_len)
    yield slice(None), logits, targets, slice(0, -1)


def _masked_passes(model, ids, groups, mask_token_id):
    """One pass per mask group, the group's positions replaced by the mask token."""
    for group in groups:
        where = torch.from_numpy(group).to(ids.device)  # (group,) positions masked together
        masked = ids.clone()
        masked[:, where] = mask_token_id
        logits = model(input_ids=masked).logits[:, where]  # (batch, group, vocab)
        yield group - 1, logits, ids[:, where], slice(None)


def score_datasets(model, tokens: dict[str, np.ndarray], products: set[str], device, batch_size: int | None = None,
                   adaptive: bool = True, device_map: str | None = None, on_tokens=None,
                   **masking) -> tuple[dict[str, dict[str, np.ndarray]], int, int]:
    """Score several data sets in one pass over their union (samples of one length share batches).

    `tokens`: data set name -> (samples, seq_len). With `adaptive`, the batch size starts at `batch_size`
    (or one chosen from the memory) and is halved on out-of-memory. Returns the products per data set,
    the number of forward batches and the batch size used."""
    if device_map:  # inputs go where the embeddings are
        device = model.get_input_embeddings().weight.device
    by_len: dict[int, list[str]] = {}
    for name, t in tokens.items():
        by_len.setdefault(t.shape[1], []).append(name)
    out, batches = {}, 0
    for names in by_len.values():
        union = np.concatenate([tokens[n] for n in names])  # (samples, seq_len)
        if adaptive:
            start = batch_size or auto_batch_size(union, model.get_output_embeddings().weight.shape[0], device)
            scored, b, batch_size = score_adaptive(model, union, products, start, device, **masking)
        else:
            scored, b = score(model, union, products, batch_size, device, **masking)
        batches += b
        start = 0
        for n in names:
            rows = slice(start, start + len(tokens[n]))
            out[n] = {k: v[rows] for k, v in scored.items()}
            start = rows.stop
        if on_tokens:
            on_tokens(int(union.size))
    return out, batches, batch_size


def auto_batch_size(tokens: np.ndarray, vocab: int, device) -> int:
    """A first batch size whose logits fit comfortably: ~2 GiB of float32 logits (x3 for the reduction) on
    the CPU, a quarter of the free memory on a GPU; halved on out-of-memory by find_executable_batch_size."""
    budget = 2 * 2**30
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = free // 4
    per_sample = tokens.shape[1] * vocab * 4 * 3
    return int(max(1, min(256, budget // per_sample)))


def score_adaptive(model, tokens: np.ndarray, products: set[str], start_batch: int, device, **kwargs):
    """`score` with the largest batch size from `start_batch` down that does not run out of memory.
    Returns (products, batches, batch size used)."""
    from accelerate.utils import find_executable_batch_size

    @find_executable_batch_size(starting_batch_size=start_batch)
    def attempt(batch_size):
        return (*score(model, tokens, products, batch_size, device, **kwargs), batch_size)

    return attempt()


def check_fits(model, tokens: np.ndarray) -> None:
    """Refuse token ids the model has no embedding for, and samples longer than its context."""
    vocab = model.get_input_embeddings().num_embeddings
    if tokens.size and int(tokens.max()) >= vocab:
        raise ConfigError(f"The data has token id {int(tokens.max())} but the model's vocabulary has {vocab} "
                          "entries: the data was tokenized with another tokenizer. Re-create the data with "
                          "this series' tokenizer, or audit the series it belongs to.")
    context = getattr(model.config, "max_position_embeddings", None)
    if context and tokens.shape[1] > context:
        raise ConfigError(f"Samples of {tokens.shape[1]} tokens are longer than the model's context of "
                          f"{context}. Set the data set's 'seq_len' to at most {context}.")


def pick_device(device: str) -> torch.device:
    """`auto` -> the device accelerate picks (GPU when there is one); otherwise as given."""
    if device == "auto":
        from memaudit.engine.distributed import process_state

        return process_state(device).device
    try:
        chosen = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"Unknown device '{device}': {e}. Use auto, cpu, cuda, cuda:N or mps.") from None
    available = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                 "mps": int(torch.backends.mps.is_available()),
                 "xpu": torch.xpu.device_count() if hasattr(torch, "xpu") and torch.xpu.is_available() else 0}
    count = available.get(chosen.type, 0)
    if count == 0 or (chosen.index or 0) >= count:
        have = ", ".join(f"{kind} ({n})" for kind, n in available.items() if n) or "cpu"
        raise ConfigError(f"Device '{device}' is not available on this machine (devices here: {have}). Use "
                          "--device auto (the GPU when there is one) or one of those.")
    return chosen
