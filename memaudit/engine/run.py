"""The loop: series -> checkpoints -> one forward pass -> probes -> series probes -> checks -> report."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memaudit.engine.events import (
    CheckpointFinished,
    CheckpointStarted,
    RunFinished,
    SeriesStarted,
    ShardScored,
    Subscriber,
    TokensScored,
)
from memaudit.engine.registry import (
    ProbeDef,
    call_checkpoint_probes,
    call_series_probes,
    collect,
    jsonable,
    probe_arguments,
    select,
    standard_probe_dir,
    validate_references,
)
from memaudit.errors import ConfigError, ExitCode
from memaudit.inputs.config import AuditConfig, RunConfig, apply_overrides
from memaudit.inputs.ledger import Ledger, read_ledger
from memaudit.memory import release_device, release_pages, trim_heap
from memaudit.results.checks import (
    compare_to_baseline,
    evaluate_checks,
    validate_check_targets,
    validate_checks,
)
from memaudit.results.replicates import replicate_groups
from memaudit.results.schema import (
    AuditReport,
    CheckpointResult,
    DatasetInfo,
    ProbeInfo,
    Provenance,
    SeriesResult,
)
from memaudit.version import __version__



def _checkpoint_errors() -> tuple[type[BaseException], ...]:
    """What makes one checkpoint fail without stopping the run: it cannot be loaded, or its logits are
    not finite. Configuration errors (MemauditError other than SourceUnavailable) still stop the run."""
    from safetensors import SafetensorError

    from memaudit.errors import SourceUnavailable

    return (SourceUnavailable, SafetensorError, OSError, RuntimeError)


@dataclass
class RunOptions:
    """Command-line overrides and switches of `memaudit run`."""

    fail_fast: bool = False
    batch_size: int | None = None
    dtype: str | None = None
    device: str | None = None
    use_cache: bool = True
    evict: bool = False
    allow_pickle: bool = False
    baseline: Any = None  # AuditReport to compare against (--compare)
    show_text: bool = False
    tolerance: float = 0.02
    device_map: str | None = None
    command: str = ""
    config_path: str | None = None
    samples_out: Path | None = None  # --samples-out: per-sample tables to Parquet (memaudit.engine.samples_out)


@dataclass
class Plan:
    """What will run: probes (with parameters) and the checks, validated before anything loads."""

    config: AuditConfig
    probes: list[ProbeDef]

    @property
    def checkpoint_probes(self) -> list[ProbeDef]:
        return [p for p in self.probes if p.kind == "checkpoint"]

    @property
    def series_probes(self) -> list[ProbeDef]:
        return [p for p in self.probes if p.kind == "series"]

    @property
    def products(self) -> set[str]:
        return {name for p in self.checkpoint_probes for name in p.products}

    @property
    def panel_probes(self) -> set[str]:
        """The per-checkpoint probes whose per-sample columns a series probe reads across checkpoints (it asks
        for `panel` and `uses` them): the per-sample panel keeps those (memaudit.engine.panel)."""
        return {name for p in self.series_probes if {"panel", "panels"} & set(p.args) for name in p.uses}


def make_plan(config: AuditConfig, keyword: str | None = None, names: list[str] | None = None,
              keyword_source: str = "-k") -> Plan:
    """Collect the standard probes and the yaml's probe paths, select (`keyword`: the `-k` expression, named
    `keyword_source` in errors; `names`: only these probes, for the Python API), and validate the checks."""
    keywords = [("the yaml's select:", config.select), (keyword_source, keyword)]
    probes = select(collect([standard_probe_dir(), *config.probe_paths]), config.probes, keywords, names)
    validate_references(probes, config.probes, [d.name for d in config.datasets],
                        [s.display_name for s in config.series])
    validate_checks(config, probes, selected_by_keyword=bool(keyword or config.select or names is not None))
    for p in probes:
        if p.validate is not None:
            p.validate(p.params, config)
    if any("pos_tags" in p.wants for p in probes):  # before any checkpoint loads, not after the first is scored
        from memaudit.inputs.tagging import installed_pipeline, missing_pipeline_message

        if installed_pipeline(config.run.spacy_model) is None:
            raise ConfigError(missing_pipeline_message(config.run.spacy_model))
    return Plan(config, probes)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Run:
    """One audit in progress: its settings, stores and what it has produced so far (so an interrupted
    run can still report it)."""

    plan: Plan
    config: AuditConfig  # the yaml with the command line's overrides
    opts: RunOptions
    emit: Subscriber
    device: Any  # torch.device
    processes: Any  # accelerate's PartialState
    resolved: list  # (SeriesConfig, [Checkpoint]) per series
    cache: Any  # ProductsCache
    journal: Any  # Journal
    shards: Any  # ShardJournal: finished shards of checkpoints in progress
    started: str = field(default_factory=lambda: _now())
    t0: float = field(default_factory=time.perf_counter)
    series: list[SeriesResult] = field(default_factory=list)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    ledgers: dict[str, Ledger | None] = field(default_factory=dict)
    said: dict = field(default_factory=dict)  # tagger, identifiers, text_included: for the provenance
    panels: dict = field(default_factory=dict)  # series name -> its per-sample Panel (when a series probe reads one)
    unwritten: list[str] = field(default_factory=list)  # outputs that could not be written, with why
    config_hash: str = ""  # of the yaml: the report's provenance and the --samples-out files' metadata say it
    batch_size: int | None = None  # the batch size chosen when the user fixed none
    field_types: dict = field(default_factory=dict)  # group_by field -> (its type, where first seen): one per run

    @property
    def run_cfg(self) -> RunConfig:
        return self.config.run


def run_audit(plan: Plan, config_hash: str, opts: RunOptions, on_event: Subscriber | None = None) -> AuditReport:
    """Run every probe on every checkpoint of every series and return the report; `on_event` receives the run's
    events as they happen (memaudit.engine.events).

    User errors (bad data, missing revision) raise MemauditError; Ctrl-C returns a partial
    report with status `interrupted`.
    """
    run = _start(plan, opts, on_event)
    run.config_hash = config_hash
    interrupted = False
    try:
        for series_cfg, checkpoints in run.resolved:
            if _audit_series(run, series_cfg, checkpoints):  # -x stopped the run
                break
    except KeyboardInterrupt:
        interrupted = True
    if not interrupted:
        run_series_probes(run)
    for panel in run.panels.values():
        panel.close()
    report = _report(run, config_hash, interrupted)
    run.emit(RunFinished(report))
    return report


def run_series_probes(run: _Run) -> None:
    """Every series probe on every series of the run, on its checkpoints that have no error."""
    for series in run.series:
        series.results = call_series_probes(run.plan.series_probes, {
            "checkpoints": [c for c in series.checkpoints if c.error is None],
            "datasets": [d for key, d in run.datasets.items() if key == d.name and d.group_of is None],  # the yaml's
            "series": series, "panel": run.panels.get(series.name), "panels": run.panels,
            "series_configs": {s.display_name: s for s in run.config.series},
            "ledger": run.ledgers[series.name], "all_series": run.series})


def start_in_memory(plan: Plan, command: str) -> _Run:
    """A run whose checkpoints are models already in memory (memaudit.api.LiveSeries): this process alone, no
    products cache and no journal (weights in memory have no identity to key them by)."""
    from types import SimpleNamespace

    from memaudit.engine.journal import Journal
    from memaudit.engine.products import ProductsCache
    from memaudit.engine.shards import ShardJournal

    return _Run(plan, plan.config, RunOptions(use_cache=False, command=command), lambda *a, **k: None, None,
                SimpleNamespace(num_processes=1, is_main_process=True, process_index=0), [],
                ProductsCache(None, enabled=False), Journal(None, enabled=False), ShardJournal(None, enabled=False))


def audit_in_memory(ctx: _SeriesContext, ckpt, model) -> CheckpointResult:
    """Score every data set of the series with `model` (loaded already, on its own device) and run the probes:
    the same path as a checkpoint loaded from disk."""
    ctx.run.device = model.get_input_embeddings().weight.device
    found = _Found(missing=list(ctx.samples))
    result, rows = _probe_checkpoint(ctx, ckpt, found, _score(ctx, ckpt, found, model), 0.0)
    if ctx.panel is not None:
        ctx.panel.add(ckpt.name, ckpt.step, rows)
    return result


def finish(run: _Run, config_hash: str) -> AuditReport:
    """Series probes, checks and the report of what the run has so far."""
    run_series_probes(run)
    return _report(run, config_hash, interrupted=False)


def _start(plan: Plan, opts: RunOptions, on_event: Subscriber | None) -> _Run:
    """Validate the command line's values, pick the device, resolve every series and check the checks'
    targets: everything that can fail on bad input fails here, before a model loads."""
    from memaudit.engine.distributed import process_state
    from memaudit.engine.forward import keep_compiled_kernels, pick_device
    from memaudit.engine.journal import Journal
    from memaudit.engine.products import ProductsCache
    from memaudit.engine.shards import ShardJournal
    from memaudit.inputs.sources import check_series_name_clash, resolve_series

    if opts.samples_out is not None:
        from memaudit.engine.samples_out import require_pyarrow

        require_pyarrow()
        if not any(p.rows for p in plan.checkpoint_probes):
            raise ConfigError("--samples-out writes the per-sample values of probes that list them (memorization, "
                              "membership, unlearning_membership, or a probe made with @probe(rows=...)), but none "
                              "is selected. Select one (-k), or drop --samples-out.")
    config = apply_overrides(plan.config, tolerance=opts.tolerance, batch_size=opts.batch_size, dtype=opts.dtype,
                             device=opts.device, device_map=opts.device_map, show_text=opts.show_text or None)
    if opts.use_cache:
        _check_cache_writable(config.run.cache_dir)
    device = pick_device(config.run.device)
    if opts.use_cache:
        keep_compiled_kernels(config.run.cache_dir, device)
    processes = process_state(config.run.device)
    emit = (on_event or (lambda *a, **k: None)) if processes.is_main_process else (lambda *a, **k: None)
    resolved = [(s, resolve_series(s, allow_pickle=opts.allow_pickle)) for s in config.series]
    for _, checkpoints in resolved:
        check_series_name_clash(checkpoints)
    validate_check_targets(config, {s.display_name: [c.name for c in cs] for s, cs in resolved})
    _check_twins(resolved)
    return _Run(plan, config, opts, emit, device, processes, resolved,
                ProductsCache(config.run.cache_dir, enabled=opts.use_cache),
                Journal(config.run.cache_dir, enabled=opts.use_cache),
                ShardJournal(config.run.cache_dir, enabled=opts.use_cache))


def _check_twins(resolved: list) -> None:
    """A series and its `reference` twin share a tokenizer, and the twin has a checkpoint at every step the series
    is compared at (the same step, or its last); else a ConfigError before any checkpoint loads."""
    from memaudit.inputs.sources import load_tokenizer, tokenizer_fingerprint

    by_name = {s.display_name: (s, checkpoints) for s, checkpoints in resolved}
    for s, checkpoints in resolved:
        if s.reference is None or not checkpoints:
            continue
        _, twin = by_name[s.reference]
        if not twin:
            continue
        mine, theirs = (tokenizer_fingerprint(load_tokenizer(cs[0])) for cs in (checkpoints, twin))
        if mine != theirs:
            raise ConfigError(f"Series '{s.display_name}' and its reference '{s.reference}' tokenize differently "
                              f"(fingerprints {mine} vs {theirs}): a twin must share the tokenizer and vocabulary, "
                              "so the same samples mean the same tokens to both.")
        steps = {c.step for c in twin}
        for c in checkpoints if s.reference_at == "same_step" else ():
            if c.step not in steps:
                near = min((x for x in steps if x is not None), key=lambda x: abs(x - (c.step or 0)), default=None)
                raise ConfigError(f"Series '{s.display_name}': its reference '{s.reference}' has no checkpoint at "
                                  f"step {c.step} ({c.name}); the nearest is step {near}. Audit the same steps in "
                                  "both, or set 'reference_at: last' to compare with the twin's last checkpoint.")


def _check_cache_writable(cache_dir) -> None:
    """The products cache and run journal must be writable before the first checkpoint is scored."""
    from memaudit.atomic import OutputError, check_writable
    from memaudit.engine.store import default_cache_dir

    root = Path(cache_dir or default_cache_dir())
    try:
        check_writable(root / "journal" / "probe")
    except OutputError as e:
        raise OutputError(f"{e} The products cache and the run journal live in '{root}' (run.cache_dir, or "
                          "$MEMAUDIT_CACHE): point it at a writable folder, or run with --no-cache.") from None


def _report(run: _Run, config_hash: str, interrupted: bool) -> AuditReport:
    """Checks, status, exit code and provenance around what the run produced."""
    from importlib.metadata import version

    config, run_cfg, opts = run.config, run.run_cfg, run.opts
    checks = evaluate_checks(config.checks, run.series, run.plan.probes, config.datasets)
    comparison = None
    if opts.baseline is not None:
        drift, comparison = compare_to_baseline(run.series, opts.baseline, config.regressions, opts.tolerance,
                                                run.plan.probes)
        checks += drift
    if interrupted:
        status = "interrupted"
    elif any(c.error for s in run.series for c in s.checkpoints):
        status = "error"
    else:
        status = "failed" if any(not c.passed for c in checks) else "passed"
    exit_code = {"passed": ExitCode.OK, "failed": ExitCode.CHECKS_FAILED, "error": ExitCode.CHECKS_FAILED,
                 "interrupted": ExitCode.USAGE_ERROR}[status]
    if run.unwritten:
        exit_code = ExitCode.USAGE_ERROR  # the results are in the report, but an output the user asked for is not
    provenance = Provenance(
        memaudit_version=__version__, torch_version=version("torch"), transformers_version=version("transformers"),
        python_version=platform.python_version(), platform=platform.platform(terse=True), device=str(run.device),
        dtype=run_cfg.dtype, batch_size=run_cfg.batch_size or run.batch_size,
        batch_size_auto=run_cfg.batch_size is None, processes=run.processes.num_processes,
        device_map=run_cfg.device_map, seed=run_cfg.seed, tagger=run.said.get("tagger"),
        identifiers=run.said.get("identifiers"), head=run.said.get("head"), attention=run.said.get("attention"),
        masking=f"fraction {run_cfg.mask_fraction}, seed {run_cfg.mask_seed}",
        config_path=opts.config_path, config_hash=config_hash, command=opts.command or " ".join(sys.argv),
        samples_out=str(opts.samples_out.resolve()) if opts.samples_out else None,
        started_at=run.started, finished_at=_now(), duration_s=round(time.perf_counter() - run.t0, 3))
    probes = [ProbeInfo(name=p.name, kind=p.kind, source=p.source, products=p.products, params=jsonable(p.params),
                        metrics=p.metrics, show=list(p.show), columns=p.columns) for p in run.plan.probes]
    return AuditReport(status=status, exit_code=int(exit_code), provenance=provenance,
                       datasets=list(run.datasets.values()), probes=probes, series=run.series, checks=checks,
                       comparison=comparison, unwritten=run.unwritten,
                       replicates=replicate_groups(run.series), text_included=run.said.get("text_included", False))


@dataclass
class _SeriesContext:
    """What every checkpoint of one series is audited with, and the keys its results are stored under."""

    run: _Run
    series: SeriesResult
    samples: dict  # data set name -> Samples
    text_products: dict  # data set name -> {product: value}
    ledger: Ledger | None
    mask_token_id: int | None
    inputs: dict  # the series-wide inputs a journal record depends on (see memaudit.engine.identity)
    panel: Any = None  # memaudit.engine.panel.Panel, when a series probe reads per-sample values across checkpoints
    groups: dict = field(default_factory=dict)  # data set -> [(group name, sample indices, its Samples)] (group_by)
    first_with: dict = field(default_factory=dict)  # weights -> the first checkpoint that had them
    sampled: bool = False  # several processes split each checkpoint's shards (fewer checkpoints than processes)

    @property
    def needed(self) -> set[str]:
        return self.run.plan.products | {"hits", "logprobs"}

    @functools.cached_property
    def whole(self) -> set[str]:
        """Forward products some probe needs as whole per-token arrays (probes without a rows function)."""
        return {name for p in self.run.plan.checkpoint_probes for name in p.whole_products}

    def parts(self, name: str) -> list[slice]:
        from memaudit.engine.shards import shard_parts

        return shard_parts(len(self.samples[name].tokens), self.run.run_cfg.shard_size)

    def mine(self, n_parts: int) -> range:
        """The shards this process scores: all of them, or with `sampled`, shard i on process i mod P."""
        processes = self.run.processes
        return range(processes.process_index, n_parts, processes.num_processes) if self.sampled else range(n_parts)

    def row_probes(self, name: str) -> set[str]:
        """The probes whose rows functions read data set `name`."""
        from memaudit.engine.registry import reads

        mask = {"target_mask": self.samples[name].target_mask}
        return {p.name for p in self.run.plan.checkpoint_probes if p.rows is not None and reads(p, mask)}

    def shard_key(self, ckpt, name: str, part: slice) -> str:
        """What a finished shard's columns depend on: the products' key, the data set's content (ids and
        steps too), the shard's bounds, the series-wide inputs and the code and parameters of its probes."""
        from memaudit.engine.identity import digest

        return digest("shard", self.products_key(ckpt, name), self.samples[name].fingerprint, part.start, part.stop,
                      self.inputs, {p: self.probe_keys[p] for p in sorted(self.row_probes(name))})

    @functools.cached_property
    def probe_keys(self) -> dict[str, str]:
        from memaudit.engine.identity import probe_fingerprint

        return {p.name: probe_fingerprint(p.fn, p.params, p.rows) for p in self.run.plan.checkpoint_probes}

    def settings(self, ckpt) -> dict:
        from memaudit.engine.identity import scoring_settings

        return scoring_settings(self.run.run_cfg, self.run.device, ckpt.objective, self.mask_token_id)

    def journal_key(self, ckpt) -> str:
        from memaudit.engine.identity import journal_key

        datasets = {name: s.fingerprint for name, s in self.samples.items()}
        return journal_key(self.series.name, ckpt, datasets, self.inputs, self.settings(ckpt))

    def products_key(self, ckpt, dataset: str) -> str:
        from memaudit.engine.identity import products_key

        return products_key(ckpt.identity, self.samples[dataset].sha256, self.settings(ckpt))


