"""The training ledger: what a series saw, when. Written by `memaudit lab`, read by the audit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

LEDGER_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Update(_Model):
    """One optimizer update."""

    step: int
    """Update number, from 1; checkpoint `step-N` is saved right after update N."""
    epoch: int
    """Epoch the update belongs to, from 1."""
    kind: Literal["train", "special", "unlearn"] = "train"
    """`train`: a batch of the training set; `special`: the injected special batch; `unlearn`: an unlearning
    update on the forget set (gradient ascent or NPO)."""
    sample_ids: list[str]
    """Ids of the samples in the batch (as in the data files)."""


class Intervention(_Model):
    """Something done to the training run on purpose."""

    kind: Literal["special_batch", "unique_ids", "vocab_control", "canaries", "unlearning", "retrain"]
    """special_batch: a held-out batch trained on at `steps`; unique_ids: every training sample
    prefixed with its own new ID token; vocab_control: the vocabulary grown without using the new tokens;
    canaries: secrets planted in training samples (detail: which samples hold which canary); unlearning:
    updates at `steps` that unlearn the forget set (detail: method, forget samples, relearning check);
    retrain: trained without the forget set (detail: the samples left out)."""
    steps: list[int] = []
    """Updates at which it acted (special batch: each time it was trained on)."""
    epochs: list[int] = []
    """Epochs at which it acted."""
    detail: dict = {}
    """Its settings (repetitions, spacing, number of new tokens, ...)."""


class Ledger(_Model):
    """What one series saw, update by update."""

    ledger_version: int = LEDGER_VERSION
    """Version of this format."""
    series: str
    """Series (model size) name."""
    n_params: int
    """Parameters of the model."""
    run: dict = {}
    """The lab run that trained it: size (layers, width, heads) and interventions (special, ids)."""
    lab_runs: list[dict] = []
    """Every run of the same lab recipe (this one included), for comparisons across runs."""
    steps_per_epoch: int
    """Training-set updates per epoch (special-batch updates not counted)."""
    epochs: int
    """Epochs trained."""
    updates: list[Update]
    """Every update in order."""
    epoch_end_steps: list[int]
    """The last update of each epoch."""
    interventions: list[Intervention] = []
    """Interventions, in order."""

    def epoch_at(self, step: int | None) -> float | None:
        """Epochs completed at checkpoint `step` (fractional inside an epoch)."""
        if step is None:
            return None
        done = sum(1 for s in self.epoch_end_steps if s <= step)
        if done == len(self.epoch_end_steps) or step in self.epoch_end_steps:
            return float(done)
        start = self.epoch_end_steps[done - 1] if done else 0
        span = self.epoch_end_steps[done] - start
        return done + (step - start) / span

    def batch_at(self, step: int) -> list[str]:
        """Sample ids of update `step`."""
        for u in self.updates:
            if u.step == step:
                return u.sample_ids
        raise KeyError(step)


def read_ledger(path: str | Path) -> Ledger:
    """Read and validate a ledger file; one that is not a ledger is a ConfigError."""
    from pydantic import ValidationError

    from memaudit.errors import ConfigError
    from memaudit.atomic import read_text_file

    text = read_text_file(Path(path), "ledger")
    try:
        return Ledger.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise ConfigError(f"The ledger '{path}' is not a memaudit training ledger ({e.error_count()} problem(s); "
                          f"first: {where}: {first['msg']}). Point 'ledger' at the ledger.json `memaudit lab` "
                          "wrote, or remove it.") from None
