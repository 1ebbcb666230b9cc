"""Checkpoint series: Hub revisions and local folders -> resolved, loadable checkpoints."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from memaudit.errors import ConfigError, SourceUnavailable, did_you_mean
from memaudit.inputs.config import RevisionSelection, SeriesConfig
from memaudit.inputs.families import parse_checkpoint
from memaudit.inputs.hub_data import parse_hub_path, shown

WEIGHT_FILES = ("*.safetensors",)
PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")


@dataclass(frozen=True)
class Checkpoint:
    """A resolved checkpoint: enough to load it and to key its products."""

    series: str
    name: str
    step: int | None
    location: str  # repo@revision or folder
    sha: str  # commit sha (hub) or sha256 prefix of config + weights (local)
    path: Path | None = None  # local folder
    repo: str | None = None
    hf_cache_dir: Path | None = None
    weights_digest: str | None = None  # content hash of a Hub checkpoint's weights, when known
    tokens: int | None = None  # training tokens seen, when the name or the family says
    objective: str = "causal"  # "masked" for BERT-style checkpoints (scored with mask groups)
    snapshot: Path | None = None  # a Hub checkpoint's snapshot folder in the HF cache, once its config is there
    unavailable: str | None = None  # why a Hub revision could not be resolved (then it is an errored checkpoint)

    @property
    def weights_key(self) -> str:
        """Equal for checkpoints with the same weights (duplicates), as far as can be told without loading."""
        return self.weights_digest or self.identity

    @property
    def identity(self) -> str:
        """What the products depend on: the exact weights."""
        return f"hub:{self.repo}@{self.sha}" if self.repo else f"weights:{self.sha}"

    @property
    def load_target(self) -> tuple[str, dict]:
        """Arguments for `from_pretrained`: a folder, or a repo pinned to its commit sha."""
        if self.repo:
            return self.repo, {"revision": self.sha, "cache_dir": self.hf_cache_dir}
        return str(self.path), {}


def parse_step(name: str, repo: str | None = None) -> int | None:
    """The training step in a checkpoint name: `step1000`, `step-100`, `stage1-step5-tokens2B`,
    `checkpoint-300`, `300`; None for names without one (`main`). See memaudit.inputs.families."""
    return parse_checkpoint(name, repo)[0]


def resolve_series(series: SeriesConfig, allow_pickle: bool = False) -> list[Checkpoint]:
    """Every checkpoint of a series, in step order, with its sha (no model is loaded)."""
    if series.local is not None:
        return _resolve_local(series, allow_pickle)
    return _resolve_hub(series)


def _resolve_local(series: SeriesConfig, allow_pickle: bool = False) -> list[Checkpoint]:
    root = Path(series.local)
    if not root.is_dir():
        raise SourceUnavailable(f"Series '{series.display_name}': no folder at '{root}'. Fix 'local' in the "
                                "yaml, or create the series first (e.g. `memaudit lab`).")
    folders = [root] if (root / "config.json").is_file() else \
        [p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    if not folders:
        raise SourceUnavailable(f"Series '{series.display_name}': '{root}' holds no checkpoint folders (a "
                                "checkpoint folder has a config.json and *.safetensors weights).")
    steps = _local_steps(series, folders)
    folders.sort(key=lambda p: (steps[p.name] is None, steps[p.name] or 0, p.name))
    return [Checkpoint(series=series.display_name, name=p.name, step=steps[p.name], location=str(p),
                       sha=_local_sha(p, allow_pickle), path=p, tokens=parse_checkpoint(p.name)[1],
                       objective=objective_of(p / "config.json")) for p in folders]


def _local_steps(series: SeriesConfig, folders: list[Path]) -> dict[str, int | None]:
    """The training step of each checkpoint folder: from the yaml's `steps:`, else parsed from the name.
    Several checkpoints must each have one step of their own, or the series has no order."""
    given = series.steps or {}
    names = [p.name for p in folders]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"Series '{series.display_name}': 'steps' names {', '.join(unknown)}, which is not a "
                          f"checkpoint folder of '{series.local}'.{did_you_mean(unknown[0], names)} Folders: "
                          f"{', '.join(sorted(names))}.")
    steps = {name: given.get(name, parse_step(name)) for name in names}
    if len(folders) == 1:
        return steps
    stepless = sorted(n for n, s in steps.items() if s is None)
    if stepless:
        raise ConfigError(f"Series '{series.display_name}': the checkpoint folder(s) {', '.join(stepless)} of "
                          f"'{series.local}' carry no training step in their name, so the series has no order. "
                          "Rename them (step-100, checkpoint-100, ...), or give each its step in the yaml "
                          f"(steps: {{{stepless[0]}: 100}}).")
    by_step: dict[int, list[str]] = {}
    for name, step in steps.items():
        by_step.setdefault(step, []).append(name)
    clashes = [f"{' and '.join(sorted(n))} (step {s})" for s, n in sorted(by_step.items()) if len(n) > 1]
    if clashes:
        raise ConfigError(f"Series '{series.display_name}': {'; '.join(clashes)} have the same training step. "
                          "Keep one folder per step (move the other out of the series folder), or give the "
                          "steps explicitly in the yaml ('steps:').")
    return steps


def objective_of(config_json: Path | None) -> str:
    """`masked` when the config names a *ForMaskedLM architecture (BERT-style), else `causal`."""
    import json

    try:
        architectures = json.loads(Path(config_json).read_text()).get("architectures") or []
    except (OSError, ValueError, TypeError):
        return "causal"
    return "masked" if any(a.endswith("ForMaskedLM") for a in architectures) else "causal"


def _local_sha(folder: Path, allow_pickle: bool = False) -> str:
    weights = sorted(p for pattern in WEIGHT_FILES for p in folder.glob(pattern))
    pickles = sorted(p for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern))
    if not weights and pickles and allow_pickle:
        weights = pickles
    if not weights:
        hint = (f" It has pickle-format weights ({', '.join(p.name for p in pickles)}), which memaudit does not "
                "load because unpickling can run code: convert them to safetensors, or pass --allow-pickle "
                "if you trust them.") if pickles else ""
        raise SourceUnavailable(f"Checkpoint '{folder}' has no *.safetensors weights.{hint}")
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for code in sorted(folder.glob("*.py")):  # a checkpoint's own modelling code (trust_remote_code)
        h.update(code.name.encode() + code.read_bytes())
    for w in weights:
        with open(w, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def _resolve_hub(series: SeriesConfig) -> list[Checkpoint]:
    if series.repos:  # one repo per checkpoint (e.g. MultiBERTs): each at its main branch
        targets = [(repo, "main", repo.split("/")[-1], parse_checkpoint(repo, repo)) for repo in series.repos]
    else:
        repo, revisions = series.hub, series.revisions
        if isinstance(revisions, RevisionSelection):
            branches = _list_branches(repo, series.hf_cache_dir)
            revisions = select_revisions(branches, revisions, repo)
            if not revisions:
                where = ("the HF cache (HF_HUB_OFFLINE is set), which holds no branch of it: download the revisions "
                         "once while online" if _offline() else "the Hub")
                raise SourceUnavailable(
                    f"Series '{series.display_name}': no branch of {repo} matches the selection "
                    f"'{series.revisions.pattern}' (branches found in {where}: "
                    f"{', '.join(branches[:8]) or 'none'}{', ...' if len(branches) > 8 else ''}).")
        targets = [(repo, rev, rev, parse_checkpoint(rev, repo)) for rev in revisions]
    out = []
    for repo, rev, name, (step, tokens) in targets:
        try:
            sha, digest = retried(_hub_sha, repo, rev, series.hf_cache_dir)
        except SourceUnavailable as e:  # this revision is an errored checkpoint; the others are audited
            out.append(Checkpoint(series=series.display_name, name=name, step=step, location=f"{repo}@{rev}", sha="",
                                  repo=repo, hf_cache_dir=series.hf_cache_dir, tokens=tokens, unavailable=str(e)))
            continue
        config = _hub_config(repo, sha, series.hf_cache_dir)
        snapshot = config.parent if config else None
        out.append(Checkpoint(series=series.display_name, name=name, step=step, location=f"{repo}@{rev}",
                              sha=sha, repo=repo, hf_cache_dir=series.hf_cache_dir, tokens=tokens,
                              weights_digest=_function_digest(digest or _cached_weights_digest(snapshot), config),
                              objective=objective_of(config), snapshot=snapshot))
    if not available(out):  # nothing to audit: the run stops here, as for a missing repo
        raise SourceUnavailable(out[0].unavailable)
    if series.repos:
        out.sort(key=lambda c: (c.step is None, c.step or 0))
    return out


def available(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """The checkpoints whose source could be resolved (a Hub revision that is gone, or an unreachable server after
    the retries, is an errored checkpoint of the run: `Checkpoint.unavailable`)."""
    return [c for c in checkpoints if c.unavailable is None]


def _hub_config(repo: str, sha: str, cache_dir: Path | None) -> Path | None:
    """config.json of a Hub revision (from the cache, or downloaded: a few hundred bytes)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(retried(hf_hub_download, repo, "config.json", revision=sha, cache_dir=cache_dir,
                            guard=_hub_errors(repo, sha)))
    except SourceUnavailable:
        return None


