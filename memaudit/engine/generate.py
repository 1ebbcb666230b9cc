"""Batched continuations of prompts: greedy or sampled, with a key-value cache and left padding (the only place
memaudit decodes; the teacher-forced pass is memaudit.engine.forward).

The loop is transformers' `generate` reduced to what an extraction audit needs: one prefill of the left-padded
prompts (position ids counted from each row's first real token, padding masked), then one token per step read off
the cache, each row stopping at its own budget or at the end-of-text token. Greedy takes the argmax, as
`generate(do_sample=False)` does. Sampling applies the scheme's warpers (transformers' own, in generate's order:
memaudit.engine.sampling) and draws by inverting the warped distribution's cumulative sum (float64) at a uniform
number that is a hash of (the row's key, the step), the key a hash of (seed, sample id, prefix, scheme, draw): the
draw for a sample is the same whatever batch it runs in, on whatever process or shard, so that a run is reproducible
and resumable, and its distribution is the warped softmax. A checkpoint's own
generation_config (repetition penalty, banned words...) is not applied: memaudit measures the model, not a
decoding policy.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for int64 x in [0, 2^32), without overflowing int64 (c split into 16-bit halves)."""
    low = x * (c & 0xFFFF)  # < 2^48
    high = ((x * (c >> 16)) & 0xFFFF) << 16  # only the low 16 bits survive the shift mod 2^32
    return (low + high) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) of int64 values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(keys: torch.Tensor, step: int) -> torch.Tensor:
    """One uniform number in (0, 1) per row (rows,) float64, a pure function of the row's 32-bit key and the step."""
    bits = mix32((keys ^ mix32(torch.full_like(keys, step & MASK32))) & MASK32)  # (rows,)
    return (bits.to(torch.float64) + 0.5) / float(1 << 32)


def draw(logits: torch.Tensor, keys: torch.Tensor, step: int) -> torch.Tensor:
    """A token per row (rows,) drawn from softmax(logits) by inverting its cumulative distribution (float64) at the
    row's uniform: tokens at -inf (excluded by a warper) are never drawn."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(dim=-1)  # (rows, vocab)
    u = uniforms(keys, step) * cdf[:, -1]  # (rows,) in (0, total)
    return torch.searchsorted(cdf, u[:, None], right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)


def row_keys(sample_keys: np.ndarray, *salt: int) -> np.ndarray:
    """32-bit keys (rows,) int64 from the samples' keys and a salt (seed, prefix length, scheme, draw), mixed so
    that nearby salts give unrelated noise."""
    x = torch.from_numpy(np.asarray(sample_keys, dtype=np.int64) & MASK32)
    for s in salt:
        x = mix32(x ^ mix32(torch.full_like(x, int(s) & MASK32)))
    return x.numpy()


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.inference_mode()
def continue_batch(model, prompts: list[np.ndarray], budgets: np.ndarray, eos_id: int | None, pad_id: int,
                   scheme=None, keys: np.ndarray | None = None) -> np.ndarray:
    """Continuations of one batch of prompts (1-D token arrays of any lengths): (rows, max budget) int64, each row
    its generated tokens, the end-of-text token included when it stopped there, then -1. `budgets` (rows,): tokens
    each row may generate; `scheme` (memaudit.engine.sampling.SamplingScheme) samples with the rows' 32-bit `keys`,
    None decodes greedily."""
    from memaudit.engine.sampling import warpers

    device = model.get_input_embeddings().weight.device
    rows, width = len(prompts), max(len(p) for p in prompts)
    budgets = np.asarray(budgets, dtype=np.int64)
    out = np.full((rows, int(budgets.max(initial=0))), -1, dtype=np.int64)  # (rows, new)
    if out.shape[1] == 0:
        return out
    ids = np.full((rows, width), pad_id, dtype=np.int64)  # (rows, width), left-padded
    mask = np.zeros((rows, width), dtype=np.int64)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
    ids_t, mask_t = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
    position = (mask_t.cumsum(-1) - 1).clamp(min=0)  # (rows, width): each row counts from its first real token
    warp = warpers(scheme) if scheme is not None else None
    keys_t = torch.from_numpy(np.asarray(keys, dtype=np.int64)).to(device) if scheme is not None else None
    left = torch.from_numpy(budgets).to(device)  # (rows,) tokens each row may still make
    done = left <= 0
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}  # the prefill's last position only
    cache_arg = "cache" if _accepts(model, "cache") else "past_key_values"  # transformers 5.x renamed it
    positions = _accepts(model, "position_ids")  # else the model counts them itself (from the attention mask)
    result = model(input_ids=ids_t, attention_mask=mask_t, use_cache=True, **extra,
                   **({"position_ids": position} if positions else {}))
    cache, steps = getattr(result, cache_arg), []
    for step in range(out.shape[1]):
        logits = result.logits[:, -1, :].float()  # (rows, vocab)
        if scheme is None:
            token = logits.argmax(-1)  # (rows,)
        else:
            warped = warp(None, logits - logits.amax(-1, keepdim=True))  # (rows, vocab), excluded tokens at -inf
            token = draw(warped, keys_t, step)
        steps.append(torch.where(done, -1, token))
        left = left - 1
        done = done | (left <= 0) | ((token == eos_id) if eos_id is not None else False)
        if bool(done.all()):
            break
        mask_t = torch.cat([mask_t, torch.ones_like(mask_t[:, :1])], dim=1)  # (rows, width + step + 1)
        position = position[:, -1:] + 1
        result = model(input_ids=token[:, None], attention_mask=mask_t, use_cache=True, **{cache_arg: cache},
                       **({"position_ids": position} if positions else {}))
        cache = getattr(result, cache_arg)
    made = torch.stack(steps, dim=1).cpu().numpy()  # (rows, steps made)
    out[:, :made.shape[1]] = made
    return out


def continue_prompts(model, prompts, budgets: np.ndarray, eos_id: int | None, pad_id: int,
                     batch_size: int, scheme=None, keys: np.ndarray | None = None, on_batch=None) -> np.ndarray:
    """`continue_batch` over every prompt (a list of 1-D token arrays, or a 2-D array of prompts of one length),
    `batch_size` at a time, prompts of similar length together (less padding); rows in the order given.
    `on_batch(n)` hears of each batch of n prompts done."""
    n = len(prompts)
    width = int(np.max(budgets, initial=0))
    out = np.full((n, width), -1, dtype=np.int64)
    order = np.argsort([len(p) for p in prompts], kind="stable")
    for start in range(0, n, batch_size):
        pick = order[start:start + batch_size]
        made = continue_batch(model, [prompts[i] for i in pick], np.asarray(budgets)[pick], eos_id, pad_id, scheme,
                              None if keys is None else np.asarray(keys)[pick])
        out[pick, :made.shape[1]] = made
        if on_batch is not None:
            on_batch(len(pick))
    return out
