"""The loop: series -> checkpoints -> one forward pass -> probes -> series probes -> checks -> report."""

from __future__ import annotations

import datetime as dt
import functools
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from memaudit import __version__
from memaudit.checks import (
    compare_to_baseline,
    evaluate_checks,
    validate_check_targets,
    validate_checks,
)
from memaudit.config import AuditConfig, RunConfig, apply_overrides
from memaudit.errors import ConfigError, ExitCode, MemauditError
from memaudit.ledger import Ledger, read_ledger
from memaudit.registry import ProbeDef, collect, select, standard_probe_dir
from memaudit.schema import (
    AuditReport,
    CheckpointResult,
    DatasetInfo,
    ProbeInfo,
    Provenance,
    SeriesResult,
)

Event = Callable[..., None]


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


def make_plan(config: AuditConfig, keyword: str | None = None) -> Plan:
    """Collect the standard probes and the yaml's probe paths, select, and validate the checks."""
    keywords = [("the yaml's select:", config.select), ("-k", keyword)]
    probes = select(collect([standard_probe_dir(), *config.probe_paths]), config.probes, keywords)
    validate_checks(config, probes, selected_by_keyword=bool(keyword or config.select))
    return Plan(config, probes)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class _State:
    """What a run has produced so far (so an interrupted run can still report it)."""

    series: list[SeriesResult] = field(default_factory=list)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    ledgers: dict[str, Ledger | None] = field(default_factory=dict)
    device: str | None = None
    tagger: str | None = None
    identifiers: str | None = None
    journal: Any = None
    text_included: bool = False
    processes: Any = None  # accelerate's PartialState
    batch_size: int | None = None  # the batch size chosen when the user fixed none


def run_audit(plan: Plan, config_hash: str, opts: RunOptions, on_event: Event | None = None) -> AuditReport:
    """Run every probe on every checkpoint of every series and return the report.

    User errors (bad data, missing revision) raise MemauditError; Ctrl-C returns a partial
    report with status `interrupted`.
    """
    import torch
    import transformers

    from memaudit.distributed import process_state
    from memaudit.forward import pick_device
    from memaudit.journal import Journal
    from memaudit.products import ProductsCache
    from memaudit.sources import check_series_name_clash, resolve_series

    config = apply_overrides(plan.config, tolerance=opts.tolerance, batch_size=opts.batch_size, dtype=opts.dtype,
                             device=opts.device, device_map=opts.device_map, show_text=opts.show_text or None)
    run_cfg = config.run
    emit = on_event or (lambda *a, **k: None)
    started, t0 = _now(), time.perf_counter()
    state = _State()
    device = pick_device(run_cfg.device)
    state.processes = process_state(run_cfg.device)
    state.device = str(device)
    if not state.processes.is_main_process:  # progress and output belong to the main process
        emit = lambda *a, **k: None  # noqa: E731
    resolved = [(s, resolve_series(s, allow_pickle=opts.allow_pickle)) for s in config.series]
    for _, checkpoints in resolved:
        check_series_name_clash(checkpoints)
    validate_check_targets(config, {s.display_name: [c.name for c in cs] for s, cs in resolved})
    cache = ProductsCache(run_cfg.cache_dir, enabled=opts.use_cache)
    state.journal = Journal(run_cfg.cache_dir, enabled=opts.use_cache)
    status = "passed"
    stopped_early = False
    try:
        for series_cfg, checkpoints in resolved:
            stopped_early = _run_series(plan, series_cfg, checkpoints, run_cfg, device, cache, state, opts, emit)
            if stopped_early:
                break
    except KeyboardInterrupt:
        status = "interrupted"

    if status != "interrupted":
        for series in state.series:
            _run_series_probes(plan, series, list(state.datasets.values()), state.ledgers[series.name], state.series)
    checks = evaluate_checks(config.checks, state.series, plan.probes, config.datasets)
    if opts.baseline is not None:
        checks += compare_to_baseline(state.series, opts.baseline, config.regressions, opts.tolerance, plan.probes)
    if status != "interrupted":
        errored = any(c.error for s in state.series for c in s.checkpoints)
        status = "error" if errored else "failed" if any(not c.passed for c in checks) else "passed"
    exit_code = {"passed": ExitCode.OK, "failed": ExitCode.CHECKS_FAILED, "error": ExitCode.CHECKS_FAILED,
                 "interrupted": ExitCode.USAGE_ERROR}[status]
    provenance = Provenance(
        memaudit_version=__version__, torch_version=torch.__version__,
        transformers_version=transformers.__version__, python_version=platform.python_version(),
        platform=platform.platform(terse=True), device=state.device, dtype=run_cfg.dtype,
        batch_size=run_cfg.batch_size or state.batch_size, batch_size_auto=run_cfg.batch_size is None,
        processes=state.processes.num_processes, device_map=run_cfg.device_map, seed=run_cfg.seed,
        tagger=state.tagger, identifiers=state.identifiers,
        masking=f"fraction {run_cfg.mask_fraction}, seed {run_cfg.mask_seed}", config_path=opts.config_path,
        config_hash=config_hash, command=opts.command or " ".join(sys.argv), started_at=started,
        finished_at=_now(), duration_s=round(time.perf_counter() - t0, 3))
    return AuditReport(
        status=status, exit_code=int(exit_code), provenance=provenance,
        datasets=list(state.datasets.values()),
        probes=[ProbeInfo(name=p.name, kind=p.kind, source=p.source, products=p.products,
                          params=_jsonable(p.params), metrics=p.metrics, show=list(p.show)) for p in plan.probes],
        series=state.series, checks=checks, text_included=state.text_included)


