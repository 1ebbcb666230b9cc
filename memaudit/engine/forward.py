"""The one batched, teacher-forced forward pass: where a model runs, but for the generation probe's decoding
(memaudit.engine.generate).

Logits never leave the device: each batch is reduced there to the forward products of
memaudit.engine.catalog (target log-probability and argmax hit, and, when a probe asks, the target's rank,
the entropy and the second moment E_p[(log p)^2] of the next-token distribution).
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import Any

import numpy as np
import torch

from memaudit.engine.catalog import ALWAYS, product_type
from memaudit.engine.identity import compiles
from memaudit.engine.sampling import PREFIX as SAMPLING
from memaudit.engine.sampling import scheme_logprobs
from memaudit.errors import ConfigError


class NonFiniteLogits(RuntimeError):
    """The model produced NaN or infinite logits: the checkpoint is broken (reported, not fatal)."""


CPU_CHUNK_ELEMENTS = 1 << 20  # logits reduced in row chunks of ~4 MB on the CPU: each chunk stays in cache
GPU_CHUNK_ELEMENTS = 1 << 27  # on a GPU: ~0.5 GB of float32 logits at a time
CPU_BLOCK_ELEMENTS = 1 << 25  # fused head on the CPU: ~128 MB of logits per matrix product (few reads of the weights)


def reduce_logits(logits: torch.Tensor, targets: torch.Tensor, products: set[str],
                  chunk_elements: int | None = None) -> dict[str, torch.Tensor]:
    """Per-token products from next-token logits, computed where the logits are.

    logits: (batch, seq, vocab) predicting `targets`: (batch, seq). Returns (batch, seq) tensors.
    The rows are reduced in chunks of about `chunk_elements` logits (default: ~4 MB on the CPU, where
    cache-sized chunks run several times faster than one big reduction; ~0.5 GB on a GPU, so that no
    float32 copy of all the logits is made).
    """
    batch, seq, vocab = logits.shape
    flat = logits.reshape(batch * seq, vocab)  # (rows, vocab)
    if chunk_elements is None:
        chunk_elements = CPU_CHUNK_ELEMENTS if logits.device.type == "cpu" else GPU_CHUNK_ELEMENTS
    return _reduce_rows(lambda part: flat[part], (batch, seq, vocab), targets, products, chunk_elements)


def reduce_hidden(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, products: set[str],
                  block_elements: int | None = None) -> dict[str, torch.Tensor]:
    """The products of `reduce_logits(head(hidden), ...)` without ever holding all the logits: the output
    embedding is applied to one block of rows at a time, each block reduced at once and dropped (as Cut
    Cross-Entropy and Liger's fused linear cross-entropy do for the loss).

    hidden: (batch, seq, width), the body's last hidden state; head: the output embedding (width -> vocab).
    A block holds about `block_elements` logits (default ~128 MB on the CPU, ~0.5 GB on a GPU)."""
    batch, seq, width = hidden.shape
    flat, flat_targets = hidden.reshape(1, batch * seq, width), targets.reshape(1, batch * seq)
    if block_elements is None:
        block_elements = CPU_BLOCK_ELEMENTS if hidden.device.type == "cpu" else GPU_CHUNK_ELEMENTS
    rows = max(1, block_elements // head.out_features)
    blocks = [reduce_logits(head(flat[:, start:start + rows]), flat_targets[:, start:start + rows], products)
              for start in range(0, batch * seq, rows)]  # each (1, rows) per product
    return {name: torch.cat([b[name] for b in blocks], dim=1).view(batch, seq) for name in blocks[0]}


def _reduce_rows(logits_of, shape: tuple[int, int, int], targets: torch.Tensor, products: set[str],
                 chunk_elements: int) -> dict[str, torch.Tensor]:
    """The reduction itself: `logits_of(rows)` gives the (rows, vocab) logits of a slice of the flattened
    (batch * seq) positions; every product is computed in float32 whatever the model's dtype."""
    batch, seq, vocab = shape
    flat_targets = targets.reshape(batch * seq)  # (rows,)
    rows = max(1, chunk_elements // vocab)
    wanted = set(products) | set(ALWAYS)
    out = {name: torch.empty(batch * seq, dtype=getattr(torch, product_type(name)), device=targets.device)
           for name in wanted}
    schemes = sorted(name for name in wanted if name.startswith(SAMPLING))
    reduce_chunk = _chunk_reducer(targets.device, frozenset(wanted) - set(schemes))
    for start in range(0, batch * seq, rows):
        part = slice(start, start + rows)
        logits, t = logits_of(part), flat_targets[part]  # (rows, vocab), (rows,)
        if schemes:  # one float32 copy for both reductions; per scheme with transformers' warpers (eager)
            logits = logits.float()
            values = reduce_chunk(logits, t)
            values.update(scheme_logprobs(logits, t, schemes, values["logprobs"]))
        else:  # the cast stays inside the (compiled) reduction, fused with its reads
            values = reduce_chunk(logits, t)
        for name, value in values.items():
            out[name][part] = value
    return {name: value.view(batch, seq) for name, value in out.items()}


def _reduce_chunk(logits: torch.Tensor, t: torch.Tensor, wanted: frozenset) -> dict[str, torch.Tensor]:
    """Products of one chunk: logits (rows, vocab) in the model's dtype, targets t (rows,)."""
    x = logits.float()  # (rows, vocab); a no-op for float32 models
    target_logit = x.gather(-1, t.unsqueeze(-1)).squeeze(-1)  # (rows,)
    lse = torch.logsumexp(x, dim=-1)  # (rows,)
    # torch.max returns the first maximal index, like argmax (and greedy decoding), and is faster
    out = {"hits": x.max(dim=-1).indices == t, "logprobs": target_logit - lse}
    if "ranks" in wanted:
        out["ranks"] = (x > target_logit.unsqueeze(-1)).sum(dim=-1).to(torch.int32) + 1
    if "entropy" in wanted or "logp2" in wanted:
        logp = x - lse.unsqueeze(-1)  # (rows, vocab)
        p_logp = logp.exp() * logp  # (rows, vocab)
        if "entropy" in wanted:
            out["entropy"] = -p_logp.sum(dim=-1)
        if "logp2" in wanted:
            out["logp2"] = (p_logp * logp).sum(dim=-1)
    return out


def _chunk_reducer(device: torch.device, wanted: frozenset):
    """`_reduce_chunk` for these products; on a GPU compiled by torch.compile into a few fused kernels (the
    eager ops read the chunk's logits five times or more)."""
    return _compiled_reducer(wanted) if compiles(device) else functools.partial(_reduce_chunk, wanted=wanted)


@functools.lru_cache(maxsize=None)
def _compiled_reducer(wanted: frozenset):
    compiled, works = torch.compile(_reduce_chunk, dynamic=True), [True]

    def reducer(x, t):
        if works[0]:
            try:
                return compiled(x, t, wanted)
            except Exception:  # no compiler toolchain, an unsupported op: the eager ops give the same products
                works[0] = False
        return _reduce_chunk(x, t, wanted)
    return reducer


_FUSED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (its head's state, fused_head's answer)


def _head_state(model) -> tuple:
    """What the fused-head check depends on besides the weights' values: the model's class and forward, the body and
    head modules, and the head's weight storage, in-place write count and shape (a swapped, resized, reloaded or
    edited head reads as another)."""
    head, body = model.get_output_embeddings(), getattr(model, "base_model", None)
    tensors = [getattr(head, name, None) for name in ("weight", "bias")]
    return (type(model), getattr(model.forward, "__func__", model.forward), id(body), id(head),
            *((t.data_ptr(), t._version, tuple(t.shape)) if isinstance(t, torch.Tensor) else None for t in tensors))


@torch.inference_mode()
def fused_head(model, ids: torch.Tensor) -> tuple[Any, Any, str]:
    """(body, head, how) when the model's logits are `head(body(ids).last_hidden_state)`, checked on one
    sample of `ids` against the model's own logits; else (None, None, why not). The answer is kept for this model
    object while its head is the same (`_head_state`): one check per model, not two extra forward passes per
    `score` call; a user's model whose head is swapped, resized or written to between two audits is checked
    again. Masked LMs (a transform before the decoder) and heads that scale or cap their logits fail the check
    and keep the unfused path."""
    state = _head_state(model)
    known = _FUSED.get(model)
    if known is not None and known[0] == state:
        return known[1]
    found = _check_fused_head(model, ids)
    _FUSED[model] = (state, found)
    return found


def _check_fused_head(model, ids: torch.Tensor) -> tuple[Any, Any, str]:
    """The check itself: two short forward passes of one sample."""
    body, head = getattr(model, "base_model", None), model.get_output_embeddings()
    if body is None or body is model or not isinstance(head, torch.nn.Linear):
        found = (None, None, f"unfused: no separate output embedding found on {type(model).__name__}")
    else:
        sample = ids[:1, : min(ids.shape[1], 64)]  # (1, positions)
        full = model(input_ids=sample, use_cache=False).logits.float()  # (1, positions, vocab)
        fused = head(body(input_ids=sample, use_cache=False).last_hidden_state).float()
        same = full.shape == fused.shape and torch.allclose(full, fused, rtol=1e-3, atol=1e-3)
        found = (body, head, "fused") if same else \
            (None, None, f"unfused: {type(model).__name__}'s logits are not its output embedding of the last hidden state")
    return found


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
          mask_token_id: int | None = None, mask_fraction: float = 0.15, mask_seed: int = 0,
          fused: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """Teacher-forced pass over `tokens` (samples, seq_len); returns products (samples, seq_len - 1)
    and the number of forward batches run. `fused` (the default) never materialises the full
    (batch, seq, vocab) logits where the model's head allows it (see fused_head); the products are
    the same either way.

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
    out = {name: np.empty((n, seq_len - 1), dtype=product_type(name)) for name in products}
    filled = np.zeros((n, seq_len - 1), dtype=np.int8)  # (samples, seq_len - 1): times each product was written
    batches = 0
    fused_parts = fused_head(model, to_device(tokens[:1], device))[:2] if fused and not masked else (None, None)
    for start in range(0, n, batch_size):
        ids = to_device(tokens[start:start + batch_size], device)  # (batch, seq_len)
        rows = slice(start, start + len(ids))
        passes = _masked_passes(model, ids, groups, mask_token_id, products) if masked else \
            _causal_pass(model, ids, products, *fused_parts)
        for columns, reduced, keep in passes:  # reduced: (batch, positions) each
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


def record_windows(lengths: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The windows the model reads for rows of varied length, as lm-evaluation-harness's `loglikelihood_rolling`
    cuts them (`get_rolling_token_windows` with context_len=1, then `make_disjoint_window`): a row whose targets
    (its tokens after the first, T = length - 1) fit the window is read whole; a longer one in windows of `window`
    input tokens, the first predicting targets 0..window-1 and each next one the following `window` targets (the
    last one fewer) with the full window of tokens before them as context.

    lengths: (rows,) tokens per row. Returns per window (windows,) each: its row, its first token in the row, its
    input length, and the first of its input positions whose product is kept (earlier ones are context)."""
    from memaudit.inputs.samples import windows_per_record

    targets = lengths - 1  # (rows,)
    count = windows_per_record(lengths, window)  # (rows,)
    row = np.repeat(np.arange(len(lengths)), count)  # (windows,)
    k = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)  # (windows,) index of each in its row
    t = targets[row]
    end = np.minimum(t, (k + 1) * window)  # target-space end of what each window predicts (exclusive)
    predicted = np.minimum(t, k * window)  # targets before it
    start = np.where(k == 0, 0, end - window)  # its first input token
    inputs = np.where(k == 0, end, window)  # the first window reads up to `window` tokens; the others exactly that
    keep = np.where(k == 0, 0, window - (end - predicted))  # the others score only their last end - predicted
    return row, start, inputs, keep


FILL = {"bool": False, "int32": 0}  # what a product holds past a row's length (floats: NaN); never read


@torch.inference_mode()
def score_records(model, tokens: np.ndarray, lengths: np.ndarray, products: set[str], batch_size: int,
                  device: torch.device | str, window: int, fused: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """Teacher-forced pass over rows of varied length: `tokens` (rows, width) holds row i's tokens in its first
    `lengths[i]` entries. Returns products (rows, width - 1), position j about token j + 1 of the row as in `score`,
    and the number of forward batches. Positions from `lengths[i] - 1` on are padding: NaN (floats), False or 0.

    The windows of `record_windows` are sorted by input length and packed into batches of at most
    `batch_size * window` input tokens, each padded after its longest window only: padding costs little on any
    length mix. No attention mask is needed: a causal model's position reads only the positions before it, which
    are its own window's tokens, so a padded window's products equal the window's alone."""
    if is_masked_lm(model):
        raise ConfigError("'samples: records' scores causal language models (rolling windows of tokens); this "
                          "checkpoint is a masked language model. Give it fixed-length samples ('samples: chunks').")
    products = set(products) | set(ALWAYS)
    n, width = tokens.shape
    if batch_size < 1 or window < 1 or (lengths < 2).any() or (lengths > width).any():
        raise ValueError(f"score_records() needs batch_size, window >= 1 and rows of 2..{width} tokens")
    out = {name: np.full((n, width - 1), FILL.get(product_type(name), np.nan), dtype=product_type(name))
           for name in products}
    filled = np.zeros((n, width - 1), dtype=np.int8)  # (rows, width - 1): times each product was written
    row, start, inputs, keep = record_windows(lengths, window)  # (windows,) each
    order = np.argsort(-inputs, kind="stable")  # longest first: each batch is padded to its first window
    body, head = fused_head(model, to_device(tokens[:1, :min(width, window)], device))[:2] if fused else (None, None)
    budget, batches, i = batch_size * window, 0, 0
    while i < len(order):
        longest = int(inputs[order[i]])
        take = order[i:i + max(1, budget // longest)]  # (batch,) windows
        i += len(take)
        offsets = start[take, None] + np.arange(longest + 1)  # (batch, longest + 1) token positions in each row
        real = np.arange(longest)[None, :] < inputs[take, None]  # (batch, longest) input positions of the window
        scored = real & (np.arange(longest)[None, :] >= keep[take, None])  # (batch, longest) products kept
        ids = np.where(np.arange(longest + 1)[None, :] <= inputs[take, None],
                       tokens[row[take, None], np.minimum(offsets, width - 1)], 0)  # (batch, longest + 1)
        batch = to_device(ids, device)  # (batch, longest + 1): inputs and, one further, their targets
        where = torch.from_numpy(scored).to(batch.device)  # (batch, longest)
        targets = batch[:, 1:][where].unsqueeze(0)  # (1, kept)
        if head is not None:
            hidden = body(input_ids=batch[:, :-1], use_cache=False).last_hidden_state  # (batch, longest, width)
            reduced = reduce_hidden(hidden[where].unsqueeze(0), head, targets, products)  # (1, kept) each
        else:
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits  # (batch, longest, vocab)
            reduced = reduce_logits(logits[where].unsqueeze(0), targets, products)
        if not bool(torch.isfinite(reduced["logprobs"]).all()):
            raise NonFiniteLogits(f"the model's logits are NaN or infinite (records {sorted(set(row[take].tolist()))[:5]}"
                                  "...): the checkpoint's weights are broken")
        rows, cols = np.nonzero(scored)  # (kept,) each, in the order of `where`
        at = (row[take][rows], start[take][rows] + cols)  # (kept,) row and product position
        for name, value in reduced.items():
            out[name][at] = value[0].cpu().numpy()
        np.add.at(filled, at, 1)
        batches += 1
    expected = np.arange(width - 1)[None, :] < (lengths - 1)[:, None]  # (rows, width - 1)
    if not np.array_equal(filled, expected.astype(np.int8)):  # a result is never read from memory that was not written
        raise AssertionError(f"the forward pass wrote {int(((filled == 0) & expected).sum())} record positions not at "
                             f"all, {int((filled > 1).sum())} more than once and {int(((filled > 0) & ~expected).sum())} "
                             "past a record's end")
    return out, batches


def to_device(rows: np.ndarray, device) -> torch.Tensor:
    """A batch of token ids on the device; to a GPU through pinned memory, without blocking."""
    batch = torch.from_numpy(np.array(rows, dtype=np.int64))  # (batch, seq_len): a copy (memory maps are read here)
    if torch.device(device).type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def _causal_pass(model, ids, products, body=None, head=None):
    """One pass. Every position is reduced, the last one (which predicts nothing) against a dummy
    target so that the rows stay contiguous; `keep` then drops it. With the `body` and `head` of a
    fused head (see fused_head), the logits are made chunk by chunk from the last hidden state (see
    reduce_hidden)."""
    targets = torch.nn.functional.pad(ids[:, 1:], (0, 1))  # (batch, seq_len)
    if head is not None:
        hidden = body(input_ids=ids, use_cache=False).last_hidden_state  # (batch, seq_len, width)
        yield slice(None), reduce_hidden(hidden, head, targets, products), slice(0, -1)
    else:
        logits = model(input_ids=ids, use_cache=False).logits  # (batch, seq_len, vocab)
        yield slice(None), reduce_logits(logits, targets, products), slice(0, -1)


def _masked_passes(model, ids, groups, mask_token_id, products):
    """One pass per mask group, the group's positions replaced by the mask token."""
    for group in groups:
        where = torch.from_numpy(group).to(ids.device)  # (group,) positions masked together
        masked = ids.clone()
        masked[:, where] = mask_token_id
        logits = model(input_ids=masked).logits[:, where]  # (batch, group, vocab)
        yield group - 1, reduce_logits(logits, ids[:, where], products), slice(None)


def score_datasets(model, tokens: dict[str, np.ndarray], products: set[str], device, batch_size: int | None = None,
                   adaptive: bool = True, device_map: str | None = None, on_tokens=None,
                   records: dict[str, tuple[np.ndarray, int]] | None = None,
                   **masking) -> tuple[dict[str, dict[str, np.ndarray]], int, int]:
    """Score several data sets in one pass over their union (samples of one length share batches).

    `tokens`: data set name -> (samples, seq_len). `records`: for data sets of whole records, name -> (lengths
    (samples,), window): scored by `score_records`. With `adaptive`, the batch size starts at `batch_size`
    (or one chosen from the memory) and is halved on out-of-memory. Returns the products per data set,
    the number of forward batches and the batch size used."""
    if device_map:  # inputs go where the embeddings are
        device = model.get_input_embeddings().weight.device
    by_len: dict[int, list[str]] = {}
    out, batches = {}, 0
    for name, t in tokens.items():
        if name in (records or {}):
            lengths, window = records[name]
            check_fits(model, t[:, :window])
            if adaptive:
                start = batch_size or auto_batch_size(model, t[:, :window], device)
                out[name], b, batch_size = score_adaptive(model, t, products, start, device, lengths=lengths,
                                                          window=window)
            else:
                out[name], b = score_records(model, t, lengths, products, batch_size, device, window)
            batches += b
            if on_tokens:
                on_tokens(int(lengths.sum()))
            continue
        by_len.setdefault(t.shape[1], []).append(name)
    for names in by_len.values():
        union = tokens[names[0]] if len(names) == 1 else np.concatenate([tokens[n] for n in names])  # (samples, seq_len)
        check_fits(model, union)  # before the batch size is chosen with a forward pass of the first sample
        if adaptive:
            start = batch_size or auto_batch_size(model, union, device)
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


def auto_batch_size(model, tokens: np.ndarray, device) -> int:
    """A first batch size that fits comfortably (halved on out-of-memory by find_executable_batch_size), a power
    of two:
    a sample costs its activations (~16 floats per position and hidden unit) and, unless the head is
    fused, its full logits in the model's dtype; the budget is ~2 GiB on the CPU, half the free memory on
    a GPU."""
    budget = 2 * 2**30
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = free // 2
    seq, width = tokens.shape[1], model.get_input_embeddings().embedding_dim
    per_sample = seq * width * 4 * 16
    first = to_device(tokens[:1], device)  # (1, seq_len)
    if is_masked_lm(model) or fused_head(model, first)[1] is None:
        per_sample += seq * model.get_output_embeddings().weight.shape[0] * model.dtype.itemsize * 2
    fits = int(max(1, min(256, budget // per_sample)))
    return 1 << (fits.bit_length() - 1)  # a power of two: divides the default shard size (memaudit.engine.shards)


def score_adaptive(model, tokens: np.ndarray, products: set[str], start_batch: int, device, **kwargs):
    """`score` (or `score_records`, given `lengths` and `window`) with the largest batch size from `start_batch` down
    that does not run out of memory, halving it on each out-of-memory (accelerate's test of what counts as one).
    Returns (products, batches, batch size used).

    Not accelerate's find_executable_batch_size: it collects garbage and empties the device's memory cache before
    every call, out of memory or not (~0.2 s of gc.collect per shard here, and fresh device allocations for the
    next shard's batches); memory is released here only after an out-of-memory."""
    from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

    batch_size = start_batch
    scorer = score_records if "lengths" in kwargs else score
    while True:
        try:
            return (*scorer(model, tokens, products=products, batch_size=batch_size, device=device, **kwargs),
                    batch_size)
        except Exception as e:  # noqa: BLE001 - only out-of-memory is retried; everything else is raised again
            if not should_reduce_batch_size(e) or batch_size == 1:
                raise
        clear_device_cache(garbage_collection=True)  # outside the except: the traceback's frames are gone
        batch_size //= 2


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


def keep_compiled_kernels(cache_dir, device) -> None:
    """Keep what torch.compile makes of the reduction (inductor's graphs, Triton's kernels) under memaudit's cache
    folder, so a later run's first checkpoint loads them instead of compiling again; a folder the user chose with
    TORCHINDUCTOR_CACHE_DIR or TRITON_CACHE_DIR stays theirs. Nothing happens when the reduction is not compiled."""
    import os
    from pathlib import Path

    if not compiles(device):
        return
    root = Path(cache_dir).expanduser() / "compiled"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))


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
