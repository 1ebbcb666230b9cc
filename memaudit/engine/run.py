"""The loop: series -> checkpoints -> one forward pass -> probes -> series probes -> checks -> report."""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from pathlib import Path

from memaudit.engine.checkpoint import agreed, audit_checkpoint, from_journal, journaled_rows, lookup
from memaudit.engine.plan import Plan, RunOptions
from memaudit.engine.registry import call_series_probes, jsonable
from memaudit.engine.series import SeriesContext, open_series
from memaudit.engine.state import RunState, now
from memaudit.errors import ConfigError, ExitCode
from memaudit.inputs.config import apply_overrides
from memaudit.inputs.twins import check_resolved
from memaudit.results.checks import compare_to_baseline, evaluate_checks, validate_check_targets
from memaudit.results.events import (CheckpointCollected, CheckpointFinished, CheckpointStarted, RowsScored,
                                     RunFinished, SeriesStarted, Subscriber)
from memaudit.results.replicates import replicate_groups
from memaudit.results.schema import AuditReport, CheckpointResult, ProbeInfo, Provenance, SeriesResult
from memaudit.version import __version__


def run_audit(plan: Plan, config_hash: str, opts: RunOptions, on_event: Subscriber | None = None) -> AuditReport:
    """Run every probe on every checkpoint of every series and return the report; `on_event` receives the run's
    events as they happen (memaudit.results.events).

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


def run_series_probes(run: RunState) -> None:
    """Every series probe on every series of the run, on its checkpoints that have no error."""
    for series in run.series:
        series.results = call_series_probes(run.plan.series_probes, {
            "checkpoints": [c for c in series.checkpoints if c.error is None],
            "datasets": [d for key, d in run.datasets.items() if key == d.name and d.group_of is None],  # the yaml's
            "series": series, "panel": run.panels.get(series.name), "panels": run.panels,
            "series_configs": {s.display_name: s for s in run.config.series},
            "ledger": run.ledgers[series.name], "ledgers": run.ledgers, "all_series": run.series})


def start_in_memory(plan: Plan, command: str) -> RunState:
    """A run whose checkpoints are models already in memory (memaudit.api.LiveSeries): this process alone, no
    products cache and no journal (weights in memory have no identity to key them by)."""
    from types import SimpleNamespace

    from memaudit.engine.journal import Journal
    from memaudit.engine.products import ProductsCache
    from memaudit.engine.shards import ShardJournal

    return RunState(plan, plan.config, RunOptions(use_cache=False, command=command), lambda *a, **k: None, None,
                    SimpleNamespace(num_processes=1, is_main_process=True, process_index=0), [],
                    ProductsCache(None, enabled=False), Journal(None, enabled=False), ShardJournal(None, enabled=False))


def finish(run: RunState, config_hash: str) -> AuditReport:
    """Series probes, checks and the report of what the run has so far."""
    run_series_probes(run)
    return _report(run, config_hash, interrupted=False)


def _start(plan: Plan, opts: RunOptions, on_event: Subscriber | None) -> RunState:
    """Validate the command line's values, pick the device, resolve every series and check the checks'
    targets: everything that can fail on bad input fails here, before a model loads."""
    from memaudit.engine.distributed import process_state
    from memaudit.engine.forward import keep_compiled_kernels, pick_device
    from memaudit.engine.journal import Journal
    from memaudit.engine.products import ProductsCache
    from memaudit.engine.shards import ShardJournal
    from memaudit.inputs.sources import check_series_name_clash, resolve_series, set_hub_policy

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
    subscriber = (on_event or (lambda *a, **k: None)) if processes.is_main_process else (lambda *a, **k: None)
    set_hub_policy(config.run.hub_retries, config.run.hub_backoff_s, config.run.hub_timeout_s)
    resolved = [(s, resolve_series(s, allow_pickle=opts.allow_pickle)) for s in config.series]
    for _, checkpoints in resolved:
        check_series_name_clash(checkpoints)
    validate_check_targets(config, {s.display_name: [c.name for c in cs] for s, cs in resolved})
    check_resolved(resolved)
    return RunState(plan, config, opts, subscriber, device, processes, resolved,
                    ProductsCache(config.run.cache_dir, enabled=opts.use_cache),
                    Journal(config.run.cache_dir, enabled=opts.use_cache),
                    ShardJournal(config.run.cache_dir, enabled=opts.use_cache))


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


def _report(run: RunState, config_hash: str, interrupted: bool) -> AuditReport:
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
    if status == "error" and any((c.error or "").startswith("SourceUnavailable") for s in run.series
                                 for c in s.checkpoints):
        exit_code = ExitCode.SOURCE_UNAVAILABLE  # a checkpoint could not be had (gone, unreachable): exit 4
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
        started_at=run.started, finished_at=now(), duration_s=round(time.perf_counter() - run.t0, 3))
    probes = [ProbeInfo(name=p.name, kind=p.kind, source=p.source, products=p.products, params=jsonable(p.params),
                        metrics=p.metrics, show=list(p.show), columns=p.columns) for p in run.plan.probes]
    return AuditReport(status=status, exit_code=int(exit_code), provenance=provenance,
                       datasets=list(run.datasets.values()), probes=probes, series=run.series, checks=checks,
                       comparison=comparison, unwritten=run.unwritten,
                       replicates=replicate_groups(run.series), text_included=run.said.get("text_included", False))


def _audit_series(run: RunState, series_cfg, checkpoints) -> bool:
    """Audit this process's share of one series' checkpoints; True when -x stopped the run. With several
    processes and fewer checkpoints than processes, every process takes part in every checkpoint instead,
    scoring its share of the shards (`sampled`)."""
    from memaudit.engine.distributed import gather, my_share

    ctx = open_series(run, series_cfg, checkpoints)
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
                run.emit(CheckpointFinished(ctx.series.name, result, checkpoints[i]))
                if run.opts.fail_fast and (result.error or _fails_now(run.plan, ctx.series, result)):
                    stopped = True
                    if not multi:  # several processes must all reach the gathering below
                        break
    except KeyboardInterrupt:
        _collect(ctx, checkpoints, finished)  # what is done goes into the partial report
        raise
    _collect(ctx, checkpoints, gather(run.processes, finished) if multi and not ctx.sampled else finished)
    return any(gather(run.processes, [stopped])) if multi else stopped


def _each_checkpoint(ctx: SeriesContext, checkpoints: list):
    """Each checkpoint's result, in order: read back from the journal, or scored and probed while the
    next checkpoint's model loads in the background."""
    from memaudit.engine.prefetch import ModelPrefetcher
    from memaudit.inputs.sources import available, evict_revision, load_model

    run, cfg = ctx.run, ctx.run.run_cfg

    def load(ckpt):
        return load_model(ckpt, cfg.dtype, run.device, cfg.trust_remote_code, run.opts.allow_pickle, cfg.device_map)

    ready = available(checkpoints)
    with ModelPrefetcher(load) as models:
        upcoming = lookup(ctx, ready[0]) if ready else None
        for ckpt in checkpoints:
            run.emit(CheckpointStarted(ctx.series.name, ckpt.name))
            if ckpt.unavailable is not None:  # its revision is gone or its server failed: an error, not the run's end
                yield CheckpointResult(name=ckpt.name, step=ckpt.step, sha=ckpt.sha, location=ckpt.location,
                                       error=f"SourceUnavailable: {ckpt.unavailable}")
                continue
            first = ctx.first_with.setdefault(ckpt.weights_key, ckpt)
            found = upcoming if first is ckpt else lookup(ctx, ckpt)  # a duplicate reads its first's products
            n = ready.index(ckpt)
            nxt = ready[n + 1] if n + 1 < len(ready) else None

            def prefetch_next():  # the next model loads while this one is scored
                nonlocal upcoming
                upcoming = lookup(ctx, nxt) if nxt else None
                if upcoming and upcoming.missing:
                    models.prefetch(nxt)

            if agreed(ctx, found.done(ctx)):
                prefetch_next()
                if found.panel_rows is not None:
                    run.emit(RowsScored(ctx.series.name, ckpt, found.panel_rows, fresh=False))
                yield from_journal(ctx, ckpt, found)
                continue
            result = audit_checkpoint(ctx, ckpt, found, models, prefetch_next)
            if run.opts.evict and ckpt.repo and result.error is None:
                models.after_loads(evict_revision, ckpt)  # on the loading thread: never during a download
            yield result


