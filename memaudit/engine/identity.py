"""What a result depends on: the keys of the products cache, the tag cache and the run journal.

The rule, in one place. A stored result is reused only when *every* input that can change it is
equal; anything not named here must not be able to change a result.

Products (per-token arrays of one data set on one checkpoint) depend on:
  - the weights: `Checkpoint.identity` (Hub repo@commit sha, or sha256 of config.json + weights);
  - the sample tokens: `Samples.sha256` (tokens and their shape);
  - the scoring settings: dtype, device type (cpu / cuda / mps), on a GPU whether the reduction is
    compiled (MEMAUDIT_COMPILE), and for masked LMs the mask fraction, seed and mask token;
  - the scoring code: `engine_fingerprint()` (memaudit's version, a hash of its source files and
    the versions of torch, transformers and the other libraries that compute).

A journal record (one checkpoint's probe results) depends on all that for every data set, plus:
  - each data set's sample ids, training steps, target mask, name, role, seq_len, seen_at_step and
    canary metadata (`Samples.fingerprint`), so new ids or steps with the same tokens re-run;
  - the series name and the checkpoint's name, step and tokens seen;
  - the ledger's content, the tokenizer's fingerprint and the text settings (the spaCy pipeline
    that actually tagged, the identifier source, show_text, redact);
and, per probe, `probe_fingerprint()`: the probe's code (its function and the functions and simple
constants of its own module that it names, transitively) and its parameters. A probe whose key
changed re-runs; the other probes of that checkpoint still come from the journal.

Not part of any key: file paths and the yaml's text (the same data under another path, or the same
audit run from another folder, gives the same results: only what the run read counts), batch size
(results are batch-size invariant: tested) and the number of processes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from pathlib import Path

from memaudit.hashing import digest

LIBRARIES = ("torch", "transformers", "accelerate", "tokenizers", "safetensors", "numpy", "spacy", "rouge-score",
             "sacrebleu", "nltk")


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """memaudit's version, a hash of every source file of the package (scoring, data loading, tagging)
    and the versions of the libraries that compute with it: an edited checkout or an upgraded torch
    invalidates what an older one stored, as a new release does."""
    from importlib.metadata import PackageNotFoundError, version

    from memaudit.version import __version__

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(json.dumps([__version__, {name: installed(name) for name in LIBRARIES}]).encode())
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:16]}"


def device_kind(device) -> str:
    """cpu, cuda or mps: numerics can differ between kinds of device, not between two GPUs of one kind."""
    return getattr(device, "type", str(device).split(":")[0])


def compiles(device) -> bool:
    """Whether the forward pass compiles its reduction (torch.compile): on a GPU, unless MEMAUDIT_COMPILE=0."""
    import os

    return device_kind(device) == "cuda" and os.environ.get("MEMAUDIT_COMPILE", "1") != "0"


def products_key(checkpoint_identity: str, data_sha: str, settings: dict) -> str:
    """Key of one data set's products on one checkpoint; `settings` from `scoring_settings`."""
    return digest("products", checkpoint_identity, data_sha, settings, engine_fingerprint())


def scoring_settings(run_cfg, device, objective: str, mask_token_id: int | None = None) -> dict:
    """The run settings products depend on (mask groups and the mask token only for masked LMs)."""
    settings = {"dtype": run_cfg.dtype, "device": device_kind(device)}
    if device_kind(device) == "cuda":  # the compiled reduction agrees with the eager one to ~1e-6, not bit for bit
        settings["compiled"] = compiles(device)
    if objective == "masked":
        settings["mask"] = [run_cfg.mask_fraction, run_cfg.mask_seed, mask_token_id]
    return settings


def journal_key(series: str, ckpt, datasets: dict[str, str], context: dict, settings: dict) -> str:
    """Key of one checkpoint's journal record: `datasets` maps names to `Samples.fingerprint`,
    `context` holds the series-wide inputs (ledger, tokenizer, text settings)."""
    return digest("journal", series, ckpt.name, ckpt.step, ckpt.tokens, ckpt.identity, datasets, context, settings,
                  engine_fingerprint())


def probe_fingerprint(fn, params: dict, rows=None, columns: dict | None = None) -> str:
    """The probe's code (its own source, its `rows` function's, and that of the module-level helpers they
    name), parameters, and the per-sample columns it declares (their names and types make its Parquet files; the
    source names the declaration, e.g. `columns=COLUMNS`, not what it holds)."""
    return digest("probe", _code_of(fn), _code_of(rows) if rows is not None else None, params,
                  {name: repr(c) for name, c in (columns or {}).items()})


PROBE_MODULES = ("memaudit.probes", "memaudit_collected_", "memaudit.measures")
"""Modules whose functions a probe's fingerprint follows: the standard probes, collected probe files, and the
measures probes share."""


def _code_of(fn) -> list[str]:
    """Sources of `fn` and, transitively, of the functions and simple constants it names from its own
    module, and of the functions it imports from other probe modules (the standard probes live outside
    the engine fingerprint: `memorized_strings` uses memorization's extractability helper)."""
    seen: dict[str, str] = {}
    todo = [fn]
    while todo:
        f = todo.pop()
        code = getattr(f, "__code__", None)
        here = f.__module__ == fn.__module__  # the probe's own file: named without its (path-derived) module
        key = f"{'' if here else f.__module__ + '.'}{getattr(f, '__qualname__', f)}"
        if key in seen or code is None:
            continue
        seen[key] = _source(f)
        for name in _names(code):
            value = f.__globals__.get(name)
            if isinstance(value, types.FunctionType) and (value.__module__ == f.__module__
                                                          or str(value.__module__).startswith(PROBE_MODULES)):
                todo.append(value)
            elif isinstance(value, (int, float, str, bytes, bool, tuple, frozenset, dict, list)):
                seen[f"const {'' if here else f.__module__ + '.'}{name}"] = repr(value)[:10_000]
    return sorted(f"{k}\n{v}" for k, v in seen.items())


def _names(code: types.CodeType) -> set[str]:
    """Global names a code object (and the code nested in it: comprehensions, inner functions) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _source(fn) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # no source file (defined in exec or the REPL): its compiled code
        code = fn.__code__
        return repr((code.co_code, code.co_consts, code.co_names))