def _weights_digest(sha256s: list[str]) -> str | None:
    return hashlib.sha256("|".join(sha256s).encode()).hexdigest()[:16] if sha256s else None


def _function_digest(weights: str | None, config: Path | None) -> str | None:
    """What decides a Hub checkpoint's function: its weights' digest, its config.json (tied or untied head,
    rotary settings, ...) and any modelling code beside it; None (no duplicate recognised) without both.
    Two revisions with the same weights and another config are different models."""
    if weights is None or config is None:
        return None
    h = hashlib.sha256(weights.encode())
    h.update(config.read_bytes())
    for code in sorted(config.parent.glob("*.py")):
        h.update(code.name.encode() + code.read_bytes())
    return h.hexdigest()[:16]


def _cached_weights_digest(snapshot: Path | None) -> str | None:
    """Digest of a cached snapshot's weights from its blob names (the sha256 of each file), or None."""
    if snapshot is None:
        return None
    files = sorted(snapshot.glob("*.safetensors"))
    if not files or not all(f.is_symlink() for f in files):
        return None
    return _weights_digest([Path(os.path.realpath(f)).name for f in files])


def select_revisions(branches: list[str], sel: RevisionSelection, repo: str | None = None) -> list[str]:
    """Branches matching the pattern, ordered by step, cut to [first, last] and to multiples of `multiple_of`,
    then thinned to every Nth or to `log_spaced` revisions (nearest to a geometric sequence of steps)."""
    def step(b):
        return parse_step(b, repo)

    chosen = sorted((b for b in branches if fnmatch.fnmatch(b, sel.pattern) and step(b) is not None), key=step)
    chosen = [b for b in chosen if (sel.first is None or step(b) >= sel.first)
              and (sel.last is None or step(b) <= sel.last)
              and (sel.multiple_of is None or step(b) % sel.multiple_of == 0)]
    if sel.log_spaced and len(chosen) > sel.log_spaced:
        import math

        low, high = math.log(max(step(chosen[0]), 1)), math.log(max(step(chosen[-1]), 1))
        targets = [math.exp(low + (high - low) * i / (sel.log_spaced - 1)) for i in range(sel.log_spaced)]
        picked = {min(chosen, key=lambda b: abs(math.log(max(step(b), 1)) - math.log(t))) for t in targets}
        return [b for b in chosen if b in picked]
    return chosen[:: sel.every]