@dataclass
class _Found:
    """What is stored for a checkpoint already: journaled probe results, cached products, and the data
    sets still to score (none when every probe came from the journal)."""

    record: CheckpointResult | None = None
    reused: dict = field(default_factory=dict)
    products: dict = field(default_factory=dict)  # data set of one shard -> its per-token products
    shards: dict = field(default_factory=dict)  # data set -> shard index -> probe -> per-sample columns
    shard_products: dict = field(default_factory=dict)  # data set -> shard index -> products needed whole
    panel_rows: dict | None = None  # a journaled checkpoint's per-sample columns, for the panel
    missing: list[str] = field(default_factory=list)  # data sets with shards left to score (by this process)

    def done(self, ctx: _SeriesContext) -> bool:
        return self.record is not None and set(self.reused) >= set(ctx.probe_keys)


def _series_context(run: _Run, series_cfg, checkpoints) -> _SeriesContext:
    """Tokenizer, samples, ledger and text products of one series; its SeriesResult joins the run."""
    ledger = _ledger_for(series_cfg)
    tokenizer, fingerprint = _series_tokenizer(series_cfg.display_name, checkpoints)
    return series_context(run, _series_result(series_cfg, ledger, fingerprint), tokenizer, ledger)


def series_context(run: _Run, series: SeriesResult, tokenizer, ledger: Ledger | None,
                   data: dict | None = None) -> _SeriesContext:
    """Samples and text products of a series audited with `tokenizer` (`data`: records in memory for a
    data set, by name, instead of its file); `series` joins the run."""
    from memaudit.engine.identity import digest
    from memaudit.inputs.data import check_field_types, load_samples
    from memaudit.inputs.text_products import text_products as make_text_products
    from memaudit.results.checks import validate_check_groups

    fingerprint = series.tokenizer
    samples = {d.name: load_samples(d.for_series(series.name), tokenizer, (data or {}).get(d.name))
               for d in run.config.datasets}
    _refuse_identical_roles(samples)
    check_field_types(run.field_types, samples, series.name)
    groups = {name: [(group, index, s.subset(index, group)) for group, index in s.groups()]
              for name, s in samples.items()}  # group_by: each group's samples, made once for the series
    validate_check_groups(run.config, series.name, [g for found in groups.values() for g, _, _ in found])
    for name, s in samples.items():
        for info in [s.info(), *(subset.info() for _, _, subset in groups[name])]:
            known = run.datasets.setdefault(info.name, info)
            if known.sha256 != info.sha256:  # another tokenizer, other tokens: keep both visible
                run.datasets[f"{info.name}@{series.name}"] = info
    run.series.append(series)
    run.ledgers[series.name] = ledger
    text_products, said = make_text_products(run.plan.checkpoint_probes, samples, tokenizer, fingerprint,
                                             run.run_cfg, run.cache.enabled,
                                             background=getattr(run.device, "type", "cpu") != "cpu")
    for key, value in said.items():
        run.said.setdefault(key, value)
    inputs = {"ledger": digest(ledger.model_dump(mode="json")) if ledger else None, "tokenizer": fingerprint,
              "text": {**said, "show_text": run.run_cfg.show_text, "redact": run.run_cfg.redact}}
    panel = None
    if run.plan.panel_probes and run.processes.is_main_process:
        from memaudit.engine.panel import Panel

        panel = run.panels[series.name] = Panel(samples, run.plan.panel_probes)
    return _SeriesContext(run, series, samples, text_products, ledger, tokenizer.mask_token_id, inputs, panel=panel,
                          groups=groups)


