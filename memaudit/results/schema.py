"""The audit report: versioned pydantic models, one docstring per field.

Importable without torch: `memaudit show` and `memaudit schema` only need this and rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer

from memaudit.atomic import atomic_write_text
from memaudit.results.samples import Column
from memaudit.results.values import flat_metrics, is_finite, is_number, is_table, metric_template  # noqa: F401

SCHEMA_VERSION = 1

Metrics = dict[str, Any]
"""metric name -> JSON value (number, string, bool, null, list or mapping)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Provenance(_Model):
    """Where, when and with what the report was made."""

    memaudit_version: str
    """Version of memaudit."""
    torch_version: str | None = None
    """Version of torch (None when no model was run)."""
    transformers_version: str | None = None
    """Version of transformers."""
    python_version: str
    """Version of Python."""
    platform: str
    """Operating system and machine."""
    device: str | None = None
    """Device the forward passes ran on (`cpu`, `cuda:0`, ...)."""
    dtype: str
    """Model dtype of the forward passes."""
    batch_size: int | None
    """Samples per forward batch (the one chosen, when memaudit chose it)."""
    batch_size_auto: bool = False
    """True when the batch size was chosen from the memory (and halved on out-of-memory)."""
    processes: int = 1
    """Processes the checkpoints were shared between (accelerate / torchrun)."""
    device_map: str | None = None
    """`auto` when models were spread over devices (big-model inference)."""
    seed: int
    """Seed from the configuration."""
    tagger: str | None = None
    """spaCy pipeline and version that tagged the text (None when no probe needed tags)."""
    identifiers: str | None = None
    """What decided which tokens are identifier-like (None when no probe needed it)."""
    head: str | None = None
    """How the output layer ran: `fused` (logits made chunk by chunk from the last hidden state and reduced
    at once, never all in memory) or `unfused: <why>` (the model's full logits, reduced in chunks)."""
    attention: str | None = None
    """The attention implementation transformers ran (`sdpa`, `eager`, `flash_attention_2`, ...)."""
    masking: str = "fraction 0.15, seed 0"
    """How masked-LM checkpoints were scored: share of positions per mask group and the seed of the groups."""
    config_path: str | None = None
    """The yaml the run was configured by."""
    config_hash: str
    """sha256 prefix of the parsed configuration: equal hashes, equal audits."""
    command: str
    """The command line."""
    samples_out: str | None = None
    """The `--samples-out` folder (absolute) the run wrote its per-sample Parquet files to, if any."""
    started_at: str
    """Start time, ISO 8601, UTC."""
    finished_at: str | None = None
    """End time, ISO 8601, UTC."""
    duration_s: float | None = None
    """Wall seconds of the whole run."""


class RecordsInfo(_Model):
    """How a data set of whole records (`samples: records`) was scored."""

    prefix: Literal["eos", "bos", "none"]
    """The token put before each record (resolved from `auto`): its first token is scored after it."""
    prefix_token: int | None = None
    """The prefix's token id (None with `none`)."""
    longer: Literal["rolling", "cut"]
    """What a record longer than the window (`seq_len`) got: lm-eval's rolling windows, or cut to the window."""
    n_longer: int
    """Records longer than the window: scored in rolling windows (`rolling`) or cut (`cut`)."""
    n_cut_tokens: int = 0
    """Tokens cut away (with `cut`): never scored."""
    n_windows: int
    """Windows the model reads (one per record up to the window, more for longer records with `rolling`)."""
    n_targets: int
    """Tokens scored (each record's tokens, after the prefix)."""
    min_tokens: int
    """Tokens of the shortest record, the prefix included."""
    max_tokens: int
    """Tokens of the longest record (after cutting), the prefix included."""
    not_read_by: list[str] = []
    """The run's per-checkpoint probes that do not read whole records (they assume samples of seq_len tokens), so
    were not given this data set."""


class GroupInfo(_Model):
    """A group of a data set's samples by a per-sample field (`group_by`): the field and the group's value."""

    field: str
    value: bool | int | float | str