def _list_branches(repo: str, cache_dir: Path | None) -> list[str]:
    from huggingface_hub import HfApi, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    if not _offline():
        refs = retried(HfApi().list_repo_refs, repo, guard=_hub_errors(repo, "(listing branches)"))
        return [b.name for b in refs.branches]
    try:
        cached = [r for r in scan_cache_dir(cache_dir).repos if r.repo_id == repo and r.repo_type == "model"]
    except CacheNotFound:
        cached = []
    return sorted({ref for r in cached for rev in r.revisions for ref in rev.refs})


def _hub_sha(repo: str, revision: str, cache_dir: Path | None) -> tuple[str, str | None]:
    """The commit sha of a revision, and (online) the digest of its weights from the LFS metadata."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    if _offline():
        found = try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir, revision=revision)
        if isinstance(found, str):
            return Path(found).parent.name, None  # .../snapshots/<sha>/config.json
        raise SourceUnavailable(
            f"{repo}@{revision} is not in the Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be "
            "downloaded. Download it once while online (unset HF_HUB_OFFLINE), point 'hf_cache_dir' at a "
            "cache that has it, or remove the revision from the yaml.")
    with _hub_errors(repo, revision):
        info = HfApi().model_info(repo, revision=revision, files_metadata=True, timeout=HUB_POLICY[2])
    weights = sorted((s.rfilename, s.lfs.sha256) for s in info.siblings or []
                     if s.rfilename.endswith(".safetensors") and "/" not in s.rfilename and s.lfs)
    return info.sha, _weights_digest([sha256 for _, sha256 in weights])


class _hub_errors:
    """Translate huggingface_hub's typed errors into one-paragraph SourceUnavailable errors."""

    def __init__(self, repo: str, revision: str):
        self.repo, self.revision = repo, revision

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        from huggingface_hub import errors as hf

        what = f"{self.repo}@{self.revision}"
        if isinstance(exc, hf.GatedRepoError):
            msg = (f"{self.repo} is gated: accept its licence on the Hub and log in "
                   "(`hf auth login` or HF_TOKEN) before auditing it.")
        elif isinstance(exc, hf.RevisionNotFoundError):
            msg = (f"{what}: the repo has no revision '{self.revision}'. Check the name (Pythia's are "
                   "step0, step1, ..., step143000) or use a 'revisions: {pattern: ...}' selection.")
        elif isinstance(exc, hf.RepositoryNotFoundError):
            msg = (f"{self.repo} does not exist on the Hub, or is private and you are not logged in. "
                   "Check the repo id.")
        elif isinstance(exc, (hf.LocalEntryNotFoundError, OSError)) or \
                type(exc).__module__.startswith(("httpx", "requests", "httpcore")):
            msg = (f"Cannot reach the Hugging Face Hub for {what} ({type(exc).__name__}: {exc}). Check the "
                   "network, or set HF_HUB_OFFLINE=1 to use what is already in the HF cache.")
            if _transient(exc):
                raise TransientSourceError(msg) from exc
        else:
            return False
        raise SourceUnavailable(msg) from exc