def _refuse_identical_roles(samples: dict) -> None:
    """A forget set whose tokens are the holdout set's would read as perfectly unlearned: refuse it."""
    by_role = {s.config.role: s for s in samples.values()}
    forget, holdout = by_role.get("forget"), by_role.get("holdout")
    if forget is not None and holdout is not None and forget.sha256 == holdout.sha256:
        raise ConfigError(f"Data sets '{forget.config.name}' (role forget) and '{holdout.config.name}' (role holdout) "
                          "hold the same tokens, so the unlearning audit could only say 'indistinguishable' "
                          "(perfect unlearning). The holdout set must be text the model never trained on.")


def _series_result(series_cfg, ledger: Ledger | None, tokenizer_fingerprint: str) -> SeriesResult:
    """The (still empty) result of one series."""
    from memaudit.inputs.families import family_of

    return SeriesResult(
        name=series_cfg.display_name,
        source=(f"hub:{series_cfg.hub}" if series_cfg.hub else f"hub-suite:{series_cfg.repos[0]}"
                if series_cfg.repos else f"local:{series_cfg.local}"),
        family=family_of(series_cfg.hub or (series_cfg.repos or [None])[0]).name,
        n_params=ledger.n_params if ledger else None, tokenizer=tokenizer_fingerprint,
        steps_per_epoch=series_cfg.steps_per_epoch or (ledger.steps_per_epoch if ledger else None),
        lab_run=ledger.run if ledger and ledger.run else None)


