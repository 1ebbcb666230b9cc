"""Checkpoint-series families as data: how each names its checkpoints, and what a name says.

A family matches a Hub repo id; its `checkpoint` pattern reads the training step (and, where the
name carries it, the tokens seen) from a branch name, or from the repo id itself for suites that
publish one repo per checkpoint. Any other repo or folder falls back to `generic`: a step number
in the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNITS = {"": 1, "K": 10**3, "k": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


@dataclass(frozen=True)
class Family:
    """How one family of public series names its checkpoints."""

    name: str
    repo: str  # regex on the repo id
    checkpoint: str  # regex with a `step` group (and optional `tokens`, `unit`, `step_unit` groups)
    per_repo: bool = False  # one repo per checkpoint: the repo id carries the step
    tokens_per_step: int | None = None  # when the name does not say, tokens = step * this
    example: str = ""


FAMILIES = (
    Family("pythia", r"^EleutherAI/pythia-[\d.]+[mb](-deduped)?(-v0)?$", r"^step(?P<step>\d+)$",
           tokens_per_step=1024 * 2048, example="EleutherAI/pythia-70m @ step1000 (branches step0, 1, 2, 4, ..., "
           "512, 1000, 2000, ..., 143000; main = step143000)"),
    Family("olmo", r"^allenai/OLMo", r"^(?:stage\d+-)?(?:ingredient\d+-)?step(?P<step>\d+)(?:-tokens(?P<tokens>\d+)"
           r"(?P<unit>[KMBT]?))?$", example="allenai/OLMo-2-1124-7B @ stage1-step5000-tokens21B"),
    Family("multiberts", r"^google/multiberts-seed_\d+-step_\d+k?$", r"-step_(?P<step>\d+)(?P<step_unit>k?)$",
           per_repo=True, example="google/multiberts-seed_0-step_20k (one repo per checkpoint)"),
    Family("hubble", r"^allegrolab/hubble-", r"^(?:step)?(?P<step>\d+)$",
           example="allegrolab/hubble-1b-100b_toks-perturbed-hf @ step48000 (the last of the 100B-token runs; "
           "step238500 of the 500B-token runs); its minimal-pair twin is ...-standard-hf"),
    Family("generic", r".*", r"step[-_]?(?P<step>\d+)|^[A-Za-z_-]*?(?P<bare>\d+)$",
           example="any branch or folder with a step number: step-100, checkpoint-300, 300"),
)


def family_of(repo: str | None) -> Family:
    """The family whose repo pattern matches (generic for local folders and unknown repos)."""
    return next(f for f in FAMILIES if repo is not None and re.search(f.repo, repo)) if repo else FAMILIES[-1]


def parse_checkpoint(name: str, repo: str | None = None) -> tuple[int | None, int | None]:
    """(step, tokens seen) of checkpoint `name` (a branch, or the repo id for per-repo suites)."""
    family = family_of(repo)
    m = re.search(family.checkpoint, name, re.IGNORECASE) or re.search(FAMILIES[-1].checkpoint, name, re.IGNORECASE)
    if not m:
        return None, None
    groups = m.groupdict()
    step = int(groups.get("step") or groups.get("bare"))
    if groups.get("step_unit"):
        step *= 1000
    tokens = None
    if groups.get("tokens"):
        tokens = int(groups["tokens"]) * UNITS[groups.get("unit") or ""]
    elif family.tokens_per_step:
        tokens = step * family.tokens_per_step
    return step, tokens
