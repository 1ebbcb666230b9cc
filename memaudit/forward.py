"""The one batched, teacher-forced forward pass: the only place a model runs.

Logits never leave the device: each batch is reduced there to per-token products
(target log-probability, argmax hit, and, when asked, target rank and entropy).
"""

from __future__ import annotations

import numpy as np
import torch

from memaudit.errors import ConfigError

PRODUCT_DTYPES = {"hits": np.bool_, "logprobs": np.float32, "ranks": np.int32, "entropy": np.float32}
ALWAYS = ("hits", "logprobs")


def reduce_logits(logits: torch.Tensor, targets: torch.Tensor, products: set[str]) -> dict[str, torch.Tensor]:
    """Per-token products from next-token logits.

    logits: (batch, seq, vocab) predicting `targets`: (batch, seq). Returns (batch, seq) tensors.
    """
    logits = logits.float()  # (batch, seq, vocab); a no-op for float32 models
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (batch, seq)
    lse = torch.logsumexp(logits, dim=-1)  # (batch, seq)
    out = {
        "hits": logits.argmax(dim=-1) == targets,  # (batch, seq); ties go to the lowest id, as in greedy decoding
        "logprobs": target_logit - lse,
    }
    if "ranks" in products:
        out["ranks"] = (logits > target_logit.unsqueeze(-1)).sum(dim=-1).to(torch.int32) + 1
    if "entropy" in products:
        logp = logits - lse.unsqueeze(-1)  # (batch, seq, vocab)
        out["entropy"] = -(logp.exp() * logp).sum(dim=-1)
    return out


@torch.inference_mode()
def score(model, tokens: np.ndarray, products: set[str], batch_size: int,
          device: torch.device | str) -> tuple[dict[str, np.ndarray], int]:
    """Teacher-forced pass over `tokens` (samples, seq_len); returns products (samples, seq_len - 1)
    and the number of forward batches run."""
    products = set(products) | set(ALWAYS)
    n, seq_len = tokens.shape
    check_fits(model, tokens)
    out = {name: np.empty((n, seq_len - 1), dtype=PRODUCT_DTYPES[name]) for name in products}
    batches = 0
    for start in range(0, n, batch_size):
        ids = torch.from_numpy(tokens[start:start + batch_size]).to(device)  # (batch, seq_len)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]  # (batch, seq_len - 1, vocab)
        reduced = reduce_logits(logits, ids[:, 1:], products)
        for name, value in reduced.items():
            out[name][start:start + len(ids)] = value.cpu().numpy()  # (batch, seq_len - 1): small
        batches += 1
    return out, batches


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
        from accelerate import PartialState

        return PartialState().device
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"Unknown device '{device}': {e}. Use auto, cpu, cuda, cuda:N or mps.") from None