def _audit_series(run: _Run, series_cfg, checkpoints) -> bool:
    """Audit this process's share of one series' checkpoints; True when -x stopped the run. With several
    processes and fewer checkpoints than processes, every process takes part in every checkpoint instead,
    scoring its share of the shards (`sampled`)."""
    from memaudit.engine.distributed import gather, my_share

    ctx = _series_context(run, series_cfg, checkpoints)
    if run.opts.samples_out is not None and run.processes.is_main_process:  # the folder holds this series as audited
        from memaudit.engine.samples_out import prune

        prune(run.opts.samples_out, ctx.series.name, [c.name for c in checkpoints])
    run.emit(SeriesStarted(ctx.series.name, n_checkpoints=len(checkpoints),
                           tokens_per_checkpoint=sum(s.tokens.size for s in ctx.samples.values())))
    multi = run.processes.num_processes > 1
    ctx.sampled = multi and len(checkpoints) < run.processes.num_processes
    mine = list(range(len(checkpoints))) if ctx.sampled else my_share(run.processes, len(checkpoints))
    finished, stopped = [], False
    try:
        with contextlib.closing(_each_checkpoint(ctx, [checkpoints[i] for i in mine])) as results:
            for i, result in zip(mine, results):
                finished.append((i, result))
                run.emit(CheckpointFinished(ctx.series.name, result))
                if run.opts.fail_fast and (result.error or _fails_now(run.plan, ctx.series, result)):
                    stopped = True
                    if not multi:  # several processes must all reach the gathering below
                        break
    except KeyboardInterrupt:
        _collect(ctx, checkpoints, finished)  # what is done goes into the partial report
        raise
    _collect(ctx, checkpoints, gather(run.processes, finished) if multi and not ctx.sampled else finished)
    return any(gather(run.processes, [stopped])) if multi else stopped


