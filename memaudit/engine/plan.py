"""What a run will do, decided before anything loads: the probes collected and selected, the checks validated,
the products they need (`make_plan`), and the command line's options (`RunOptions`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memaudit.engine.registry import ProbeDef, collect, select, standard_probe_dir, validate_references
from memaudit.errors import ConfigError
from memaudit.inputs.config import AuditConfig
from memaudit.results.checks import validate_checks


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

    @functools.cached_property
    def generation(self):
        """What the `generations` product must hold (memaudit.engine.generations.GenerationRequest), from the
        parameters of the probe that asks for it; None when none does. Two probes asking is a ConfigError (a run
        generates once per checkpoint): `make_plan` reads this before anything loads."""
        from memaudit.engine.generations import request_of

        asking = [p for p in self.checkpoint_probes if "generations" in p.wants]
        if len(asking) > 1:
            raise ConfigError(f"Probes {', '.join(repr(p.name) for p in asking)} all ask for `generations`, and a run "
                              "generates once per checkpoint for one probe's parameters. Select one of them (-k).")
        return request_of(asking[0].params) if asking else None

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
    plan = Plan(config, probes)
    _ = plan.generation  # one probe's parameters at most say what to generate
    if any("pos_tags" in p.wants for p in probes):  # before any checkpoint loads, not after the first is scored
        from memaudit.inputs.tagging import installed_pipeline, missing_pipeline_message

        if installed_pipeline(config.run.spacy_model) is None:
            raise ConfigError(missing_pipeline_message(config.run.spacy_model))
    return plan
