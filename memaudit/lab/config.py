"""The lab's yaml: which tiny series to train, on what, with which interventions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from memaudit.errors import ConfigError
from memaudit.atomic import read_text_file
from memaudit.inputs.config import YamlModel, describe_error

BUILTIN_CORPUS = "builtin"


class SpecialBatch(YamlModel):
    """A held-out batch trained on at chosen epochs (the forgetting experiment)."""

    epoch: int = Field(ge=1)
    """Epoch at whose start the special batch is first trained on."""
    repeats: int = Field(1, ge=1)
    """How many times it is trained on (exposures)."""
    spacing: int | None = Field(None, ge=1)
    """Epochs between repeats (spaced repetition); None: the repeats are consecutive updates."""
    updates: int = Field(1, ge=1)
    """Consecutive updates on the batch per exposure. A large model memorizes a batch in one update; a
    tiny one needs several, so that the forgetting curve starts from a memorized batch."""

    def epochs(self) -> list[int]:
        """Epoch of each update on the batch (consecutive ones share an epoch)."""
        if self.spacing is None:
            return [self.epoch] * (self.repeats * self.updates)
        return [self.epoch + i * self.spacing for i in range(self.repeats) for _ in range(self.updates)]


class CanaryPlan(YamlModel):
    """Canaries planted in the training set (Carlini et al. 2019), to measure their exposure."""

    file: str = "builtin"
    """A canary file (see memaudit/inputs/canaries.py), or `builtin` (two shipped canaries)."""
    copies: int = Field(4, ge=1)
    """Training samples per canary: the canary text, then corpus text up to seq_len."""


class Relearn(YamlModel):
    """The relearning check: fine-tune a copy of the unlearned model on part of the forget set, measure M on
    the rest (unlearning that only hides what was learned comes back in a few steps)."""

    steps: int = Field(4, ge=1)
    """Optimizer steps on the fine-tuning part."""
    fraction: float = Field(0.5, gt=0, lt=1)
    """Share of the forget set fine-tuned on (the first samples); M is measured on the others."""
    lr: float | None = Field(None, gt=0)
    """Learning rate (default: the lab's)."""


class Unlearn(YamlModel):
    """Unlearn the forget set (the lab's first `n_forget` training samples) after training."""

    method: Literal["gradient_ascent", "npo"] = "gradient_ascent"
    """gradient_ascent: maximise the forget set's loss; npo: Negative Preference Optimization (Zhang et al.
    2024), a bounded version against the model at the start of unlearning."""
    steps: int = Field(8, ge=1)
    """Unlearning updates (each on the whole forget set)."""
    lr: float | None = Field(None, gt=0)
    """Learning rate (default: the lab's)."""
    beta: float = Field(0.1, gt=0)
    """NPO's inverse temperature."""
    save_every: int = Field(1, ge=1)
    """Save a checkpoint every this many unlearning updates (and after the last)."""
    relearn: Relearn | None = None
    """Run the relearning check after unlearning (off by default)."""


class Insert(YamlModel):
    """Hubble's perturbation in miniature: the lab's perturbation set inserted into this run's training batches,
    each sample as many times as its duplication level (level 0: drawn from the set, never inserted)."""

    phase: list[float] = Field([0.0, 1.0], min_length=2, max_length=2)
    """The share of the run's training updates the insertions fall in: [0, 1] all of training, [0, 0.25] the
    first quarter (early), [0.75, 1] the last (late)."""

    @model_validator(mode="after")
    def _a_window(self):
        if not 0 <= self.phase[0] < self.phase[1] <= 1:
            raise ValueError(f"phase {self.phase} must be [start, end] with 0 <= start < end <= 1")
        return self


class RunSpec(YamlModel):
    """One series: a model size and, optionally, its interventions."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """Series name (a folder under the output)."""
    layers: int = Field(ge=1)
    """Transformer layers."""
    width: int = Field(ge=8)
    """Hidden size."""
    heads: int = Field(2, ge=1)
    """Attention heads (must divide width)."""
    special: SpecialBatch | None = None
    """Train once (or r times) on a held-out special batch."""
    objective: Literal["causal", "masked"] = "causal"
    """causal: a GPT-NeoX trained on next-token prediction; masked: a BERT trained on masked-token
    prediction (15% of positions per update, seeded), audited with mask groups."""
    ids: Literal["none", "prefix", "control"] = "none"
    """prefix: each training sample starts with its own new ID token; control: the same new tokens
    are added to the vocabulary but never used."""
    unlearn: Unlearn | None = None
    """After training, unlearn the forget set (`n_forget`), saving checkpoints along the way."""
    retrain: bool = False
    """Train without the forget set: the reference an unlearned model is compared with."""
    insert: Insert | None = None
    """Insert the perturbation set (`n_perturb`) at its duplication levels (a Hubble `perturbed` run)."""
    n_train: int | None = Field(None, ge=1)
    """Train on the first this many training samples only (a smaller corpus: the same insertions are less
    diluted)."""
    reference: str | None = None
    """The run this one is a minimal pair with (its twin without the insertions): the audit compares them."""

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self


class LabConfig(YamlModel):
    """The `lab:` section: corpus, tokenizer, samples, optimizer, checkpoints, runs."""

    out: Path = Path("lab-runs")
    """Output folder (relative to the current folder, so that shipped recipes write where you are)."""
    corpus: str = BUILTIN_CORPUS
    """`builtin` (the shipped WikiText-2 excerpt) or a path to a UTF-8 text file."""
    vocab_size: int = Field(1024, ge=300)
    """Size of the byte-level BPE trained on the corpus."""
    seq_len: int = Field(64, ge=8)
    """Tokens per sample."""
    n_samples: int = Field(64, ge=1)
    """Training samples (the training set)."""
    n_valid: int = Field(32, ge=0)
    """Held-out validation samples."""
    n_special: int = Field(8, ge=0)
    """Held-out special-batch samples (used by runs with `special`)."""
    n_perturb: int = Field(0, ge=0)
    """Samples of the perturbation set (drawn from the corpus after the special batch), split evenly over
    `dup_levels`; runs with `insert` train on them, every run's audit groups them by level."""
    dup_levels: list[Annotated[int, Field(ge=0)]] = Field([0, 1, 4, 16, 64], min_length=2)
    """Duplication levels of the perturbation set (0: never inserted, the held-out members)."""
    n_forget: int = Field(0, ge=0)
    """The first this many training samples form the forget set of an unlearning audit (runs with `unlearn`
    or `retrain`); the held-out samples serve as its holdout set."""
    batch_size: int = Field(8, ge=1)
    """Samples per update."""
    epochs: int = Field(20, ge=1)
    """Epochs to train."""
    lr: float = Field(3e-3, gt=0)
    """AdamW learning rate (weight decay 0, as in the paper)."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up updates; constant learning rate afterwards."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Seed of initialization and batch order."""
    seeds: list[Annotated[int, Field(ge=0, lt=2**63)]] | None = Field(None, min_length=1)
    """Train every run once per seed (replicates: `<run>-s<seed>/`, grouped in the report with each metric's
    mean and spread); None: once, with `seed`, in `<run>/`. The samples are the same for every seed."""
    save_every: int = Field(1, ge=1)
    """Save a checkpoint at the end of every Nth epoch (plus step 0 and right after each special batch)."""
    holdout: Literal["after", "random"] = "after"
    """Where the held-out (valid) samples come from: the corpus after the training samples, or drawn at random
    among them (`random`: the same text surrounds trained and held-out samples, as a causal profile assumes:
    training on a sample also teaches its neighbours, which must not be only trained samples)."""
    save_every_steps: int | None = Field(None, ge=1)
    """Also save a checkpoint every this many updates, within epochs (memorization profiles: every sample is
    seen once, in one epoch, so the checkpoints must come during it)."""
    canaries: CanaryPlan | None = None
    """Plant canaries in the training set of every run."""
    runs: list[RunSpec] = Field(min_length=1)
    """The series to train."""

    @model_validator(mode="after")
    def _unique_runs(self):
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names):
            raise ValueError(f"run names must be unique: {names}")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct: {self.seeds}")
        unlearning = [r.name for r in self.runs if r.unlearn or r.retrain]
        if unlearning and not 1 <= self.n_forget < self.n_samples:
            raise ValueError(f"runs {unlearning} unlearn or leave out a forget set: set n_forget between 1 and "
                             f"n_samples - 1 ({self.n_samples - 1})")
        if unlearning and not self.n_valid:
            raise ValueError("an unlearning audit needs holdout text: set n_valid (held-out samples) above 0")
        for r in self.runs:
            if r.unlearn and r.unlearn.relearn and self.n_forget < 2:
                raise ValueError(f"run '{r.name}': the relearning check splits the forget set; n_forget must be >= 2")
            if r.unlearn and r.retrain:
                raise ValueError(f"run '{r.name}': a run either unlearns or is the retrained reference, not both")
            if r.insert and self.n_perturb < len(self.dup_levels):
                raise ValueError(f"run '{r.name}' inserts the perturbation set: set n_perturb to at least one sample "
                                 f"per duplication level ({len(self.dup_levels)})")
            if r.n_train is not None and r.n_train > self.n_samples:
                raise ValueError(f"run '{r.name}': n_train {r.n_train} is above n_samples {self.n_samples}")
            if r.reference is not None and r.reference not in names or r.reference == r.name:
                raise ValueError(f"run '{r.name}': reference '{r.reference}' must name another run ({', '.join(names)})")
            if (r.unlearn or r.retrain) and (r.ids != "none" or r.objective != "causal"):
                raise ValueError(f"run '{r.name}': unlearning runs are causal runs without unique IDs")
        return self

    def replicates(self) -> list[tuple[RunSpec, int, str]]:
        """(run, seed, series name) of every series to train: one per run, or one per run and seed."""
        if self.seeds is None:
            return [(spec, self.seed, spec.name) for spec in self.runs]
        return [(spec, seed, f"{spec.name}-s{seed}") for spec in self.runs for seed in self.seeds]

    def fingerprint(self) -> str:
        """Hash of everything that decides the trained weights (not the output folder). Settings added in later
        versions count only when set away from their default, so a lab trained before they existed keeps its
        fingerprint (and resumes instead of being refused as another lab)."""
        data = self.model_dump(mode="json", exclude={"out"})
        for key, default in LATER_SETTINGS["lab"].items():
            if data.get(key) == default:
                del data[key]
        for run in data["runs"]:
            for key, default in LATER_SETTINGS["run"].items():
                if run.get(key) == default:
                    del run[key]
            if run.get("special") and run["special"].get("updates") == 1:
                del run["special"]["updates"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


LATER_SETTINGS = {"lab": {"seeds": None, "n_forget": 0, "save_every_steps": None, "holdout": "after",
                          "n_perturb": 0, "dup_levels": [0, 1, 4, 16, 64]},
                  "run": {"unlearn": None, "retrain": False, "insert": None, "n_train": None, "reference": None}}
"""Settings added after labs were first written, with the default that leaves the weights as they were
(plus `special.updates: 1`)."""


def recipe_names() -> list[str]:
    """Names of the lab recipes shipped with memaudit."""
    from importlib import resources

    return sorted(p.name[:-5] for p in (resources.files("memaudit.lab") / "recipes").iterdir() if p.name.endswith(".yaml"))


def load_lab_config(path: str | Path) -> LabConfig:
    """Read a lab yaml (a `lab:` section, or the lab keys at the top level), or a shipped recipe by name."""
    from importlib import resources

    path = Path(path)
    if not path.is_file() and str(path) in recipe_names():
        path = Path(str(resources.files("memaudit.lab") / "recipes" / f"{path}.yaml"))
    if not path.is_file():
        raise ConfigError(f"No lab configuration at '{path}'. Give a lab yaml, or one of the shipped recipes: "
                          f"{', '.join(recipe_names())}.")
    try:
        raw = yaml.safe_load(read_text_file(path, "lab configuration"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if isinstance(raw, dict) and "lab" in raw:
        raw = raw["lab"]
    return parse_lab_config(raw, path.resolve().parent, str(path))


def parse_lab_config(raw, base: Path, source: str = "lab config") -> LabConfig:
    """Validate a lab mapping; a relative corpus path resolves against `base` (the yaml's folder),
    a relative `out` against the current folder."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping with at least 'runs'.")
    try:
        lab = LabConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source} is not a valid lab configuration: "
                          + "; ".join(describe_error(err, LabConfig) for err in e.errors()) + ".") from None
    lab.out = lab.out.resolve()
    if lab.corpus != BUILTIN_CORPUS and not Path(lab.corpus).is_absolute():
        lab.corpus = str(base / lab.corpus)
    if lab.canaries and lab.canaries.file != "builtin" and not Path(lab.canaries.file).is_absolute():
        lab.canaries.file = str(base / lab.canaries.file)
    return lab