@dataclass
class _SeriesContext:
    """What every checkpoint of one series is audited with, and the keys its results are stored under."""

    plan: Plan
    series: SeriesResult
    run_cfg: RunConfig
    device: Any
    cache: Any  # ProductsCache
    samples: dict  # data set name -> Samples
    text_products: dict  # data set name -> {product: value}
    ledger: Ledger | None
    mask_token_id: int | None
    inputs: dict  # the series-wide inputs a journal record depends on (see memaudit.identity)

    @property
    def needed(self) -> set[str]:
        return self.plan.products | {"hits", "logprobs"}

    @functools.cached_property
    def probe_keys(self) -> dict[str, str]:
        from memaudit.identity import probe_fingerprint

        return {p.name: probe_fingerprint(p.fn, p.params) for p in self.plan.checkpoint_probes}

    def settings(self, ckpt) -> dict:
        from memaudit.identity import scoring_settings

        return scoring_settings(self.run_cfg, self.device, ckpt.objective, self.mask_token_id)

    def journal_key(self, ckpt) -> str:
        from memaudit.identity import journal_key

        datasets = {name: s.fingerprint for name, s in self.samples.items()}
        return journal_key(self.series.name, ckpt, datasets, self.inputs, self.settings(ckpt))

    def products_key(self, ckpt, dataset: str) -> str:
        from memaudit.identity import products_key

        return products_key(ckpt.identity, self.samples[dataset].sha256, self.settings(ckpt))


@dataclass
class _Found:
    """What is stored for a checkpoint already: journaled probe results, cached products, and the data
    sets still to score (none when every probe came from the journal)."""

    record: CheckpointResult | None = None
    reused: dict = field(default_factory=dict)
    products: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def done(self, ctx: _SeriesContext) -> bool:
        return self.record is not None and set(self.reused) >= set(ctx.probe_keys)


