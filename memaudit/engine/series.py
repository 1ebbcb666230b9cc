"""One series of a run: its tokenizer, ledger, samples (and their group_by groups), text products and panel, and
the keys its results are stored under (`SeriesContext`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memaudit.errors import ConfigError
from memaudit.inputs.ledger import Ledger, read_ledger
from memaudit.results.schema import SeriesResult

if TYPE_CHECKING:
    from memaudit.engine.state import RunState


@dataclass
class SeriesContext:
    """What every checkpoint of one series is audited with, and the keys its results are stored under."""

    run: RunState
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
    tokenizer: Any = None  # the series' tokenizer (generation decodes with it)

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
        from memaudit.hashing import digest

        return digest("shard", self.products_key(ckpt, name), self.samples[name].fingerprint, part.start, part.stop,
                      self.inputs, {p: self.probe_keys[p] for p in sorted(self.row_probes(name))})

    @functools.cached_property
    def probe_keys(self) -> dict[str, str]:
        from memaudit.engine.identity import probe_fingerprint

        return {p.name: probe_fingerprint(p.fn, p.params, p.rows, p.columns) for p in self.run.plan.checkpoint_probes}

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

    def generates(self, ckpt) -> bool:
        """Whether a probe asks this checkpoint for continuations (a masked LM writes none)."""
        return self.run.plan.generation is not None and ckpt.objective == "causal"

    def generations_key(self, ckpt, dataset: str) -> str:
        """What a data set's generations depend on: its products' key (weights, tokens, settings, engine code), the
        request, the data set's content and the tokenizer (its end-of-text and padding tokens)."""
        from memaudit.hashing import digest

        return digest("generations", self.products_key(ckpt, dataset), self.run.plan.generation.model_dump(mode="json"),
                      self.samples[dataset].fingerprint, self.inputs["tokenizer"])


def open_series(run: RunState, series_cfg, checkpoints) -> SeriesContext:
    """Tokenizer, samples, ledger and text products of one series; its SeriesResult joins the run."""
    ledger = _ledger_for(series_cfg)
    tokenizer, fingerprint = _series_tokenizer(series_cfg.display_name, checkpoints)
    return series_context(run, _series_result(series_cfg, ledger, fingerprint), tokenizer, ledger)


def series_context(run: RunState, series: SeriesResult, tokenizer, ledger: Ledger | None,
                   data: dict | None = None) -> SeriesContext:
    """Samples and text products of a series audited with `tokenizer` (`data`: records in memory for a
    data set, by name, instead of its file); `series` joins the run."""
    from memaudit.hashing import digest
    from memaudit.inputs.data import check_field_types, load_samples
    from memaudit.engine.text_products import text_products as make_text_products
    from memaudit.results.checks import validate_check_groups

    fingerprint = series.tokenizer
    samples = {d.name: load_samples(d.for_series(series.name), tokenizer, (data or {}).get(d.name))
               for d in run.config.datasets}
    _refuse_identical_roles(samples)
    check_field_types(run.field_types, samples, series.name)
    groups = {name: [(g.name, g.index, s.subset(g)) for g in s.groups()]
              for name, s in samples.items()}  # group_by: each group's samples, made once for the series
    validate_check_groups(run.config, series.name, [g for found in groups.values() for g, _, _ in found])
    not_read_by = [p.name for p in run.plan.checkpoint_probes if "lengths" not in p.wants]
    for name, s in samples.items():
        for info in [s.info(), *(subset.info() for _, _, subset in groups[name])]:
            if info.records is not None:  # the report says which probes left whole records out
                info = info.model_copy(update={"records": info.records.model_copy(update={"not_read_by": not_read_by})})
            known = run.datasets.setdefault(info.name, info)
            if known.sha256 != info.sha256:  # another tokenizer, other tokens: keep both visible
                run.datasets[f"{info.name}@{series.name}"] = info
    run.series.append(series)
    run.ledgers[series.name] = ledger
    text_products, said = make_text_products(run.plan.checkpoint_probes, samples, tokenizer, fingerprint,
                                             run.run_cfg, run.cache.enabled,
                                             background=getattr(run.device, "type", "cpu") != "cpu")
    if run.plan.generation is not None and run.run_cfg.show_text:  # the rows keep the continuations' text
        said["text_included"] = True
    for key, value in said.items():
        run.said.setdefault(key, value)
    inputs = {"ledger": digest(ledger.model_dump(mode="json")) if ledger else None, "tokenizer": fingerprint,
              "text": {**said, "show_text": run.run_cfg.show_text, "redact": run.run_cfg.redact}}
    panel = None
    if run.plan.panel_probes and run.processes.is_main_process:
        from memaudit.engine.panel import Panel

        panel = run.panels[series.name] = Panel(samples, run.plan.panel_probes)
    ctx = run.contexts[series.name] = SeriesContext(run, series, samples, text_products, ledger,
                                                    tokenizer.mask_token_id, inputs, panel=panel, groups=groups,
                                                    tokenizer=tokenizer)
    return ctx


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


def _series_tokenizer(series_name: str, checkpoints):
    """The tokenizer every checkpoint of the series shares, and its fingerprint.

    Checkpoints whose tokenizer.json is byte-identical to the first one's are not loaded; any other
    is loaded and compared by what decides tokenization."""
    from memaudit.inputs.sources import (
        available,
        load_tokenizer,
        tokenizer_file_digest,
        tokenizer_fingerprint,
    )

    first, *rest = available(checkpoints)
    tokenizer = load_tokenizer(first)
    fingerprint, digest = tokenizer_fingerprint(tokenizer), tokenizer_file_digest(first)
    for ckpt in rest:
        if digest is not None and tokenizer_file_digest(ckpt) == digest:
            continue
        fp = tokenizer_fingerprint(load_tokenizer(ckpt))
        if fp != fingerprint:
            raise ConfigError(
                f"Series '{series_name}': the tokenizer of {ckpt.name} differs from that of {first.name} "
                f"(fingerprints {fp} vs {fingerprint}). Every checkpoint of a series must share one tokenizer; "
                "split them into separate series.")
    return tokenizer, fingerprint


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
