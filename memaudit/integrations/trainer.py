"""`MemauditCallback`: audit the live model while `transformers.Trainer` trains it.

    callback = MemauditCallback("audit.yaml", every_steps=100, on_fail="stop").attach(trainer)
    trainer.train()

Every `every_steps` steps, on each save and at the end, the model in training is audited in place (eval
mode, inference only, no copy of its weights, back to train mode) by memaudit.api.LiveSeries; the metrics
each probe shows go through `trainer.log`, hence to every `report_to` integration (TensorBoard, W&B,
MLflow); the report JSON of the run (a series whose steps are the global steps) is rewritten after each
audit; a failed check warns or stops training. With several processes, process zero audits and tells
the others whether to stop.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

from transformers import TrainerCallback

from memaudit.errors import ConfigError


class CheckFailedWarning(UserWarning):
    """A memaudit check failed during training (with `on_fail="warn"`)."""


class MemauditCallback(TrainerCallback):
    """Audit the model in training; see the module's docstring.

    `config`: a checkpoints.yaml (path or dict) whose data sets, probe parameters, checks and `run:` settings
    are used (its series are not: the checkpoints are the model in training); or give `datasets`, `probes`,
    `select`, `params`, `checks` as for memaudit.audit_model. `tokenizer`: default, the Trainer's
    processing class. The other keywords are memaudit.inputs.config.CallbackSettings."""

    def __init__(self, config=None, *, datasets=None, probes: list[str] | None = None, select: str | None = None,
                 params: dict | None = None, checks: list | None = None, tokenizer=None,
                 batch_size: int | None = None, **settings):
        from pydantic import ValidationError

        from memaudit.inputs.config import CallbackSettings, describe_error

        try:
            self.settings = CallbackSettings(**settings)
        except ValidationError as e:
            raise ConfigError("MemauditCallback: " + "; ".join(describe_error(err, CallbackSettings)
                                                                 for err in e.errors()) + ".") from None
        self._series_args = {"config": config, "datasets": datasets, "probes": probes, "select": select,
                             "params": params, "checks": checks, "batch_size": batch_size,
                             "name": self.settings.name, "command": "memaudit.integrations.MemauditCallback"}
        self._tokenizer = tokenizer
        self.series = None  # memaudit.api.LiveSeries, made when training begins (on process zero)
        self.report = None  # the AuditReport after the last audit
        self.report_path: Path | None = None
        self.audit_seconds: list[float] = []  # wall seconds of each audit
        self.setup_seconds = 0.0  # reading, tokenizing and tagging the data sets, once
        self._trainer = None
        self._audited_step: int | None = None
        self._failing: set[str] = set()
        self._warned_unattached = False
        self.runs = 1  # train() calls that began a new series

    def attach(self, trainer):
        """Add this callback to `trainer` and log through `trainer.log` (so `report_to` integrations get the
        metrics). A callback passed as `Trainer(callbacks=[...])` without `attach` writes its metrics into
        `state.log_history` only. Returns the callback."""
        trainer.add_callback(self)
        self._trainer = trainer
        return self

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        """Read and tag the data sets (process zero) and check them against the model, before the first step.
        A later `train()` that starts at or before the last audited step (a new run, not a resumed one)
        is a new series with its own report file (`memaudit-report-run2.json`, ...)."""
        if not state.is_world_process_zero:
            return
        if self.series is not None and self.series.checkpoints:
            last = self.series.checkpoints[-1].step
            if last is None or state.global_step > last:
                return  # resumed: the same series goes on
            self.runs += 1
            self._audited_step = None
            self.series = None
            warnings.warn(f"memaudit: train() began again at step {state.global_step}, at or before the last audited "
                          f"step {last}: its audits form a new series, '{self._run_name()}', reported in "
                          f"{self._report_path(args).name}.", stacklevel=2)
        if self.series is None:
            from memaudit.api import LiveSeries

            t0 = time.perf_counter()
            tokenizer = self._tokenizer if self._tokenizer is not None else processing_class
            self.series = LiveSeries(tokenizer, **{**self._series_args, "name": self._run_name()})
            self.setup_seconds = time.perf_counter() - t0
            self.report_path = self._report_path(args)
            _check_report_path(self.report_path, self.series.config)
        if model is not None:
            self.series.check_model(model)  # token ids and seq_len against the model, before training

    def _run_name(self) -> str:
        return self.settings.name if self.runs == 1 else f"{self.settings.name}-run{self.runs}"

    def _report_path(self, args) -> Path:
        path = self.settings.report_path or Path(args.output_dir) / "memaudit-report.json"
        return path if self.runs == 1 else path.with_name(f"{path.stem}-run{self.runs}{path.suffix}")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.settings.every_steps
        if every and state.global_step % every == 0:
            self._audit(args, state, control, model)

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.settings.on_save:
            self._audit(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.settings.at_end:
            self._audit(args, state, control, model)

    def _audit(self, args, state, control, model) -> None:
        """Audit the model at this global step (once per step), log, write the report, act on failed checks."""
        if state.global_step == self._audited_step or model is None:
            return
        self._audited_step = state.global_step
        stop = False
        if state.is_world_process_zero:
            stop = self._audit_here(state, control, model)
        if _agree(stop, args):
            control.should_training_stop = True

    def _audit_here(self, state, control, model) -> bool:
        from memaudit.results.schema import write_report

        t0 = time.perf_counter()
        result = self.series.add(model, step=state.global_step, tokens_seen=state.num_input_tokens_seen or None)
        self.report = self.series.report()
        write_report(self.report, self.report_path)
        self.audit_seconds.append(time.perf_counter() - t0)
        failed = [c for c in self.report.checks if not c.passed]
        logs = _shown_metrics(self.report, result, self.settings.log_prefix)
        logs[f"{self.settings.log_prefix}/checks_failed"] = len(failed)
        logs[f"{self.settings.log_prefix}/audit_s"] = round(self.audit_seconds[-1], 4)
        self._log(logs, state, control)
        new = [c for c in failed if c.name not in self._failing]
        self._failing = {c.name for c in failed}
        if result.error:
            warnings.warn(f"memaudit: the model at step {state.global_step} could not be audited: {result.error}",
                          CheckFailedWarning, stacklevel=2)
        if new and self.settings.on_fail == "warn":
            warnings.warn(f"memaudit: at step {state.global_step}, " + "; ".join(c.message for c in new),
                          CheckFailedWarning, stacklevel=2)
        stop = bool(failed) and self.settings.on_fail == "stop"
        if stop:  # say why training ends, in the warnings and the log
            why = (f"memaudit: stopping training at step {state.global_step} (on_fail='stop'): "
                   + "; ".join(c.message for c in failed) + f". Report: {self.report_path}")
            warnings.warn(why, CheckFailedWarning, stacklevel=2)
            logging.getLogger("memaudit").warning(why)
        return stop

    def _log(self, logs: dict, state, control) -> None:
        if self._trainer is not None:
            pending = control.should_log  # trainer.log clears it: the Trainer's own log of this step must still happen
            self._trainer.log(logs)
            control.should_log = pending
            return
        state.log_history.append({**logs, "step": state.global_step})
        if not self._warned_unattached:
            self._warned_unattached = True
            warnings.warn("MemauditCallback was not attached to the Trainer, so its metrics go to "
                          "state.log_history only, not to report_to integrations. Use "
                          "`MemauditCallback(...).attach(trainer)`.", stacklevel=3)


def _check_report_path(path: Path, config) -> None:
    """The report must not overwrite a data set, and its folder must be writable (before the first step)."""
    from memaudit.atomic import check_writable
    from memaudit.inputs.config import check_output_paths

    check_output_paths({"report_path": path}, [(f"data set '{d.name}'", d.path) for d in config.datasets])
    check_writable(path)


def _shown_metrics(report, result, prefix: str) -> dict[str, float]:
    """The numeric metrics each probe shows in the terminal, for this checkpoint: `prefix/dataset/probe.metric`."""
    from memaudit.results.schema import is_number

    shown = {p.name: p.show for p in report.probes if p.kind == "checkpoint"}
    return {f"{prefix}/{dataset}/{probe}.{metric}": value
            for probe, per_dataset in result.results.items() for dataset, metrics in per_dataset.items()
            for metric, value in metrics.items() if metric in shown.get(probe, ()) and is_number(value)}


def _agree(stop: bool, args) -> bool:
    """Process zero's decision, for every process of a distributed run (all call this at the same step)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return stop
    flag = torch.tensor([int(stop)], device=args.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())
