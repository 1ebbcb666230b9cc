"""The Python API, on the engine `memaudit run` uses (no second code path for scoring):

- `audit(config)`: a checkpoints.yaml (path, dict or AuditConfig) audited as `memaudit run` does, same
  caches and journal; returns the AuditReport (`status` and `exit_code` as the command's).
- `audit_model(model, tokenizer, datasets)`: one model already in memory; returns its CheckpointResult.
- `LiveSeries`: models in memory audited one after another (a training loop, the Trainer callback) as
  one series, so that series probes (T(N, tau), forgetting) and checks work on it.

Bad input raises memaudit.errors.MemauditError (a ConfigError, SourceUnavailable, NothingCollected),
whose `exit_code` is the one the command line would return.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

from memaudit.errors import ConfigError

IN_MEMORY = "<in memory>"


def audit(config, *, select: str | None = None, probes: list[str] | None = None, batch_size: int | None = None,
          dtype: str | None = None, device: str | None = None, device_map: str | None = None, cache: bool = True,
          show_text: bool = False, tolerance: float = 0.02, compare=None, fail_fast: bool = False,
          allow_pickle: bool = False, evict: bool = False, progress: bool = False, samples_out=None, on_event=None,
          params: dict | None = None, outputs: dict | None = None):
    """Audit every checkpoint series of `config` (the path of a checkpoints.yaml, its content as a dict,
    relative paths then relative to the working folder, or an AuditConfig) and return the AuditReport.

    The keyword arguments are the command line's: `select` is `-k`, `probes` runs only the probes named
    (and those they use), `cache=False` is `--no-cache`, `compare` a baseline report (path or AuditReport)
    as `--compare`, `fail_fast` is `-x`, `samples_out` is `--samples-out`; `progress=True` draws the progress
    bars on stderr; `params` sets probe parameters over the yaml's, as for audit_model
    (`params={"memorization": {"k": 16}}`); `outputs` writes the report as output media, as the command line's
    `--json`, `--html`, `--junit-xml` do (`outputs={"html": "audit.html"}`; memaudit.report.media); `on_event` is
    called with each of the run's typed events as it happens (memaudit.results.events: SeriesStarted,
    CheckpointStarted, TokensScored, Continued, ShardScored, RowsScored, CheckpointFinished, RunFinished). A checkpoint
    that fails to load gives `status == "error"`, a failed check `status == "failed"`; bad input raises.
    """
    from memaudit.engine.plan import RunOptions, make_plan
    from memaudit.engine.run import run_audit
    from memaudit.inputs.config import check_api_arguments, configuration
    from memaudit.results.schema import AuditReport, open_report

    check_api_arguments("memaudit.audit()", select=select, probes=probes, batch_size=batch_size, dtype=dtype,
                        device=device, device_map=device_map, cache=cache, show_text=show_text, tolerance=tolerance,
                        fail_fast=fail_fast, allow_pickle=allow_pickle, evict=evict, progress=progress, params=params)
    if compare is not None and not isinstance(compare, (str, Path, AuditReport)):
        raise ConfigError(f"memaudit.audit(): compare must be the path of a saved report or an AuditReport, not "
                          f"{type(compare).__name__}.")
    if samples_out is not None and not isinstance(samples_out, (str, Path)):
        raise ConfigError(f"memaudit.audit(): samples_out must be a folder path, not {type(samples_out).__name__}.")
    cfg, digest, path = configuration(config)
    if params:  # over the yaml's, each probe's mapping merged; part of the configuration's hash
        from memaudit.hashing import digest as hash_of

        cfg = cfg.model_copy(update={"probes": {**cfg.probes, **{name: {**(cfg.probes.get(name) or {}), **values}
                                                                 for name, values in params.items()}}})
        digest = hash_of(digest, params)[:16]
    media = _checked_outputs(cfg, path, outputs, samples_out)
    if samples_out is not None:
        from memaudit.atomic import check_writable

        check_writable(Path(samples_out) / "x")
    plan = make_plan(cfg, select, probes, keyword_source="select")
    baseline = compare if compare is None or isinstance(compare, AuditReport) else open_report(compare)
    opts = RunOptions(fail_fast=fail_fast, batch_size=batch_size, dtype=dtype, device=device, use_cache=cache,
                      evict=evict, allow_pickle=allow_pickle, baseline=baseline, show_text=show_text,
                      tolerance=tolerance, device_map=device_map, command="memaudit.audit()", config_path=path,
                      samples_out=Path(samples_out) if samples_out is not None else None)
    if not progress:
        report = run_audit(plan, digest, opts, on_event)
    else:
        from memaudit.report.progress import AuditProgress
        from memaudit.report.render import make_console

        with AuditProgress(make_console(stderr=True)) as bars:
            report = run_audit(plan, digest, opts, bars)
    from memaudit.engine.registry import figure_makers
    from memaudit.report.media import write_all

    write_all(report, media, makers=functools.partial(figure_makers, plan.config.probe_paths))
    return report


def _checked_outputs(cfg, path, outputs, samples_out) -> dict:
    """`outputs` of memaudit.audit() checked before anything runs: media that exist, paths that are not an input and
    can be written. Returns medium name -> path."""
    from memaudit.atomic import check_writable
    from memaudit.inputs.config import check_outputs
    from memaudit.report.media import medium

    if outputs is not None and not isinstance(outputs, dict):
        raise ConfigError(f"memaudit.audit(): outputs must map output media to paths ({{'html': 'audit.html'}}), not "
                          f"{type(outputs).__name__}.")
    media = {medium(str(name)).name: value for name, value in (outputs or {}).items()}
    for name, value in media.items():
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"memaudit.audit(): outputs['{name}'] must be a file path, not {type(value).__name__}.")
        check_writable(value)
    check_outputs(cfg, {**{f"outputs['{name}']": value for name, value in media.items()},
                        **({"samples_out": samples_out} if samples_out is not None else {})}, {"the configuration": path})
    return media


def audit_model(model, tokenizer, datasets=None, *, config=None, probes: list[str] | None = None,
                select: str | None = None, params: dict | None = None, step: int | None = None,
                tokens_seen: int | None = None, batch_size: int | None = None, show_text: bool = False):
    """Audit a model already in memory (no save, no reload, no copy of its weights) and return its
    CheckpointResult: `result.metric("memorization", "train", "M")`.

    `datasets`: data set name -> a file path, a list of texts, a list of token-id lists, a 2-D array of
    token ids, or a dict of the yaml's data set fields (`{"path": ..., "role": "valid"}`, or `"data"`
    instead of `path`); or the yaml's list of data sets. `config` (a yaml path or dict, whose series are
    not used) gives data sets, probe parameters and settings instead. The model is put in eval mode for
    the audit and back in the mode it was in afterwards."""
    live = LiveSeries(tokenizer, datasets, config=config, probes=probes, select=select, params=params,
                      batch_size=batch_size, show_text=show_text, name="model")
    return live.add(model, step=step, tokens_seen=tokens_seen)


def _plain_int(value):
    """A numpy (or other) integer as a Python int; anything else (a bool, a float, None) as it is, to be
    judged by the argument check."""
    import numbers

    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value


class LiveSeries:
    """A series whose checkpoints are models in memory, audited as they come (`add`), reported together
    (`report`): the samples are read and tagged once, each model scored by the engine's forward pass.
    Nothing is cached: weights in memory have no identity to key products by."""

    def __init__(self, tokenizer, datasets=None, *, config=None, name: str = "live", probes: list[str] | None = None,
                 select: str | None = None, params: dict | None = None, checks: list | None = None,
                 batch_size: int | None = None, show_text: bool = False, command: str = "memaudit.LiveSeries"):
        from transformers import PreTrainedTokenizerBase

        from memaudit.engine.plan import make_plan
        from memaudit.engine.run import start_in_memory
        from memaudit.engine.series import series_context
        from memaudit.inputs.config import check_api_arguments
        from memaudit.inputs.sources import tokenizer_fingerprint
        from memaudit.results.checks import validate_check_targets
        from memaudit.results.schema import SeriesResult

        check_api_arguments("memaudit.LiveSeries", name=name, probes=probes, select=select, params=params,
                            checks=checks, batch_size=batch_size, show_text=show_text)
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise ConfigError("An audit of a model in memory needs its tokenizer (the data sets are tokenized with "
                              f"it): pass the transformers tokenizer of the model, not {type(tokenizer).__name__}.")
        run_values = {"batch_size": batch_size, "show_text": show_text or None}
        cfg, self._digest, data = live_configuration(config, name, datasets, params, checks,
                                                     {k: v for k, v in run_values.items() if v is not None})
        plan = make_plan(cfg, select, probes, keyword_source="select")
        validate_check_targets(cfg, {name: []})  # only aggregates: the checkpoints' names are not known yet
        self._run = start_in_memory(plan, command)
        series = SeriesResult(name=name, source="memory", tokenizer=tokenizer_fingerprint(tokenizer))
        self._ctx = series_context(self._run, series, tokenizer, None, data)

    @property
    def config(self):
        """The AuditConfig this series is audited with (data sets, probes' parameters, checks, settings)."""
        return self._run.config

    @property
    def checkpoints(self):
        """The CheckpointResults so far, in the order they were added."""
        return self._ctx.series.checkpoints

    def check_model(self, model) -> None:
        """Refuse, before any training or audit, data the model cannot score: token ids beyond its embeddings,
        samples longer than its context (a ConfigError)."""
        from memaudit.engine.forward import check_fits

        for samples in self._ctx.samples.values():
            check_fits(model, samples.tokens)

    def add(self, model, step: int | None = None, tokens_seen: int | None = None, name: str | None = None):
        """Audit `model` as the checkpoint at training `step` (steps must increase) and return its result.

        The model stays where it is (device, dtype, weights); it runs in eval mode under inference mode,
        and is put back in the mode it was in. NaN or infinite logits give a result with an `error`."""
        import torch

        from memaudit.engine.checkpoint import audit_in_memory
        from memaudit.engine.forward import NonFiniteLogits, is_masked_lm
        from memaudit.inputs.config import check_api_arguments
        from memaudit.inputs.sources import Checkpoint
        from memaudit.results.schema import CheckpointResult

        step, tokens_seen = _plain_int(step), _plain_int(tokens_seen)  # numpy integers are integers
        check_api_arguments("LiveSeries.add()", step=step, tokens_seen=tokens_seen, name=name)
        steps = [c.step for c in self.checkpoints]
        if steps and (step is None or any(s is None or s >= step for s in steps)):
            raise ConfigError(f"Checkpoint steps of a live series must increase: step {step} comes after "
                              f"{steps[-1]}. Give each audited model its training step.")
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"audit a model in memory: expected a torch.nn.Module (a transformers model), "
                              f"got {type(model).__name__}.")
        if any(p.is_meta for p in model.parameters()):
            raise ConfigError(f"audit a model in memory: {type(model).__name__} has weights on the meta device "
                              "(shapes without values, e.g. made under accelerate's init_empty_weights). Load its "
                              "weights first (from_pretrained, or load_checkpoint_and_dispatch).")
        run, ctx = self._run, self._ctx
        ckpt = Checkpoint(series=ctx.series.name, name=name or (f"step-{step}" if step is not None else "model"),
                          step=step, location=f"memory:{type(model).__name__}", sha="", tokens=tokens_seen,
                          objective="masked" if is_masked_lm(model) else "causal")
        dtype = str(model.dtype).removeprefix("torch.")
        run.config = run.config.model_copy(update={"run": run.run_cfg.model_copy(update={"dtype": dtype})})
        was_training = model.training
        model.eval()
        try:
            result = audit_in_memory(ctx, ckpt, model)
        except NonFiniteLogits as e:
            result = CheckpointResult(name=ckpt.name, step=step, location=ckpt.location,
                                      error=f"{type(e).__name__}: {e}")
        finally:
            model.train(was_training)
        result.sha = None
        self.checkpoints.append(result)
        return result

    def report(self):
        """The AuditReport of the checkpoints so far: series probes run and checks evaluated on them (a copy:
        later `add`s do not change it)."""
        from memaudit.engine.run import finish

        return finish(self._run, self._digest).model_copy(deep=True)