class DatasetInfo(_Model):
    """A data set as it was cut into samples."""

    name: str
    """Name from the configuration."""
    role: str
    """train, valid, special, canary or other."""
    path: str
    """File the text came from."""
    seq_len: int
    """Tokens per sample."""
    n_samples: int
    """Number of samples."""
    n_tokens: int
    """Tokens in all samples together."""
    sha256: str
    """Hash of the sample tokens: the products cache is keyed by it."""
    seen_at_step: list[int] | None = None
    """Training steps at which the series saw this data set, when given in the yaml."""
    canaries: dict | None = None
    """For a canary file: per canary id, |R| (`space`), whether every candidate was scored (`exact`) and
    how many were (`n_candidates`). The secrets themselves are never in the report."""
    group_by: str | None = None
    """The per-sample field whose values split this data set's metrics (`group_by` in the yaml)."""
    group_of: str | None = None
    """For a group (`train[dup=4]`): the data set it is part of; None for a data set of the yaml."""
    group: GroupInfo | None = None
    """For a group: its field and value, as data (renderers format them); absent for a data set of the yaml."""
    records: RecordsInfo | None = None
    """With `samples: records` (one sample per record, of any length): how the records were scored; absent for
    data cut into fixed-length chunks."""

    @model_serializer(mode="wrap")
    def _without_absent_records(self, handler):
        """A fixed-length data set's entry, and a yaml data set's, is as it was before `records` and `group` existed
        (reports, journal keys)."""
        out = handler(self)
        for key in ("records", "group"):
            if out.get(key, 0) is None:
                del out[key]
        return out


class ProbeInfo(_Model):
    """A probe that ran."""

    name: str
    """Probe name."""
    kind: Literal["checkpoint", "series"]
    """Per-checkpoint probe or series probe."""
    source: str
    """File it was collected from."""
    products: list[str]
    """Forward-pass products it used."""
    params: dict[str, Any]
    """Parameters it ran with (defaults merged with the yaml)."""
    metrics: dict[str, str] = {}
    """Documented metrics it returns: name -> meaning."""
    show: list[str] = []
    """Metrics the terminal report shows in its table."""
    columns: dict[str, Column] = {}
    """The per-sample columns its rows function declares: name (or template) -> type, meaning, unit, what a higher
    value says, and the name in the per-sample schema."""


class SamplesFile(_Model):
    """Where `--samples-out` wrote a checkpoint's per-sample rows."""

    file: str
    """The Parquet file, relative to the `--samples-out` folder."""
    rows: int
    """Rows in it: one per sample of every data set a probe with a rows function read."""
    sha256: str | None = None
    """SHA-256 of the file as written: a rerun reuses the journaled result only while the file still has it."""


class CheckpointResult(_Model):
    """One checkpoint and every per-checkpoint probe's results on it."""

    name: str
    """Revision or folder name, e.g. `step1000`."""
    step: int | None
    """Training step parsed from the name (None when the name carries none)."""
    tokens_seen: int | None = None
    """Training tokens seen at this checkpoint, when the name (OLMo) or the family (Pythia) says."""
    objective: str = "causal"
    """causal: M(f) predicts each token from the ones before; masked (BERT-style): each token is predicted
    with its mask group (see `provenance.masking`) replaced by the mask token, seeing both sides."""
    sha: str | None = None
    """Commit sha of a Hub revision, or sha256 prefix of a local checkpoint's weights."""
    location: str
    """`repo@revision` or the local folder."""
    n_params: int | None = None
    """Parameters of the model (None when every product came from the cache)."""
    load_s: float = 0.0
    """Seconds spent loading the model (0 when the products were cached)."""
    wait_s: float = 0.0
    """Seconds the audit waited for this checkpoint's model (download and load) after the previous checkpoint was
    scored: what the background prefetch did not hide."""
    forward_s: float = 0.0
    """Seconds spent in forward passes."""
    n_tokens: int = 0
    """Tokens scored on this checkpoint (all data sets)."""
    n_forward_batches: int = 0
    """Forward batches run for this checkpoint (0: everything came from the products cache)."""
    from_cache: bool = False
    """True when no forward pass was needed."""
    from_journal: bool = False
    """True when every probe result was read from the run journal (an earlier run with the same inputs)."""
    probes_from_journal: list[str] = []
    """Probes whose results came from the journal; the others were computed in this run (their code,
    parameters or inputs changed; see memaudit/engine/identity.py for what a journal record depends on)."""
    duplicate_of: str | None = None
    """An earlier checkpoint of the series with the same weights (its products were reused)."""
    results: dict[str, dict[str, Metrics]] = {}
    """probe name -> data set name -> metrics."""
    error: str | None = None
    """Why this checkpoint could not be audited, if it could not."""
    samples_file: SamplesFile | None = None
    """With `--samples-out`: the Parquet file of its per-sample rows (see memaudit.engine.samples_out)."""

    def metric(self, probe: str, dataset: str, name: str) -> Any:
        """One metric of a probe on a data set here, or None when the probe, data set or metric is absent
        (for series probes: `[c.metric("memorization", d.name, "M") for c in checkpoints]`)."""
        return (self.results.get(probe) or {}).get(dataset, {}).get(name)