def _each_checkpoint(ctx: _SeriesContext, checkpoints: list):
    """Each checkpoint's result, in order: read back from the journal, or scored and probed while the
    next checkpoint's model loads in the background."""
    from memaudit.engine.prefetch import ModelPrefetcher
    from memaudit.inputs.sources import evict_revision, load_model

    run, cfg = ctx.run, ctx.run.run_cfg

    def load(ckpt):
        return load_model(ckpt, cfg.dtype, run.device, cfg.trust_remote_code, run.opts.allow_pickle, cfg.device_map)

    with ModelPrefetcher(load) as models:
        upcoming = _lookup(ctx, checkpoints[0]) if checkpoints else None
        for n, ckpt in enumerate(checkpoints):
            run.emit(CheckpointStarted(ctx.series.name, ckpt.name))
            first = ctx.first_with.setdefault(ckpt.weights_key, ckpt)
            found = upcoming if first is ckpt else _lookup(ctx, ckpt)  # a duplicate reads its first's products
            nxt = checkpoints[n + 1] if n + 1 < len(checkpoints) else None

            def prefetch_next():  # the next model loads while this one is scored
                nonlocal upcoming
                upcoming = _lookup(ctx, nxt) if nxt else None
                if upcoming and upcoming.missing:
                    models.prefetch(nxt)

            if _agreed(ctx, found.done(ctx)):
                prefetch_next()
                if ctx.panel is not None:
                    ctx.panel.add(ckpt.name, ckpt.step, found.panel_rows)
                yield _from_journal(ctx, ckpt, found)
                continue
            result = _audit_one(ctx, ckpt, found, models, prefetch_next)
            if run.processes.num_processes == 1:  # with several, the main process records after gathering
                _check_inputs(ctx)
                run.journal.record(ctx.journal_key(ckpt), result, ctx.probe_keys)
            if run.opts.evict and ckpt.repo and result.error is None:
                evict_revision(ckpt)
            yield result


