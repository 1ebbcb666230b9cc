"""Canaries (Carlini et al. 2019, "The Secret Sharer"): planted secrets and their candidate sets.

A canary file is JSONL, one canary per line:

    {"id": "pin-1", "format": "my PIN is {secret}", "secret": "492817", "alphabet": "0123456789", "length": 6}
    {"id": "name-1", "format": "the password is {secret}.", "secret": "otter", "candidates": ["otter", "heron", ...]}

The candidate space R is every string of `length` characters over `alphabet`, or the explicit
`candidates` list (which must hold the secret). memaudit scores the whole canary text once per
candidate, in the same batched pass as everything else, and ranks the inserted secret by the
log-perplexity of the tokens from the secret on: exposure = log2 |R| - log2 rank. When |R| is at
most `max_candidates` the rank is exact; otherwise it is estimated from a uniform sample of
candidates (the report says which, and the estimate's standard error).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memaudit.errors import ConfigError


class Canary(BaseModel):
    """One planted secret and its candidate space (types are strict: nothing is coerced)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    format: str
    secret: str = Field(min_length=1)
    alphabet: str | None = Field(None, min_length=1)
    length: int | None = Field(None, ge=1, le=64)
    candidates: list[str] | None = Field(None, min_length=1)

    @field_validator("alphabet", "candidates")
    @classmethod
    def _distinct(cls, value, info):
        """A repeated character or candidate would be counted twice in |R|, and the exposure would be wrong."""
        if value is not None and len(set(value)) != len(value):
            what = "the alphabet repeats a character" if info.field_name == "alphabet" else "the candidates repeat a string"
            raise ValueError(f"{what}, which would count it twice in |R|")
        return value

    @property
    def space(self) -> int:
        """|R|, the number of possible secrets."""
        return len(self.candidates) if self.candidates else len(self.alphabet) ** self.length

    def text(self, secret: str) -> str:
        return self.format.replace("{secret}", secret)

    def pick_candidates(self, limit: int, rng: np.random.Generator) -> tuple[list[str], bool]:
        """The inserted secret first, then other candidates: all of them (exact) or a uniform sample."""
        if self.space - 1 <= limit:
            if self.candidates:
                others = [c for c in self.candidates if c != self.secret]
            else:
                others = [self._nth(i) for i in range(self.space)]
                others = [c for c in others if c != self.secret]
            return [self.secret, *others], True
        if self.candidates:
            pool = [c for c in self.candidates if c != self.secret]
            picks = rng.choice(len(pool), size=limit, replace=False)
            return [self.secret, *(pool[i] for i in picks)], False
        picks = set()
        while len(picks) < limit:
            c = "".join(rng.choice(list(self.alphabet), size=self.length))
            if c != self.secret:
                picks.add(c)
        return [self.secret, *sorted(picks)], False

    def _nth(self, i: int) -> str:
        chars = []
        for _ in range(self.length):
            i, r = divmod(i, len(self.alphabet))
            chars.append(self.alphabet[r])
        return "".join(reversed(chars))


def read_canaries(path: str | Path) -> list[Canary]:
    """Parse and check a canary file."""
    canaries = []
    from memaudit.inputs.config import read_text_file

    for lineno, line in enumerate(read_text_file(Path(path), "canary file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            canary = Canary.model_validate_json(line)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "the line"
            raise ConfigError(f"Canary file '{path}', line {lineno}: {where}: {err['msg']}. Each line is an object "
                              "with id, format, secret, and alphabet + length or candidates (see "
                              "memaudit/inputs/canaries.py).") from None
        if canary.id in {c.id for c in canaries}:
            raise ConfigError(f"Canary file '{path}', line {lineno}: the id '{canary.id}' is used twice.")
        if "{secret}" not in canary.format:
            raise ConfigError(f"Canary '{canary.id}' in '{path}': its format has no {{secret}} slot.")
        if canary.candidates is None and not (canary.alphabet and canary.length):
            raise ConfigError(f"Canary '{canary.id}' in '{path}': give 'candidates', or 'alphabet' and 'length'.")
        if canary.candidates is not None and canary.secret not in canary.candidates:
            raise ConfigError(f"Canary '{canary.id}' in '{path}': the secret is not among its candidates.")
        if canary.candidates is None and (len(canary.secret) != canary.length
                                          or set(canary.secret) - set(canary.alphabet)):
            raise ConfigError(f"Canary '{canary.id}' in '{path}': the secret is not {canary.length} characters "
                              "of its alphabet.")
        canaries.append(canary)
    if not canaries:
        raise ConfigError(f"Canary file '{path}' holds no canary.")
    return canaries


def candidate_samples(canaries: list[Canary], tokenizer, max_candidates: int, seed: int = 0):
    """Token rows for every (canary, candidate), right-padded to one length, with the mask of the
    targets to score (from the first token that holds part of the secret on) and per-canary facts.

    Returns tokens (rows, length), target_mask (rows, length - 1), ids, and meta per canary id:
    {"space": |R|, "exact": bool, "n_candidates": n}. Row ids are `<canary id>#<k>`, k = 0 the secret.
    """
    rng = np.random.default_rng(seed)
    rows, masks, ids, meta = [], [], [], {}
    for canary in canaries:
        candidates, exact = canary.pick_candidates(max_candidates, rng)
        meta[canary.id] = {"space": canary.space, "exact": exact, "n_candidates": len(candidates)}
        start = canary.format.index("{secret}")
        for k, candidate in enumerate(candidates):
            enc = tokenizer(canary.text(candidate), add_special_tokens=False, return_offsets_mapping=True)
            tokens = list(enc["input_ids"])
            # targets are tokens 1..; score those ending after the secret starts
            mask = [end > start for _, end in enc["offset_mapping"][1:]]
            rows.append(tokens)
            masks.append(mask)
            ids.append(f"{canary.id}#{k}")
    length = max(len(r) for r in rows)
    pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    tokens = np.full((len(rows), length), pad, dtype=np.int64)
    target_mask = np.zeros((len(rows), length - 1), dtype=bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens[i, :len(r)] = r
        target_mask[i, :len(m)] = m
    return tokens, target_mask, ids, meta


def exposure(scores: np.ndarray, space: int, exact: bool) -> dict:
    """Exposure of candidate 0 (the inserted secret) given the log-perplexity `scores` of all candidates.

    rank = 1 + candidates scoring lower (more likely) than the secret; exact when every candidate
    was scored, else |R| * (share of sampled candidates below) with a binomial standard error.
    """
    secret, others = scores[0], scores[1:]
    below = int((others < secret).sum())
    if exact:
        rank = 1 + below
        return {"exposure": math.log2(space) - math.log2(rank), "rank": rank, "exact": True, "exposure_stderr": 0.0}
    share = below / len(others)
    rank = max(1.0, 1 + share * (space - 1))
    stderr_share = math.sqrt(max(share * (1 - share), 1 / len(others)) / len(others))
    # error propagated through log2: d log2(rank) = d rank / (rank ln 2)
    stderr = (space - 1) * stderr_share / (rank * math.log(2))
    return {"exposure": math.log2(space) - math.log2(rank), "rank": rank, "exact": False,
            "exposure_stderr": stderr}