class SeriesResult(_Model):
    """One checkpoint series."""

    name: str
    """Series name."""
    source: str
    """`hub:<repo>`, `hub-suite:<first repo>` (one repo per checkpoint) or `local:<folder>`."""
    family: str | None = None
    """Series family recognised from the repo id (pythia, olmo, multiberts, generic)."""
    n_params: int | None = None
    """Parameters of the models in the series."""
    tokenizer: str
    """Fingerprint (sha256 prefix) of the tokenizer that every checkpoint shares."""
    steps_per_epoch: int | None = None
    """Updates per epoch (from the ledger or the yaml), when known."""
    lab_run: dict | None = None
    """For a lab series: its size (layers, width, heads) and interventions (special, ids), from the ledger."""
    checkpoints: list[CheckpointResult] = []
    """Checkpoints in step order."""
    results: dict[str, dict[str, Metrics]] = {}
    """series probe name -> data set name -> metrics."""

    def metric(self, probe: str, dataset: str, name: str) -> Any:
        """One series-probe metric on a data set, or None when absent."""
        return (self.results.get(probe) or {}).get(dataset, {}).get(name)


class Spread(_Model):
    """One metric over the seeds of a replicate group."""

    mean: float | None
    """Mean over the seeds that have a value (None: none has)."""
    std: float | None
    """Sample standard deviation over those seeds (None with fewer than two)."""
    min: float | None
    """Smallest value."""
    max: float | None
    """Largest value."""
    n: int
    """Seeds with a value."""
    values: list[float | None]
    """The value of each seed, in the group's seed order (None: not available for that seed)."""


class ReplicateGroup(_Model):
    """Lab series that differ only in their seed (`seeds:` in the lab yaml): each series-probe metric's mean
    and spread over the seeds."""

    name: str
    """The lab run they replicate."""
    seeds: list[int]
    """Their seeds."""
    series: list[str]
    """Their series, in seed order."""
    n_params: int | None = None
    """Parameters of the model."""
    metrics: dict[str, dict[str, dict[str, Spread]]] = {}
    """series probe -> data set -> metric -> spread over the seeds (numbers; a mapping of numbers gives
    `metric[key]`)."""


class CheckResult(_Model):
    """The outcome of one threshold check on one series (and checkpoint, for `at: each`)."""

    name: str
    """Check name (from the yaml, or built from its metric and bounds)."""
    metric: str
    """`probe.metric`."""
    dataset: str | None
    """Data set."""
    series: str
    """Series."""
    checkpoint: str | None
    """Checkpoint the value comes from (None for a series aggregate)."""
    value: float | None
    """Measured value (None: not available)."""
    min: float | None
    """Lower bound."""
    max: float | None
    """Upper bound."""
    passed: bool
    """Whether the value lies within the bounds."""
    message: str
    """One line a person can read."""
    baseline_checkpoint: str | None = None
    """With `--compare`: the baseline's checkpoint the value was compared with (e.g. the baseline's last
    checkpoint, `step-112`, against this run's last, `step-240`); None for other checks and aggregates."""


class Comparison(_Model):
    """What `--compare` compared: every baseline series, data set and metric is either compared (a check named
    `baseline ...` in `checks`) or listed here as not compared, with why."""

    baseline: str
    """The baseline report: its configuration hash and when it was made."""
    compared: int
    """Values compared with the baseline. Zero is a failure: a gate that compared nothing guards nothing."""
    not_compared: list[str] = []
    """What the baseline has that this run could not be compared with (a series renamed or dropped, a data set,
    metric or checkpoint missing), each with why. Those of selected probes are failed checks too; probes
    deselected with -k are listed only."""
    new: list[str] = []
    """What this run has that the baseline lacks (new series, checkpoints, values): nothing to compare with."""