def _journaled_rows(ctx: _SeriesContext, ckpt) -> dict | None:
    """A checkpoint's per-sample columns (probe -> data set -> column) from the shard journal, or None when
    a shard is missing there."""
    from memaudit.engine.shards import joined

    rows: dict = {}
    for name, s in ctx.samples.items():
        shards = []
        for part in ctx.parts(name):
            columns = ctx.run.shards.get(ctx.shard_key(ckpt, name, part), ctx.row_probes(name), part.stop - part.start)
            if columns is None:
                return None
            shards.append(columns)
        for probe, values in joined(shards).items():
            rows.setdefault(probe, {})[name] = values
    return rows


def _check_inputs(ctx: _SeriesContext) -> None:
    """Before a checkpoint's results are journaled: every memory-mapped data file is as it was opened, and
    its tokens still hash to what the results are keyed by (InputChanged otherwise: nothing is stored)."""
    for s in ctx.samples.values():
        s.check_unchanged(rehash=True)


def _agreed(ctx: _SeriesContext, done: bool) -> bool:
    """Whether a checkpoint is done on every process (with `sampled`, all of them audit it together)."""
    from memaudit.engine.distributed import gather

    return all(gather(ctx.run.processes, [done])) if ctx.sampled else done


def _lookup(ctx: _SeriesContext, ckpt) -> _Found:
    """What the journal, the products cache and the shard journal hold for `ckpt` (a duplicate of an earlier
    checkpoint, same weights, reads that one's products), and which data sets this process must score."""
    record, reused = ctx.run.journal.get(ctx.journal_key(ckpt), ctx.probe_keys)
    if record is not None and ctx.run.opts.samples_out is not None:
        from memaudit.engine.samples_out import file_intact

        if not file_intact(ctx.run.opts.samples_out, record):  # no Parquet file, or not ours: compute it again
            record, reused = None, {}
    found = _Found(record, reused)
    source = ctx.first_with.get(ckpt.weights_key, ckpt)
    if found.done(ctx) and ctx.panel is not None:
        found.panel_rows = _journaled_rows(ctx, source)
        if found.panel_rows is None:  # the panel needs per-sample values the shard journal no longer has
            found = _Found()
    if found.done(ctx):
        return found
    for name, s in ctx.samples.items():
        parts = ctx.parts(name)
        if len(parts) == 1:  # a small data set: its per-token products are cached whole
            hit = ctx.run.cache.get(ctx.products_key(source, name), ctx.needed,
                                    (s.tokens.shape[0], s.tokens.shape[1] - 1)) if 0 in ctx.mine(1) else None
            if hit is not None:
                found.products[name] = hit
            elif 0 in ctx.mine(1):
                found.missing.append(name)
            continue
        probes, done = ctx.row_probes(name), found.shards.setdefault(name, {})
        journaled = () if ctx.whole else ctx.mine(len(parts))  # whole per-token products are not kept at this scale
        for i in journaled:
            columns = ctx.run.shards.get(ctx.shard_key(source, name, parts[i]), probes, parts[i].stop - parts[i].start)
            if columns is not None:
                done[i] = columns
        if any(i not in done for i in ctx.mine(len(parts))):
            found.missing.append(name)
    return found


def _audit_one(ctx: _SeriesContext, ckpt, found: _Found, models, prefetch_next) -> CheckpointResult:
    """Load (or take the prefetched model), score what is missing, run the probes; a checkpoint that
    cannot be loaded or scored becomes a result with its error. With `sampled`, every process scores its
    shards and they are gathered before the probes run."""
    model, load_s, scored, error = None, 0.0, (0, 0.0, None), None
    try:
        try:
            model, load_s = models.get(ckpt) if found.missing else (None, 0.0)
        finally:
            prefetch_next()
        scored = _score(ctx, ckpt, found, model)
    except _checkpoint_errors() as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        del model
        release_device(ctx.run.device)
        trim_heap()
    if ctx.sampled:
        scored, error = _gather_shards(ctx, found, scored, error)
    if error is not None:
        return CheckpointResult(name=ckpt.name, step=ckpt.step, sha=ckpt.sha, location=ckpt.location, error=error)
    result, rows = _probe_checkpoint(ctx, ckpt, found, scored, load_s)
    if ctx.panel is not None:
        ctx.panel.add(ckpt.name, ckpt.step, rows)
    if ctx.run.opts.samples_out is not None and ctx.run.processes.is_main_process:
        from memaudit.atomic import OutputError
        from memaudit.engine.samples_out import export

        try:
            result = export(ctx.run.opts.samples_out, ctx.series.name, result, ctx.samples, rows,
                            {name: ctx.parts(name) for name in ctx.samples},
                            {"config_hash": ctx.run.config_hash, "result_key": ctx.journal_key(ckpt)},
                            {p.name: p.columns for p in ctx.run.plan.checkpoint_probes})
        except OutputError as e:  # the results stand; the report says which file is missing
            ctx.run.unwritten.append(f"--samples-out of {ctx.series.name}/{ckpt.name}: {e}")
    return result