def _series_context(plan, series_cfg, checkpoints, run_cfg, device, cache, state: _State) -> _SeriesContext:
    """Tokenizer, samples, ledger and text products of one series; its SeriesResult joins the state."""
    from memaudit.data import load_samples
    from memaudit.families import family_of
    from memaudit.identity import digest
    from memaudit.text_products import text_products as make_text_products

    ledger = _ledger_for(series_cfg)
    tokenizer, fingerprint = _series_tokenizer(series_cfg.display_name, checkpoints)
    samples = {d.name: load_samples(d.for_series(series_cfg.display_name), tokenizer) for d in plan.config.datasets}
    for s in samples.values():
        info = s.info()
        known = state.datasets.setdefault(info.name, info)
        if known.sha256 != info.sha256:  # another tokenizer, other tokens: keep both visible
            state.datasets[f"{info.name}@{series_cfg.display_name}"] = info
    series = SeriesResult(
        name=series_cfg.display_name,
        source=(f"hub:{series_cfg.hub}" if series_cfg.hub else f"hub-suite:{series_cfg.repos[0]}"
                if series_cfg.repos else f"local:{series_cfg.local}"),
        family=family_of(series_cfg.hub or (series_cfg.repos or [None])[0]).name,
        n_params=ledger.n_params if ledger else None, tokenizer=fingerprint,
        steps_per_epoch=series_cfg.steps_per_epoch or (ledger.steps_per_epoch if ledger else None),
        lab_run=ledger.run if ledger and ledger.run else None)
    state.series.append(series)
    state.ledgers[series.name] = ledger
    text_products, said = make_text_products(plan.checkpoint_probes, samples, tokenizer, fingerprint, run_cfg,
                                             cache.enabled)
    state.tagger = state.tagger or said.get("tagger")
    state.identifiers = state.identifiers or said.get("identifiers")
    state.text_included = state.text_included or said.get("text_included", False)
    inputs = {"ledger": digest(ledger.model_dump(mode="json")) if ledger else None, "tokenizer": fingerprint,
              "text": {**said, "show_text": run_cfg.show_text, "redact": run_cfg.redact}}
    return _SeriesContext(plan, series, run_cfg, device, cache, samples, text_products, ledger,
                          tokenizer.mask_token_id, inputs)


def _run_series(plan, series_cfg, checkpoints, run_cfg, device, cache, state: _State, opts: RunOptions,
                emit) -> bool:
    """Audit one series; return True when -x stopped the run."""
    from memaudit.distributed import gather, my_share
    from memaudit.prefetch import ModelPrefetcher
    from memaudit.sources import evict_revision, load_model

    ctx = _series_context(plan, series_cfg, checkpoints, run_cfg, device, cache, state)
    series = ctx.series
    emit("series", name=series.name, n_checkpoints=len(checkpoints),
         tokens_per_checkpoint=sum(s.tokens.size for s in ctx.samples.values()))
    CHECKPOINT_ERRORS = _checkpoint_errors()
    first_with: dict[str, Any] = {}  # weights -> first checkpoint that had them

    def lookup(ckpt) -> _Found:
        """What the journal and the products cache hold for `ckpt`; a duplicate of an earlier checkpoint
        (same weights) reads that one's products."""
        record, reused = state.journal.get(ctx.journal_key(ckpt), ctx.probe_keys)
        found = _Found(record, reused)
        if not found.done(ctx):
            found.products, found.missing = _cached_products(ctx, first_with.get(ckpt.weights_key, ckpt))
        return found

    def load(ckpt):
        return load_model(ckpt, run_cfg.dtype, device, run_cfg.trust_remote_code, opts.allow_pickle,
                          run_cfg.device_map)

    mine = my_share(state.processes, len(checkpoints))  # all of them in a one-process run
    multi = state.processes.num_processes > 1
    finished: list[tuple[int, CheckpointResult]] = []

    def collect(pairs) -> None:
        """Put finished checkpoints into the series in step order, marking duplicates."""
        seen: dict[str, str] = {}
        for i, result in sorted(pairs, key=lambda pair: pair[0]):
            ckpt = checkpoints[i]
            first = seen.setdefault(ckpt.weights_key, ckpt.name)
            result.duplicate_of = first if first != ckpt.name else None
            series.checkpoints.append(result)
            if series.n_params is None:
                series.n_params = result.n_params
            if multi and state.processes.is_main_process and not result.from_journal:
                state.journal.record(ctx.journal_key(ckpt), result, ctx.probe_keys)

    def audit(ckpt, found: _Found, models, prefetch_next) -> CheckpointResult:
        """Load (or take the prefetched model), score what is missing, run the probes; errors stay here."""
        model = None
        try:
            try:
                model, load_s = models.get(ckpt) if found.missing else (None, 0.0)
            finally:
                prefetch_next()
            return _audit_checkpoint(ctx, ckpt, found, model, load_s, emit, state)
        except CHECKPOINT_ERRORS as e:
            return CheckpointResult(name=ckpt.name, step=ckpt.step, sha=ckpt.sha, location=ckpt.location,
                                    error=f"{type(e).__name__}: {e}")
        finally:
            del model
            _release_memory(device)

    stopped = False
    try:
        with ModelPrefetcher(load) as models:
            upcoming = lookup(checkpoints[mine[0]]) if mine else None
            for n, i in enumerate(mine):
                ckpt = checkpoints[i]
                emit("checkpoint", name=ckpt.name)
                first = first_with.setdefault(ckpt.weights_key, ckpt)
                found = lookup(ckpt) if first is not ckpt else upcoming
                nxt = checkpoints[mine[n + 1]] if n + 1 < len(mine) else None

                def prefetch_next():  # the next model loads while this one is scored
                    nonlocal upcoming
                    upcoming = lookup(nxt) if nxt else None
                    if upcoming and upcoming.missing:
                        models.prefetch(nxt)

                if found.done(ctx):
                    result = _from_journal(ctx, ckpt, found)
                    prefetch_next()
                else:
                    result = audit(ckpt, found, models, prefetch_next)
                    if not multi:  # with several processes the main one records after gathering
                        state.journal.record(ctx.journal_key(ckpt), result, ctx.probe_keys)
                    if opts.evict and ckpt.repo and result.error is None:
                        evict_revision(ckpt)
                finished.append((i, result))
                emit("checkpoint_done", result=result)
                if opts.fail_fast and (result.error or _fails_now(plan, series, result)):
                    stopped = True
                    if not multi:  # several processes must all reach the gathering below
                        break
    except KeyboardInterrupt:
        collect(finished)  # what is done goes into the partial report
        raise
    collect(gather(state.processes, finished) if multi else finished)
    return any(gather(state.processes, [stopped])) if multi else stopped