def live_configuration(config, name: str, datasets=None, params: dict | None = None, checks: list | None = None,
                       run: dict | None = None) -> tuple[Any, str, dict]:
    """The AuditConfig of a live series: `config` (a yaml path, a dict or an AuditConfig; its series are
    replaced by the series in memory) with the keyword arguments put in, validated as a yaml is.
    Returns (config, its hash, records in memory by data set name)."""
    from memaudit.inputs.config import (
        config_digest,
        parse_config,
        raw_configuration,
        resolve_paths,
    )

    raw, base, _ = raw_configuration({}) if config is None else raw_configuration(config)
    if not isinstance(raw, dict):
        raise ConfigError(f"The configuration must be a mapping; it holds {type(raw).__name__}.")
    records: dict = {}
    if datasets is not None:
        raw["datasets"], records = _datasets(datasets)
    if params:
        raw["probes"] = {**(raw.get("probes") or {}), **params}
    if checks is not None:
        raw["checks"] = checks
    if run:
        raw["run"] = {**(raw.get("run") or {}), **run}
    raw["series"] = [{"name": name, "local": IN_MEMORY}]
    raw.pop("regressions", None)  # rules for --compare, which a live series has not
    digest = config_digest(raw, "the configuration")
    cfg = resolve_paths(parse_config(raw, source="the configuration"), base)
    for d in cfg.datasets:
        if d.name in records:
            d.path = Path(IN_MEMORY)
    return cfg, digest, records


def _datasets(given) -> tuple[list[dict], dict]:
    """The yaml's list of data sets, and the records given in memory, from the API's forms."""
    if isinstance(given, Mapping):
        entries = []
        for name, value in given.items():
            if isinstance(value, (str, Path)):
                entries.append({"name": name, "path": value})
            elif isinstance(value, Mapping):
                entries.append({"name": name, **value})
            else:
                entries.append({"name": name, "data": value})
    elif isinstance(given, (list, tuple)) and all(isinstance(d, Mapping) for d in given):
        entries = [dict(d) for d in given]
    else:
        raise ConfigError("datasets: give a dict of name -> path, texts, token lists or data set fields, or a "
                          f"list of data set dicts as in the yaml; got {type(given).__name__}.")
    records = {}
    for entry in entries:
        if entry.get("data", "") is None:
            raise ConfigError(f"Data set '{entry.get('name')}': its records are None. Give texts, token-id lists, "
                              "an array, or a file path.")
        if "data" in entry and "path" in entry:
            raise ConfigError(f"Data set '{entry.get('name')}': give its records ('data') or a file ('path'), not both.")
        if "data" in entry:
            records[str(entry.get("name"))] = entry.pop("data")
            entry.setdefault("path", IN_MEMORY)
    return entries, records
