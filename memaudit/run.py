"""The loop: series -> checkpoints -> one forward pass -> probes -> series probes -> checks -> report."""

from __future__ import annotations

import datetime as dt
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
from memaudit.checks import compare_to_baseline, evaluate_checks, validate_checks
from memaudit.config import AuditConfig
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

    keyword: str | None = None
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
    probes = select(collect([standard_probe_dir(), *config.probe_paths]), config.probes, config.select, keyword)
    validate_checks(config.checks, probes, config.datasets, selected_by_keyword=bool(keyword or config.select))
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
    from memaudit.journal import Journal, run_key
    from memaudit.products import ProductsCache

    config = plan.config
    emit = on_event or (lambda *a, **k: None)
    overrides = {"batch_size": opts.batch_size, "dtype": opts.dtype, "device": opts.device,
                 "device_map": opts.device_map, "show_text": opts.show_text or None}
    run_cfg = config.run.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    started, t0 = _now(), time.perf_counter()
    state = _State()
    state.processes = process_state(run_cfg.device)
    device = pick_device(run_cfg.device)
    state.device = str(device)
    if not state.processes.is_main_process:  # progress and output belong to the main process
        emit = lambda *a, **k: None  # noqa: E731
    cache = ProductsCache(run_cfg.cache_dir, enabled=opts.use_cache)
    state.journal = Journal(cache.root.parent, run_key(config_hash, plan.probes, run_cfg.dtype, __version__),
                            enabled=opts.use_cache)
    status = "passed"
    stopped_early = False
    try:
        for series_cfg in config.series:
            stopped_early = _run_series(plan, series_cfg, run_cfg, device, cache, state, opts, emit)
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


def _run_series(plan, series_cfg, run_cfg, device, cache, state: _State, opts: RunOptions, emit) -> bool:
    """Audit one series; return True when -x stopped the run."""
    from memaudit.data import load_samples
    from memaudit.distributed import gather, my_share
    from memaudit.families import family_of
    from memaudit.prefetch import ModelPrefetcher
    from memaudit.sources import (
        check_series_name_clash,
        evict_revision,
        load_model,
        resolve_series,
    )
    from memaudit.text_products import text_products as make_text_products

    checkpoints = resolve_series(series_cfg, allow_pickle=opts.allow_pickle)
    check_series_name_clash(checkpoints)
    ledger = _ledger_for(series_cfg)

    tokenizer, fingerprint = _series_tokenizer(series_cfg.display_name, checkpoints)
    samples = {d.name: load_samples(d.for_series(series_cfg.display_name), tokenizer) for d in plan.config.datasets}
    infos = {name: s.info() for name, s in samples.items()}
    for info in infos.values():
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
    emit("series", name=series.name, n_checkpoints=len(checkpoints),
         tokens_per_checkpoint=sum(s.tokens.size for s in samples.values()))

    CHECKPOINT_ERRORS = _checkpoint_errors()
    text_products, provenance = make_text_products(plan.checkpoint_probes, samples, tokenizer, fingerprint, run_cfg,
                                                   cache.enabled)
    state.tagger = state.tagger or provenance.get("tagger")
    state.identifiers = state.identifiers or provenance.get("identifiers")
    state.text_included = state.text_included or provenance.get("text_included", False)
    needed = plan.products | {"hits", "logprobs"}

    first_with: dict[str, Any] = {}  # weights -> first checkpoint that had them

    def lookup(ckpt):
        """(journal record, cached products, data sets still to score) of a checkpoint; a duplicate of an
        earlier checkpoint (same weights) reads that one's products."""
        done = state.journal.get(series.name, ckpt.name, ckpt.identity)
        if done is not None:
            return done, {}, []
        source = first_with.get(ckpt.weights_key, ckpt)
        return (None, *_cached_products(source, samples, needed, _cache_dtype(source, run_cfg), cache))

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
                state.journal.record(series.name, ckpt.name, ckpt.identity, result)

    def audit(ckpt, products, missing, models, prefetch_next) -> CheckpointResult:
        """Load (or take the prefetched model), score what is missing, run the probes; errors stay here."""
        model = None
        try:
            try:
                model, load_s = models.get(ckpt) if missing else (None, 0.0)
            finally:
                prefetch_next()
            return _audit_checkpoint(plan, ckpt, samples, infos, text_products, products, missing, model, load_s,
                                     needed, run_cfg, device, cache, ledger, emit, tokenizer.mask_token_id, state)
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
                done, products, missing = lookup(ckpt) if first is not ckpt else upcoming
                nxt = checkpoints[mine[n + 1]] if n + 1 < len(mine) else None

                def prefetch_next():  # the next model loads while this one is scored
                    nonlocal upcoming
                    upcoming = lookup(nxt) if nxt else None
                    if upcoming and upcoming[0] is None and upcoming[2]:
                        models.prefetch(nxt)

                if done is not None:
                    result = done.model_copy(update={"from_journal": True, "from_cache": True,
                                                      "n_forward_batches": 0, "load_s": 0.0, "forward_s": 0.0})
                    prefetch_next()
                else:
                    result = audit(ckpt, products, missing, models, prefetch_next)
                    if not multi:  # with several processes the main one records after gathering
                        state.journal.record(series.name, ckpt.name, ckpt.identity, result)
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