class AuditReport(_Model):
    """The result of `memaudit run`."""

    schema_version: int = SCHEMA_VERSION
    """Version of this schema; bumped when a field changes meaning or is removed."""
    status: Literal["passed", "failed", "error", "interrupted"]
    """passed: all checks held; failed: a check failed; error: a checkpoint could not be audited (see its
    `error`); interrupted: stopped by Ctrl-C, the report holds what was finished."""
    exit_code: int
    """The exit code the run returned."""
    provenance: Provenance
    """Versions, settings and times."""
    datasets: list[DatasetInfo] = []
    """Data sets audited."""
    probes: list[ProbeInfo] = []
    """Probes that ran."""
    series: list[SeriesResult] = []
    """Per series: checkpoints with their probe results, and series-probe results."""
    checks: list[CheckResult] = []
    """Threshold checks."""
    comparison: Comparison | None = None
    """With `--compare`: what was compared with the baseline report and what could not be."""
    replicates: list[ReplicateGroup] = []
    """Groups of lab series that differ only in their seed, with the spread of each series-probe metric."""
    unwritten: list[str] = []
    """Outputs asked for that could not be written (e.g. a `--samples-out` file on a full disk), each with why;
    the results are in this report all the same, and the exit code is 2."""
    text_included: bool = False
    """True when the report holds training text (`--show-text`); redacted unless `run.redact: false`."""

    def to_frame(self, wide: bool = False):
        """A pandas DataFrame with one row per (series, checkpoint, probe, data set, metric) and the columns
        series, checkpoint, step, tokens_seen, n_params (nullable integers), probe, kind, dataset, metric, value
        (numbers; see memaudit.results.tables); with `wide=True`, one row per series, checkpoint and data set
        and a column per `probe.metric` of the per-checkpoint probes. Needs pandas (`memaudit-lm[frames]`)."""
        from memaudit.results import tables

        long = tables.frame(tables.metric_rows(self), tables.METRIC_COLUMNS)
        return tables.wide(long) if wide else long

    def samples_frame(self, folder=None):
        """A pandas DataFrame with one row per sample, in the per-sample schema (memaudit.results.samples: series,
        checkpoint, step, tokens_seen, dataset, sample_index, sample_id, seen_at_step, then a column per probe
        quantity: memorization_M, memorization_loss, membership_loss_score, ...): from the report's own tables
        (probes run with `per_sample: true`), or else from the Parquet files `--samples-out` wrote (under
        `folder`, default the folder the report names). Empty, with a warning saying how to get them, when the
        run made neither."""
        from memaudit.results import tables

        return tables.frame(tables.report_sample_rows(self, folder), tables.SAMPLE_COLUMNS)

    @property
    def counts(self) -> dict[str, int]:
        passed = sum(c.passed for c in self.checks)
        errors = sum(c.error is not None for s in self.series for c in s.checkpoints)
        return {"passed": passed, "failed": len(self.checks) - passed, "errors": errors}


def write_report(report: AuditReport, path: str | Path) -> None:
    """Write the report as JSON atomically: a temp file in the same folder, then rename."""
    atomic_write_text(path, report.model_dump_json(indent=2))


def read_report(path: str | Path) -> AuditReport:
    """Read and validate a saved report. A folder, an unreadable or a binary file, or a report of another
    schema version (checked before its fields, which that version may name differently) is a ConfigError; a
    file that is not a report raises pydantic's ValidationError."""
    import json

    from memaudit.errors import ConfigError
    from memaudit.atomic import read_text_file

    text = read_text_file(Path(path), "report")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raw = None  # pydantic names what is wrong with it
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"'{path}' is not a memaudit report: {e}.") from None
    huge = _huge_integer(raw)
    if huge is not None:
        raise ConfigError(f"'{path}' holds the integer {str(huge[1])[:12]}... ({len(str(abs(huge[1])))} digits) at "
                          f"{huge[0]}, which no float holds: memaudit never writes one, so the report was edited or "
                          "written by another tool. Re-run the audit, or fix the value.")
    version = raw.get("schema_version", SCHEMA_VERSION) if isinstance(raw, dict) else SCHEMA_VERSION
    if type(version) is not int or version != SCHEMA_VERSION:
        provenance = raw.get("provenance")
        writer = provenance.get("memaudit_version") if isinstance(provenance, dict) else None
        raise ConfigError(f"'{path}' is a report of schema version {version!r}; this memaudit reads version "
                          f"{SCHEMA_VERSION}. Open it with the memaudit that wrote it (provenance: memaudit "
                          f"{writer or 'unknown'}), or re-run the audit.")
    return AuditReport.model_validate_json(text)


def _huge_integer(value, where: str = "the top") -> tuple[str, int] | None:
    """(where, value) of the first integer in parsed JSON that a float cannot hold, or None."""
    todo = [(where, value)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, int) and not isinstance(value, bool) and not is_finite(value):
            return where, value
        if isinstance(value, dict):
            todo += [(f"{where}.{k}" if where != "the top" else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return None


def open_report(path: str | Path) -> AuditReport:
    """`read_report` for a path a person gave: a missing file or one that is not a report is a ConfigError."""
    from pydantic import ValidationError

    from memaudit.errors import ConfigError

    if not Path(path).exists():
        raise ConfigError(f"No report at '{path}'. Write one with `memaudit run --json PATH`.")
    try:
        return read_report(path)
    except ValidationError as e:
        raise ConfigError(f"'{path}' is not a memaudit report ({e.error_count()} validation errors, "
                          f"first: {e.errors()[0]['msg']}).") from None


def json_schema() -> dict:
    """The report's JSON Schema."""
    return AuditReport.model_json_schema()