class TransientSourceError(SourceUnavailable):
    """A Hub request that may succeed when tried again: a server error (5xx, 429), a timeout, a dropped connection."""


def _transient(exc: BaseException) -> bool:
    """Whether a Hub error is worth another try: an HTTP status of 429 or 5xx, or a network failure (no status)."""
    from huggingface_hub import errors as hf

    if _offline():
        return False  # nothing is asked of a server: trying again finds the same cache
    if isinstance(exc, hf.LocalEntryNotFoundError):
        if exc.__cause__ is None:
            return False
        exc = exc.__cause__  # "cannot find the file in the cache": the network error behind it decides
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return status == 429 or status >= 500
    return not isinstance(exc, (hf.EntryNotFoundError, hf.RevisionNotFoundError, hf.RepositoryNotFoundError))


HUB_POLICY = [2, 2.0, 60.0]  # tries after the first, seconds before the first retry, API timeout (set_hub_policy)


def set_hub_policy(retries: int, backoff_s: float, timeout_s: float) -> None:
    """Use the run's `hub_retries`, `hub_backoff_s` and `hub_timeout_s` for every Hub request of this process: the
    timeout is the default of huggingface_hub's HTTP client (whose own default is to wait forever), so a server that
    never answers an API request is a timeout, retried, then an errored checkpoint; requests that set their own
    timeout (file downloads) keep it."""
    import huggingface_hub
    from huggingface_hub.utils import _http

    HUB_POLICY[:] = [retries, backoff_s, timeout_s]
    default = getattr(_http, "default_client_factory", None)
    if default is None or not hasattr(huggingface_hub, "set_client_factory"):
        return  # huggingface_hub before 1.0 (requests): its revision info still gets the timeout (_hub_sha)

    def client():
        made = default()
        made.timeout = timeout_s
        return made

    huggingface_hub.set_client_factory(client)