def _release_memory(device) -> None:
    """Hand freed accelerator memory back between checkpoints, so a long series does not grow."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.empty_cache()


def _cache_dtype(ckpt, run_cfg) -> str:
    """The products depend on the dtype, and for masked LMs on the mask groups too."""
    if ckpt.objective == "masked":
        return f"{run_cfg.dtype}|masked:{run_cfg.mask_fraction}:{run_cfg.mask_seed}"
    return run_cfg.dtype


def _cached_products(ckpt, samples, needed, dtype, cache) -> tuple[dict, list[str]]:
    """Products of `ckpt` found in the cache, per data set, and the data sets still to score."""
    products = {}
    for name, s in samples.items():
        hit = cache.get(ckpt.identity, s.sha256, dtype, needed, (s.tokens.shape[0], s.tokens.shape[1] - 1))
        if hit is not None:
            products[name] = hit
    return products, [name for name in samples if name not in products]


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


def _audit_checkpoint(plan, ckpt, samples, infos, text_products, products, missing, model, load_s, needed,
                      run_cfg, device, cache, ledger, emit, mask_token_id=None, state=None) -> CheckpointResult:
    """Score the data sets whose products were not cached (one pass over their union), then run the probes."""
    from memaudit.forward import auto_batch_size, score, score_adaptive
    from memaudit.sources import count_parameters, n_parameters

    forward_s = 0.0
    n_params, batches = count_parameters(ckpt), 0
    if missing:
        n_params = n_parameters(model)
        t = time.perf_counter()
        by_len: dict[int, list[str]] = {}  # samples of one length share batches
        for name in missing:
            by_len.setdefault(samples[name].tokens.shape[1], []).append(name)
        for names in by_len.values():
            tokens = np.concatenate([samples[n].tokens for n in names])  # (samples, seq_len)
            if run_cfg.device_map:  # inputs go where the embeddings are
                device = model.get_input_embeddings().weight.device
            masking = {"mask_token_id": mask_token_id, "mask_fraction": run_cfg.mask_fraction,
                       "mask_seed": run_cfg.mask_seed}
            if run_cfg.batch_size:
                scored, b = score(model, tokens, needed, run_cfg.batch_size, device, **masking)
            else:
                start = state.batch_size or auto_batch_size(tokens, model.get_output_embeddings().weight.shape[0],
                                                            device)
                scored, b, state.batch_size = score_adaptive(model, tokens, needed, start, device, **masking)
            batches += b
            start = 0
            for n in names:
                rows = slice(start, start + len(samples[n].tokens))
                products[n] = {k: v[rows] for k, v in scored.items()}
                cache.put(ckpt.identity, samples[n].sha256, _cache_dtype(ckpt, run_cfg), products[n])
                start = rows.stop
            emit("tokens", n=int(tokens.size))
        forward_s = time.perf_counter() - t

    results: dict[str, dict[str, Any]] = {}
    contexts = {name: {**products[name], "tokens": s.tokens, "sample_ids": s.ids, "sample_steps": s.steps,
                       "target_mask": s.target_mask, "dataset": infos[name], "checkpoint": ckpt, "ledger": ledger,
                       **text_products[name]} for name, s in samples.items()}
    for p in plan.checkpoint_probes:
        if not p.per_dataset:  # one call with every data set
            data = {name: SimpleNamespace(**{k: v for k, v in c.items() if k != "data"}) for name, c in contexts.items()}
            results[p.name] = {"all": _call(p, {"data": data, "checkpoint": ckpt, "ledger": ledger})}
            continue
        # data sets with a target mask (canary candidates) go only to probes that read the mask
        results[p.name] = {name: _call(p, c) for name, c in contexts.items()
                           if c["target_mask"] is None or "target_mask" in p.wants}
    return CheckpointResult(
        name=ckpt.name, step=ckpt.step, tokens_seen=ckpt.tokens, objective=ckpt.objective, sha=ckpt.sha,
        location=ckpt.location,
        n_params=n_params,
        load_s=round(load_s, 4), forward_s=round(forward_s, 4),
        n_tokens=int(sum(s.tokens.shape[0] * (s.tokens.shape[1] - 1) for s in samples.values())),
        n_forward_batches=batches, from_cache=not missing, results=results)


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