def _score(ctx: _SeriesContext, ckpt, found: _Found, model) -> tuple[int, float, int | None]:
    """Score this process's missing shards of every data set: a data set of one shard whole (its per-token
    products cached), a larger one shard by shard, each reduced to its probes' per-sample columns, journaled
    and dropped. Returns (forward batches, forward seconds, parameters)."""
    from memaudit.engine.shards import shard_rows
    from memaudit.inputs.sources import count_parameters, n_parameters

    run = ctx.run
    if not found.missing:
        return 0, 0.0, count_parameters(ckpt)
    t, batches = time.perf_counter(), 0
    for name in found.missing:
        s, parts = ctx.samples[name], ctx.parts(name)
        if len(parts) == 1:
            s.check_unchanged()
            found.products[name], b = _score_tokens(ctx, model, s.tokens)
            s.check_unchanged(rehash=True)  # what was scored is what the products are keyed by
            run.cache.put(ctx.products_key(ckpt, name), found.products[name])
            batches += b
            continue
        done, todo = found.shards.setdefault(name, {}), list(ctx.mine(len(parts)))
        started, n_done = time.perf_counter(), 0
        for k, i in enumerate(todo):
            part = parts[i]
            if i not in done or ctx.whole:
                trim_heap()  # the heap's free holes (left by loading, or the last shard) leave our memory first
                s.check_unchanged()
                products, b = _score_tokens(ctx, model, s.tokens[part])  # (shard samples, seq_len - 1) each
                batches += b
                arguments = probe_arguments(s, products, ctx.text_products[name], ckpt, ctx.ledger, part)
                done[i] = shard_rows(run.plan.checkpoint_probes, arguments)
                s.check_unchanged()
                run.shards.put(ctx.shard_key(ckpt, name, part), done[i])
                if ctx.whole:
                    found.shard_products.setdefault(name, {})[i] = {p: products[p] for p in ctx.whole}
                n_done += part.stop - part.start
                release_pages(s.tokens)  # a memory-mapped file's pages read for this shard leave our memory
            elapsed = time.perf_counter() - started
            run.emit(ShardScored(name, done=k + 1, total=len(todo), samples=n_done,
                                 remaining=sum(parts[j].stop - parts[j].start for j in todo[k + 1:]), seconds=elapsed))
    return batches, time.perf_counter() - t, n_parameters(model)


def _score_tokens(ctx: _SeriesContext, model, tokens) -> tuple[dict, int]:
    """The forward products of `tokens` (samples, seq_len) and the batches run; the batch size the first call
    chooses (when the yaml fixes none) is kept for the rest of the run."""
    from memaudit.engine.forward import score_datasets

    run, cfg = ctx.run, ctx.run.run_cfg
    scored, batches, run.batch_size = score_datasets(
        model, {"": tokens}, ctx.needed, run.device, batch_size=cfg.batch_size or run.batch_size,
        adaptive=cfg.batch_size is None, device_map=cfg.device_map, on_tokens=lambda n: run.emit(TokensScored(n)),
        mask_token_id=ctx.mask_token_id, mask_fraction=cfg.mask_fraction, mask_seed=cfg.mask_seed)
    if "head" not in run.said:
        from memaudit.engine.forward import fused_head, to_device

        run.said["head"] = fused_head(model, to_device(tokens[:1], model.get_input_embeddings().weight.device))[2]
    run.said.setdefault("attention", getattr(model.config, "_attn_implementation", None))
    return scored[""], batches


def _gather_shards(ctx: _SeriesContext, found: _Found, scored: tuple, error: str | None):
    """Every process's shards (and products of one-shard data sets), errors and batch counts, on every process."""
    from memaudit.engine.distributed import gather

    mine = {"shards": found.shards, "shard_products": found.shard_products, "products": found.products,
            "scored": scored, "error": error}
    everyone = gather(ctx.run.processes, [mine])
    for theirs in everyone:
        for key in ("shards", "shard_products"):
            for name, by_index in theirs[key].items():
                getattr(found, key).setdefault(name, {}).update(by_index)
        found.products.update(theirs["products"])
    errors = [e["error"] for e in everyone if e["error"] is not None]
    batches = sum(e["scored"][0] for e in everyone)
    return (batches, max(e["scored"][1] for e in everyone), scored[2]), (errors[0] if errors else None)


def _probe_checkpoint(ctx: _SeriesContext, ckpt, found: _Found, scored: tuple, load_s: float):
    """Run the probes the journal lacks on the scored (or cached) data sets; returns the result and every
    rows function's per-sample columns (probe -> data set -> columns), for `--samples-out`."""
    from memaudit.engine.shards import joined, joined_products, shard_rows

    run = ctx.run
    batches, forward_s, n_params = scored
    arguments, rows = {}, {}
    for name, s in ctx.samples.items():
        parts = ctx.parts(name)
        if len(parts) == 1:
            products = found.products[name]
            columns = shard_rows(run.plan.checkpoint_probes,
                                 probe_arguments(s, products, ctx.text_products[name], ckpt, ctx.ledger))
            if run.plan.panel_probes:  # journaled like a shard, so the panel of a rerun reads it back
                run.shards.put(ctx.shard_key(ckpt, name, parts[0]), columns)
        else:
            columns = joined([found.shards[name].pop(i) for i in range(len(parts))])  # the shards' copies go
            products = joined_products([found.shard_products[name][i] for i in range(len(parts))]) if ctx.whole else {}
        arguments[name] = probe_arguments(s, products, ctx.text_products[name], ckpt, ctx.ledger)
        for probe, values in columns.items():
            rows.setdefault(probe, {})[name] = values
        for group, index, subset in ctx.groups.get(name, ()):  # group_by: the same probes on each group's samples
            arguments[group] = probe_arguments(subset, {k: v[index] for k, v in products.items()},
                                               _text_subset(ctx.text_products[name], index), ckpt, ctx.ledger)
            for probe, values in columns.items():
                rows.setdefault(probe, {})[group] = {col: v[index] for col, v in values.items()}
    computed = call_checkpoint_probes(run.plan.checkpoint_probes, arguments, ckpt, ctx.ledger, skip=found.reused,
                                      rows=rows)
    result = CheckpointResult(
        name=ckpt.name, step=ckpt.step, tokens_seen=ckpt.tokens, objective=ckpt.objective, sha=ckpt.sha,
        location=ckpt.location, n_params=n_params, load_s=round(load_s, 4), forward_s=round(forward_s, 4),
        n_tokens=int(sum(s.tokens.shape[0] * (s.tokens.shape[1] - 1) for s in ctx.samples.values())),
        n_forward_batches=batches, from_cache=not batches,
        results={name: found.reused.get(name, computed.get(name)) for name in ctx.probe_keys},
        probes_from_journal=list(found.reused))
    return result, rows