def retried(call, *args, guard=None, **kwargs):
    """`call(*args, **kwargs)` (inside `guard`, a `_hub_errors` that turns Hub errors into SourceUnavailable), tried
    again on a TransientSourceError after HUB_POLICY's backoff (doubling); the last error says how many tries were
    made."""
    import contextlib
    import time

    retries, wait, _ = HUB_POLICY
    for attempt in range(retries + 1):
        try:
            with guard or contextlib.nullcontext():
                return call(*args, **kwargs)
        except TransientSourceError as e:
            if attempt == retries:
                raise SourceUnavailable(f"{e} (tried {retries + 1} times, {wait * (2 ** retries - 1):g} s of backoff "
                                        "between them)") from e
            time.sleep(wait * 2 ** attempt)


def _guard(ckpt: Checkpoint):
    """Hub errors become SourceUnavailable for Hub checkpoints; local ones pass through."""
    import contextlib

    return _hub_errors(ckpt.repo, ckpt.name) if ckpt.repo else contextlib.nullcontext()


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


def load_tokenizer(ckpt: Checkpoint):
    """The checkpoint's tokenizer (fast when available); a checkpoint without vocabulary files is
    unavailable (transformers would otherwise build a tokenizer of the special tokens alone)."""
    from transformers import AutoTokenizer

    target, kwargs = ckpt.load_target
    try:
        tokenizer = retried(AutoTokenizer.from_pretrained, target, trust_remote_code=False, guard=_guard(ckpt),
                            **kwargs)
    except (OSError, ValueError) as e:
        raise SourceUnavailable(f"Cannot load the tokenizer of {ckpt.location}: {e}. Every checkpoint must "
                                "carry its tokenizer files (tokenizer.json or vocab/merges).") from e
    folder = ckpt.path or ckpt.snapshot
    if folder is not None and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise SourceUnavailable(f"Checkpoint {ckpt.location} has no usable tokenizer: none of "
                                f"{', '.join(TOKENIZER_FILES)} is there (transformers would build one of "
                                f"{len(tokenizer)} special tokens). Copy the tokenizer files of the model into "
                                "the checkpoint folder (tokenizer.save_pretrained(folder)).")
    return tokenizer