def _collect(ctx: SeriesContext, checkpoints: list, pairs) -> None:
    """Put finished checkpoints into the series in step order, marking duplicates; with several processes, each
    is announced collected (CheckpointCollected: the journal records it then)."""
    run, series = ctx.run, ctx.series
    seen: dict[str, str] = {}
    in_panel = set(ctx.panel.checkpoints) if ctx.panel is not None else set()
    for i, result in sorted(pairs, key=lambda pair: pair[0]):
        ckpt = checkpoints[i]
        if ctx.panel is not None and ckpt.name not in in_panel and result.error is None:  # another process's
            rows = journaled_rows(ctx, ctx.first_with.get(ckpt.weights_key, ckpt))
            if rows is not None:
                run.emit(RowsScored(series.name, ckpt, rows, fresh=False))
        first = seen.setdefault(ckpt.weights_key, ckpt.name)
        result.duplicate_of = first if first != ckpt.name else None
        series.checkpoints.append(result)
        if series.n_params is None:
            series.n_params = result.n_params
        if run.processes.num_processes > 1:  # the main process has every process's result now: journaled
            run.emit(CheckpointCollected(series.name, result, ckpt))


def _fails_now(plan: Plan, series: SeriesResult, result: CheckpointResult) -> bool:
    """For -x: does a check that concerns this checkpoint alone fail already?"""
    mine = [c for c in plan.config.checks if c.at in ("each", result.name)
            and (c.series is None or c.series == series.name)]
    probe_view = SeriesResult(**{**series.model_dump(), "checkpoints": [result.model_dump()]})
    return any(not r.passed for r in evaluate_checks(mine, [probe_view], plan.probes, plan.config.datasets))