def _from_journal(ctx: _SeriesContext, ckpt, found: _Found) -> CheckpointResult:
    """A checkpoint every probe of which is in the journal: its record, with this run's location and probes."""
    return found.record.model_copy(update={
        "from_journal": True, "from_cache": True, "n_forward_batches": 0, "load_s": 0.0, "forward_s": 0.0,
        "location": ckpt.location, "results": {name: found.reused[name] for name in ctx.probe_keys},
        "probes_from_journal": list(ctx.probe_keys)})


def _release_memory(device) -> None:
    """Hand freed accelerator memory back between checkpoints, so a long series does not grow."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.empty_cache()


def _cached_products(ctx: _SeriesContext, ckpt) -> tuple[dict, list[str]]:
    """Products of `ckpt` found in the cache, per data set, and the data sets still to score."""
    products = {}
    for name, s in ctx.samples.items():
        hit = ctx.cache.get(ctx.products_key(ckpt, name), ctx.needed, (s.tokens.shape[0], s.tokens.shape[1] - 1))
        if hit is not None:
            products[name] = hit
    return products, [name for name in ctx.samples if name not in products]


def _series_tokenizer(series_name: str, checkpoints):
    """The tokenizer every checkpoint of the series shares, and its fingerprint.

    Checkpoints whose tokenizer.json is byte-identical to the first one's are not loaded; any other
    is loaded and compared by what decides tokenization."""
    from memaudit.sources import (
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


def _score_missing(ctx: _SeriesContext, ckpt, found: _Found, model, state: _State, emit) -> int:
    """One pass over the union of the data sets not in the cache; their products go into `found.products`
    and the cache. Returns the number of forward batches."""
    from memaudit.forward import auto_batch_size, score, score_adaptive

    run_cfg, batches = ctx.run_cfg, 0
    by_len: dict[int, list[str]] = {}  # samples of one length share batches
    for name in found.missing:
        by_len.setdefault(ctx.samples[name].tokens.shape[1], []).append(name)
    device = model.get_input_embeddings().weight.device if run_cfg.device_map else ctx.device
    masking = {"mask_token_id": ctx.mask_token_id, "mask_fraction": run_cfg.mask_fraction,
               "mask_seed": run_cfg.mask_seed}
    for names in by_len.values():
        tokens = np.concatenate([ctx.samples[n].tokens for n in names])  # (samples, seq_len)
        if run_cfg.batch_size:
            scored, b = score(model, tokens, ctx.needed, run_cfg.batch_size, device, **masking)
        else:
            start = state.batch_size or auto_batch_size(tokens, model.get_output_embeddings().weight.shape[0], device)
            scored, b, state.batch_size = score_adaptive(model, tokens, ctx.needed, start, device, **masking)
        batches += b
        start = 0
        for n in names:
            rows = slice(start, start + len(ctx.samples[n].tokens))
            found.products[n] = {k: v[rows] for k, v in scored.items()}
            ctx.cache.put(ctx.products_key(ckpt, n), found.products[n])
            start = rows.stop
        emit("tokens", n=int(tokens.size))
    return batches


def _audit_checkpoint(ctx: _SeriesContext, ckpt, found: _Found, model, load_s: float, emit,
                      state: _State) -> CheckpointResult:
    """Score the data sets whose products were not cached, then run the probes the journal lacks."""
    from memaudit.sources import count_parameters, n_parameters

    forward_s, n_params, batches = 0.0, count_parameters(ckpt), 0
    if found.missing:
        n_params = n_parameters(model)
        t = time.perf_counter()
        batches = _score_missing(ctx, ckpt, found, model, state, emit)
        forward_s = time.perf_counter() - t
    computed = _run_checkpoint_probes(ctx, ckpt, found.products, skip=found.reused)
    results = {name: found.reused[name] if name in found.reused else computed[name] for name in ctx.probe_keys}
    return CheckpointResult(
        name=ckpt.name, step=ckpt.step, tokens_seen=ckpt.tokens, objective=ckpt.objective, sha=ckpt.sha,
        location=ckpt.location, n_params=n_params, load_s=round(load_s, 4), forward_s=round(forward_s, 4),
        n_tokens=int(sum(s.tokens.shape[0] * (s.tokens.shape[1] - 1) for s in ctx.samples.values())),
        n_forward_batches=batches, from_cache=not found.missing, results=results,
        probes_from_journal=list(found.reused))


def _run_checkpoint_probes(ctx: _SeriesContext, ckpt, products: dict, skip) -> dict[str, dict[str, Any]]:
    """Every per-checkpoint probe not in `skip`, on every data set (or once with all, per_dataset=False)."""
    results: dict[str, dict[str, Any]] = {}
    contexts = {name: _read_only({**products[name], "tokens": s.tokens, "sample_ids": s.ids, "sample_steps": s.steps,
                                  "target_mask": s.target_mask, "dataset": s.info(), "checkpoint": ckpt,
                                  "ledger": ctx.ledger, **ctx.text_products[name]})
                for name, s in ctx.samples.items()}
    for p in ctx.plan.checkpoint_probes:
        if p.name in skip:
            continue
        if not p.per_dataset:  # one call with every data set
            data = {name: SimpleNamespace(**{k: v for k, v in c.items() if k != "data"}) for name, c in contexts.items()}
            results[p.name] = {"all": _call(p, {"data": data, "checkpoint": ckpt, "ledger": ctx.ledger})}
            continue
        # data sets with a target mask (canary candidates) go only to probes that read the mask
        results[p.name] = {name: _call(p, c) for name, c in contexts.items()
                           if c["target_mask"] is None or "target_mask" in p.wants}
    return results


def _read_only(context: dict) -> dict:
    """Arrays as read-only views: a probe that writes into its inputs fails instead of changing what the
    probes after it (and the products cache) see."""
    out = {}
    for name, value in context.items():
        if isinstance(value, np.ndarray):
            value = value.view()
            value.flags.writeable = False
        out[name] = value
    return out


def _run_series_probes(plan: Plan, series: SeriesResult, datasets: list[DatasetInfo], ledger,
                       all_series: list[SeriesResult]) -> None:
    for p in plan.series_probes:
        context = {"checkpoints": [c for c in series.checkpoints if c.error is None],
                   "datasets": [d for d in datasets if "@" not in d.name], "series": series, "ledger": ledger,
                   "all_series": all_series}
        series.results[p.name] = _call(p, context)


def _call(p: ProbeDef, context: dict) -> dict:
    try:
        out = p.fn(**{a: context[a] for a in p.args}, **p.params)
    except MemauditError:
        raise
    except Exception as e:
        raise MemauditError(f"Probe '{p.name}' ({p.source}) raised {type(e).__name__}: {e}. This is a bug in "
                            "the probe; run with --debug for the traceback.", ExitCode.INTERNAL_ERROR) from e
    if not isinstance(out, dict):
        raise MemauditError(f"Probe '{p.name}' ({p.source}) returned {type(out).__name__}; a probe must "
                            "return a dict of metrics.", ExitCode.INTERNAL_ERROR)
    return _jsonable(out)


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


def _jsonable(value):
    """numpy scalars/arrays -> Python; NaN/inf -> None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