def _text_subset(text_products: dict, index) -> dict:
    """A data set's text products (per-sample arrays, or `text_of(i)`) for the samples at `index`."""
    return {k: (lambda i, f=v: f(int(index[i]))) if callable(v) else v[index] if v is not None else None
            for k, v in text_products.items()}


def _from_journal(ctx: _SeriesContext, ckpt, found: _Found) -> CheckpointResult:
    """A checkpoint every probe of which is in the journal: its record, with this run's location and probes."""
    return found.record.model_copy(update={
        "from_journal": True, "from_cache": True, "n_forward_batches": 0, "load_s": 0.0, "forward_s": 0.0,
        "location": ckpt.location, "results": {name: found.reused[name] for name in ctx.probe_keys},
        "probes_from_journal": list(ctx.probe_keys)})


def _collect(ctx: _SeriesContext, checkpoints: list, pairs) -> None:
    """Put finished checkpoints into the series in step order, marking duplicates; with several
    processes the main one journals them here."""
    run, series = ctx.run, ctx.series
    seen: dict[str, str] = {}
    in_panel = set(ctx.panel.checkpoints) if ctx.panel is not None else set()
    for i, result in sorted(pairs, key=lambda pair: pair[0]):
        ckpt = checkpoints[i]
        if ctx.panel is not None and ckpt.name not in in_panel and result.error is None:  # another process's
            rows = _journaled_rows(ctx, ctx.first_with.get(ckpt.weights_key, ckpt))
            if rows is not None:
                ctx.panel.add(ckpt.name, ckpt.step, rows)
        first = seen.setdefault(ckpt.weights_key, ckpt.name)
        result.duplicate_of = first if first != ckpt.name else None
        series.checkpoints.append(result)
        if series.n_params is None:
            series.n_params = result.n_params
        if run.processes.num_processes > 1 and run.processes.is_main_process and not result.from_journal:
            _check_inputs(ctx)
            run.journal.record(ctx.journal_key(ckpt), result, ctx.probe_keys)


def _series_tokenizer(series_name: str, checkpoints):
    """The tokenizer every checkpoint of the series shares, and its fingerprint.

    Checkpoints whose tokenizer.json is byte-identical to the first one's are not loaded; any other
    is loaded and compared by what decides tokenization."""
    from memaudit.inputs.sources import (
        load_tokenizer,
        tokenizer_file_digest,
        tokenizer_fingerprint,
    )

    first = checkpoints[0]
    tokenizer = load_tokenizer(first)
    fingerprint, digest = tokenizer_fingerprint(tokenizer), tokenizer_file_digest(first)
    for ckpt in checkpoints[1:]:
        if digest is not None and tokenizer_file_digest(ckpt) == digest:
            continue
        fp = tokenizer_fingerprint(load_tokenizer(ckpt))
        if fp != fingerprint:
            raise ConfigError(
                f"Series '{series_name}': the tokenizer of {ckpt.name} differs from that of {first.name} "
                f"(fingerprints {fp} vs {fingerprint}). Every checkpoint of a series must share one tokenizer; "
                "split them into separate series.")
    return tokenizer, fingerprint


def _fails_now(plan: Plan, series: SeriesResult, result: CheckpointResult) -> bool:
    """For -x: does a check that concerns this checkpoint alone fail already?"""
    mine = [c for c in plan.config.checks if c.at in ("each", result.name)
            and (c.series is None or c.series == series.name)]
    probe_view = SeriesResult(**{**series.model_dump(), "checkpoints": [result.model_dump()]})
    return any(not r.passed for r in evaluate_checks(mine, [probe_view], plan.probes, plan.config.datasets))


def _ledger_for(series_cfg) -> Ledger | None:
    if series_cfg.ledger is not None:
        if not Path(series_cfg.ledger).is_file():
            raise ConfigError(f"Series '{series_cfg.display_name}': no ledger at '{series_cfg.ledger}'. "
                              "Fix 'ledger' in the yaml or remove it.")
        return read_ledger(series_cfg.ledger)
    return _ledger_file(series_cfg.local) if series_cfg.local else None


def _ledger_file(folder: Path | None) -> Ledger | None:
    path = Path(folder) / "ledger.json" if folder else None
    return read_ledger(path) if path and path.is_file() else None
