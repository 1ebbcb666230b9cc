"""The `generations` product: each selected sample's prefix continued by the model (memaudit.engine.generate), for
a probe that asks for it by argument name. What to generate is the probe's parameters (`GenerationRequest`):
prefix lengths, new tokens, greedy and sampling schemes, draws, seed, and which samples (`Selection`: a seeded
random share, or those whose teacher-forced loss or p_z over the reference passes a bound, read off the same
checkpoint's forward products), so that a million-sample audit generates for the few it can afford.

A sample's reference is its next tokens after the prefix: the rest of the sample (of the record, with `samples:
records`), at most `new_tokens` of them. Its prompt is its row up to the end of the prefix (with records, the prefix
token before the record's own tokens included, as the teacher-forced pass scores it), so greedy decoding of
`new_tokens = m` reproduces the m-token suffix exactly when memaudit's k-extractable verdict says it does.

Only pydantic and numpy at import time; torch loads when a model generates.
"""

from __future__ import annotations

import zlib

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from memaudit.engine.sampling import SamplingScheme

GREEDY = "greedy"


class Selection(BaseModel):
    """Which samples get continuations (every condition given must hold; none given: every sample)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraction: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    """A random share of the samples, drawn from a hash of each sample's id and `seed`: the same samples whatever
    the shards, processes or checkpoints."""
    seed: int = Field(0, ge=0)
    max_loss: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Only samples whose teacher-forced loss over the reference (mean negative log-likelihood, nats per token)
    is at most this: the ones the model already predicts well."""
    min_log10_pz: float | None = Field(None, le=0, allow_inf_nan=False)
    """Only samples whose teacher-forced log10 p_z over the reference (the chance that plain sampling reproduces
    it) is at least this."""

    def describe(self) -> str:
        """The rule in words, for the report."""
        parts = [f"a random {self.fraction:g} of the samples (seed {self.seed})"] if self.fraction is not None else []
        parts += [f"teacher-forced loss over the reference <= {self.max_loss:g} nats/token"] \
            if self.max_loss is not None else []
        parts += [f"teacher-forced log10 p_z over the reference >= {self.min_log10_pz:g}"] \
            if self.min_log10_pz is not None else []
        return " and ".join(parts) or "every sample"


class GenerationRequest(BaseModel):
    """What to generate: the `generations` product of a probe with these parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefixes: tuple[int, ...]
    new_tokens: int | None = None
    until_eos: bool = True
    greedy: bool = True
    schemes: tuple[SamplingScheme, ...] = ()
    n: int = 1
    seed: int = 0
    select: Selection = Selection()

    @property
    def labels(self) -> list[str]:
        """`greedy` (when asked) and each sampling scheme's label, in order."""
        return [GREEDY] * self.greedy + [s.label for s in self.schemes]

    def draws(self, label: str) -> int:
        """Continuations per prompt: one greedy, `n` per sampling scheme."""
        return 1 if label == GREEDY else self.n


FIELDS = tuple(GenerationRequest.model_fields)
"""The parameters of a probe that the `generations` product reads (by name, like `schemes` for sampling_logprobs)."""


def request_of(params: dict) -> GenerationRequest:
    """The request a probe's parameters make."""
    return GenerationRequest.model_validate({k: params[k] for k in FIELDS if k in params})


class Generations:
    """Continuations of one data set's samples (or a shard, or a group): per prefix length k, which samples could be
    continued (`applies`: tokens after the prefix to compare with, and room for them in the window) and which were
    (`selected`: those the selection took), and per (label, k) their tokens (samples, draws, new) int32, -1 after a
    row stopped and for samples not generated for."""

    def __init__(self, request: GenerationRequest, tokens: np.ndarray, lengths: np.ndarray | None, first: int,
                 applies: dict[int, np.ndarray], selected: dict[int, np.ndarray],
                 made: dict[tuple[str, int], np.ndarray], decode=None, show=None):
        self.request, self.first = request, first
        self.decode = decode  # token rows (-1 padded) -> texts, special tokens dropped
        self.show = show  # with --show-text: a continuation's text -> what the rows may keep (redacted); else None
        self.tokens, self.lengths = tokens, lengths  # the samples' rows (samples, seq) and lengths (records) or None
        self.applies, self.selected, self.made = applies, selected, made

    def __getitem__(self, index) -> Generations:
        """The samples at `index` (a group of group_by)."""
        return Generations(self.request, self.tokens[index], None if self.lengths is None else self.lengths[index],
                           self.first, {k: v[index] for k, v in self.applies.items()},
                           {k: v[index] for k, v in self.selected.items()},
                           {key: v[index] for key, v in self.made.items()}, self.decode, self.show)

    def references(self, k: int) -> np.ndarray:
        """Each sample's reference after a k-token prefix (samples, width) int64, -1 past its end."""
        return references(self.tokens, self.lengths, self.first, k, self.request.new_tokens)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the generations cache stores."""
        return {**{f"applies:{k}": v for k, v in self.applies.items()},
                **{f"selected:{k}": v for k, v in self.selected.items()},
                **{f"made:{label}:{k}": v for (label, k), v in self.made.items()}}

    @classmethod
    def from_arrays(cls, request: GenerationRequest, arrays: dict, tokens, lengths, first, tokenizer, show=None):
        """Read back what `arrays` stored (None when something is missing)."""
        try:
            applies = {k: arrays[f"applies:{k}"] for k in request.prefixes}
            selected = {k: arrays[f"selected:{k}"] for k in request.prefixes}
            made = {(label, k): arrays[f"made:{label}:{k}"] for label in request.labels for k in request.prefixes}
        except KeyError:
            return None
        if any(len(v) != len(tokens) for v in [*applies.values(), *selected.values(), *made.values()]):
            return None
        return cls(request, tokens, lengths, first, applies, selected, made, Decoder(tokenizer), show)


def row_ends(tokens: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Where each row's own tokens end (samples,): its length for records, the row's width otherwise."""
    return np.full(len(tokens), tokens.shape[1], dtype=np.int64) if lengths is None else lengths.astype(np.int64)