def tokenizer_file_digest(ckpt: Checkpoint) -> str | None:
    """sha256 of the checkpoint's tokenizer.json, without loading it (None when there is none)."""
    if ckpt.path is not None:
        path = ckpt.path / "tokenizer.json"
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            with _guard(ckpt):
                path = Path(hf_hub_download(ckpt.repo, "tokenizer.json", revision=ckpt.sha, cache_dir=ckpt.hf_cache_dir))
        except (EntryNotFoundError, LocalEntryNotFoundError, SourceUnavailable):
            return None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 prefix of everything that decides how text becomes tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        import json

        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    else:
        text = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_model(ckpt: Checkpoint, dtype: str, device: str, trust_remote_code: bool = False,
               allow_pickle: bool = False, device_map: str | None = None):
    """Load a causal or masked LM (by `ckpt.objective`) for inference: safetensors only (unless
    `allow_pickle`), every weight found (else WeightsMismatch), eval mode, on `device`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # memaudit draws its own progress
    hf_logging.set_verbosity_error()  # its load report would repeat what check_loading_info says in one line
    target, kwargs = ckpt.load_target
    auto = AutoModelForMaskedLM if ckpt.objective == "masked" else AutoModelForCausalLM
    try:
        model, info = retried(auto.from_pretrained, target, dtype=getattr(torch, dtype),
                              use_safetensors=None if allow_pickle else True, trust_remote_code=trust_remote_code,
                              output_loading_info=True, guard=_guard(ckpt),
                              **({"device_map": device_map} if device_map else {}), **kwargs)
    except ValueError as e:  # e.g. an architecture that needs remote code
        raise ConfigError(f"Cannot load {ckpt.location} as a {ckpt.objective} language model: {e}") from e
    check_loading_info(ckpt, type(model).__name__, info)
    return (model if device_map else model.to(device)).eval()


class WeightsMismatch(RuntimeError):
    """The checkpoint's weights do not fit the architecture its config.json names: scoring it would
    score randomly initialised weights (reported as this checkpoint's error)."""


def check_loading_info(ckpt: Checkpoint, model_class: str, info: dict) -> None:
    """Refuse a model any of whose weights transformers did not find in the checkpoint, or found
    without a place for (tied weights that transformers fills itself are not reported as missing)."""
    problems = [(what, sorted(info.get(key) or ())) for what, key in
                (("missing", "missing_keys"), ("unexpected", "unexpected_keys"), ("mismatched", "mismatched_keys"))]
    problems = [(what, keys) for what, keys in problems if keys]
    if not problems:
        return
    said = "; ".join(f"{len(keys)} {what} ({', '.join(map(str, keys[:3]))}{', ...' if len(keys) > 3 else ''})"
                     for what, keys in problems)
    raise WeightsMismatch(f"the weights of {ckpt.location} do not fit {model_class}, the architecture its "
                          f"config.json names: {said}. The model would be partly random; check that config.json "
                          "belongs to these weights.")


def evict_revision(ckpt: Checkpoint) -> None:
    """Delete a Hub revision from the HF cache with huggingface_hub's cache API (blobs that other
    cached revisions still use are kept)."""
    from huggingface_hub import scan_cache_dir

    scan_cache_dir(ckpt.hf_cache_dir).delete_revisions(ckpt.sha).execute()


def n_parameters(model) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_parameters(ckpt: Checkpoint) -> int | None:
    """Parameters from the safetensors headers alone (no tensor is read); None when the files are not
    local or not readable."""
    import math

    from safetensors import SafetensorError, safe_open

    folder = ckpt.path or ckpt.snapshot
    files = sorted(folder.glob("*.safetensors")) if folder else []
    try:
        total = 0
        for file in files:
            with safe_open(file, "numpy") as f:
                total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
    except (SafetensorError, OSError):
        return None
    return total or None


def check_series_name_clash(checkpoints: list[Checkpoint]) -> None:
    """Two checkpoints with the same name in one series would make the report ambiguous."""
    names = [c.name for c in checkpoints]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"Series '{checkpoints[0].series}' lists {', '.join(dupes)} more than once. "
                          "Remove the repeats from 'revisions'.")


def fetch_hub_file(path, name: str) -> Path:
    """The local copy (in the HF cache) of a Hub data set file, downloaded when it is not there; SourceUnavailable
    when the repository, revision or file cannot be had (offline without it in the cache, gone, a failing server
    after the retries)."""
    from huggingface_hub import hf_hub_download

    repo, revision, file = parse_hub_path(path)

    try:
        return Path(retried(hf_hub_download, repo, file, repo_type="dataset", revision=revision,
                            guard=_hub_errors(repo, revision or "main")))
    except SourceUnavailable as e:
        raise SourceUnavailable(f"Data set '{name}': {shown(path)} cannot be had: {e}") from e