def references(tokens: np.ndarray, lengths: np.ndarray | None, first: int, k: int, new_tokens: int | None):
    """The tokens after each row's k-token prefix (samples, width) int64, -1 past the row's end; at most
    `new_tokens` of them."""
    start, ends = first + k, row_ends(tokens, lengths)
    width = max(0, tokens.shape[1] - start) if new_tokens is None else min(new_tokens, max(0, tokens.shape[1] - start))
    out = np.asarray(tokens[:, start:start + width], dtype=np.int64).copy()  # (samples, width)
    out[np.arange(width)[None, :] >= (ends - start)[:, None]] = -1
    return out


def sample_keys(ids) -> np.ndarray:
    """A 32-bit key per sample (samples,) int64 from its id: what its random draws and its selection hash."""
    return np.fromiter((zlib.crc32(str(i).encode()) for i in ids), dtype=np.int64, count=len(ids))


def select_samples(selection: Selection, keys: np.ndarray, logprobs: np.ndarray, ends: np.ndarray, first: int,
                   k: int, width: int) -> np.ndarray:
    """Which samples (samples,) bool the selection takes for a k-token prefix: `logprobs` (samples, seq - 1) are
    the teacher-forced log-probabilities (position j predicts token j + 1), read over each reference."""
    from memaudit.engine.generate import row_keys

    chosen = np.ones(len(keys), dtype=bool)
    if selection.fraction is not None:
        chosen &= row_keys(keys, selection.seed, 0x5E1EC7) / 2.0 ** 32 < selection.fraction
    if selection.max_loss is not None or selection.min_log10_pz is not None:
        start = first + k - 1  # the position predicting the reference's first token
        positions = np.arange(start, start + width)[None, :]  # (1, width)
        inside = positions < (ends - 1)[:, None]  # (samples, width)
        window = np.asarray(logprobs[:, start:start + width], dtype=np.float64)  # (samples, <= width)
        inside = inside[:, :window.shape[1]]
        total = np.where(inside, window, 0.0).sum(axis=1)  # (samples,) log p_z
        count = inside.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if selection.max_loss is not None:
                chosen &= -total / np.maximum(count, 1) <= selection.max_loss
            if selection.min_log10_pz is not None:
                chosen &= total / np.log(10) >= selection.min_log10_pz
    return chosen


def make_generations(model, tokens: np.ndarray, lengths: np.ndarray | None, first: int, ids, logprobs: np.ndarray,
                     request: GenerationRequest, tokenizer, batch_size: int, window: int, show=None,
                     on_progress=None) -> Generations:
    """Continue every selected sample's prefixes under each of the request's labels (`tokens`: the samples' rows,
    `logprobs`: their teacher-forced log-probabilities, for the selection); a prompt and its continuation fit in
    `window` tokens (the data set's seq_len: the context it is scored in). `on_progress(done, total)` hears of each
    batch of prompts done."""
    from memaudit.engine.generate import continue_prompts, row_keys

    keys, ends = sample_keys(ids), row_ends(tokens, lengths)
    eos = tokenizer.eos_token_id if request.until_eos else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    applies, selected, made, ref_lens = {}, {}, {}, {}
    for k in request.prefixes:
        refs = references(tokens, lengths, first, k, request.new_tokens)  # (samples, width)
        ref_lens[k] = (refs >= 0).sum(axis=1)  # (samples,)
        applies[k] = (ref_lens[k] > 0) & (window - first - k > 0)  # something to compare with, and room to write it
        selected[k] = select_samples(request.select, keys, logprobs, ends, first, k, refs.shape[1]) & applies[k]
    total = sum(int(chosen.sum()) for chosen in selected.values()) * sum(map(request.draws, request.labels))
    done = 0

    def one_batch(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    for k in request.prefixes:
        rows = np.flatnonzero(selected[k])
        ref_len = ref_lens[k]
        budgets = ref_len[rows] if request.new_tokens is None else np.full(len(rows), request.new_tokens)
        budgets = np.minimum(budgets, window - first - k)  # (rows,): never past the context
        prompts = np.asarray(tokens[rows, :first + k], dtype=np.int64)  # (rows, first + k): one length per k
        for s, label in enumerate(request.labels):
            scheme = None if label == GREEDY else request.schemes[s - request.greedy]
            draws = request.draws(label)
            out = np.full((len(tokens), draws, int(budgets.max(initial=0))), -1, dtype=np.int32)  # (samples, draws, new)
            named = zlib.crc32(label.encode())  # a draw's key names its scheme, not its place in the list
            for j in range(draws):
                draw_keys = None if scheme is None else row_keys(keys[rows], request.seed, k, named, j)
                if len(rows):
                    out[rows, j] = continue_prompts(model, prompts, budgets, eos, pad, batch_size, scheme, draw_keys,
                                                    one_batch)
            made[label, k] = out
    return Generations(request, tokens, lengths, first, applies, selected, made, Decoder(tokenizer), show)


class Decoder:
    """Token rows (-1 padded) -> texts, special tokens dropped (as Hubble's `decode(..., skip_special_tokens=True)`);
    picklable, so that continuations travel between processes with what decodes them."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, rows: np.ndarray) -> list[str]:
        return self.tokenizer.batch_decode([[int(t) for t in row if t >= 0] for row in np.asarray(rows)],
                                           skip_special_tokens=True)
