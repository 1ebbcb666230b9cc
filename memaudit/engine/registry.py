"""`@probe` / `@series_probe` and pytest-style collection of probe files.

A probe is a plain function. Its arguments without defaults are filled by name, like pytest
fixtures; arguments with defaults are parameters, set from `checkpoints.yaml`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Callable

from memaudit.engine.catalog import FORWARD, PRODUCTS, ROW_ARGS, SERIES_ARGS
from memaudit.errors import (
    ConfigError,
    ExitCode,
    MemauditError,
    NothingCollected,
    did_you_mean,
)


@dataclass
class ProbeDef:
    """A collected probe: the function, what it asks for and its parameters."""

    fn: Callable
    name: str
    kind: str  # "checkpoint" or "series"
    args: list[str]
    params: dict[str, Any]
    metrics: dict[str, str] = field(default_factory=dict)
    show: tuple[str, ...] = ()
    source: str = ""
    needs: tuple[str, ...] = ()
    per_dataset: bool = True
    uses: tuple[str, ...] = ()  # probes whose results this one reads (pulled in by selection)
    figures: tuple[Callable, ...] = ()  # fig_<name>(report) -> Figure | None, drawn by `memaudit plot`
    rows: Callable | None = None  # per-sample function: a shard's products -> columns (see `probe`)
    names: Callable | None = None  # (its params, every probe's params by name) -> the metric names it can report
    validate: Callable | None = None  # (its params, the AuditConfig) -> None, raising ConfigError on a bad design
    opt_in: bool = False  # runs only when the yaml's `probes:` (or the API's list of probes) names it
    not_numbers: tuple[str, ...] = ()  # metrics that are curves, tables or text: no check or rule can bound them
    for_series: Callable | None = None  # a series probe's (series config) -> whether it reports for that series
    per_group: bool = False  # a series probe that reports on the groups of group_by too
    columns: dict = field(default_factory=dict)  # its rows function's columns -> Column (memaudit.results.samples)

    @property
    def row_args(self) -> list[str]:
        """What its `rows` function asks for by name (its other arguments are the probe's parameters)."""
        if self.rows is None:
            return []
        return [a for a in inspect.signature(self.rows).parameters if a not in self.params]

    @property
    def row_params(self) -> list[str]:
        """The probe's parameters its `rows` function takes."""
        return [a for a in inspect.signature(self.rows).parameters if a in self.params] if self.rows else []

    @property
    def products(self) -> list[str]:
        """The forward-pass products this probe needs (by argument name, or declared with `needs`, or read by
        its `rows` function); `sampling_logprobs` stands for one product per scheme of its `schemes` parameter."""
        return self._forward(*self.args, *self.needs, *self.row_args)

    @property
    def whole_products(self) -> list[str]:
        """The forward products it needs as whole (samples, seq_len - 1) arrays: those it names itself
        (what its `rows` function reads comes shard by shard and is dropped)."""
        return self._forward(*self.args, *self.needs)

    def _forward(self, *names: str) -> list[str]:
        from memaudit.engine.sampling import product_name

        out = []
        for a in names:
            if a == "sampling_logprobs":
                out += [product_name(s) for s in self.params.get("schemes") or ()]
            elif a in FORWARD:
                out.append(a)
        return list(dict.fromkeys(out))

    @property
    def wants(self) -> set[str]:
        """Everything it asks for: arguments, declared needs and its `rows` function's arguments."""
        return {*self.args, *self.needs, *self.row_args}

    @property
    def doc(self) -> str:
        return (inspect.getdoc(self.fn) or "").split("\n\n")[0].replace("\n", " ")


def _make(kind: str):
    def decorator(fn=None, *, name: str | None = None, metrics: dict[str, str] | None = None,
                  show: tuple[str, ...] = (), needs: tuple[str, ...] = (), per_dataset: bool = True,
                  uses: tuple[str, ...] = (), figures: tuple[Callable, ...] = (), rows: Callable | None = None,
                  names: Callable | None = None, validate: Callable | None = None, opt_in: bool = False,
                  not_numbers: tuple[str, ...] = (), for_series: Callable | None = None, per_group: bool = False,
                  columns: dict | None = None):
        def wrap(f: Callable) -> ProbeDef:
            sig = inspect.signature(f)
            args = [p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty]
            params = {p.name: p.default for p in sig.parameters.values()
                      if p.default is not inspect.Parameter.empty}
            return ProbeDef(fn=f, name=name or f.__name__, kind=kind, args=args, params=params,
                            metrics=dict(metrics or {}), show=tuple(show), needs=tuple(needs),
                            per_dataset=per_dataset, uses=tuple(uses), figures=tuple(figures), rows=rows,
                            names=names, validate=validate, opt_in=opt_in, not_numbers=tuple(not_numbers),
                            for_series=for_series, per_group=per_group, columns=dict(columns or {}),
                            source=getattr(f, "__module__", ""))
        return wrap(fn) if fn is not None else wrap
    return decorator


probe = _make("checkpoint")
probe.__doc__ = """Mark a function as a per-checkpoint probe: called once per (checkpoint, data set)
with the products it names (hits, logprobs, ranks, entropy, tokens, ...), returning a dict of metrics.
With `per_dataset=False` it is called once per checkpoint with `data` (every data set's products,
those in `needs`), and its result is stored under the data set name "all". `figures=(fig_x,)` names
functions of the saved report that draw the probe's figures (see memaudit.report.plots).

`rows=fn` makes the probe work per sample, at any scale (`columns={name: memaudit.Column(type, meaning, unit=...,
higher=...)}` declares the columns it returns: their type, meaning, unit and what a higher value says, for the
per-sample schema, the Parquet files and `memaudit schema --samples`): `fn` takes a shard of samples' products by
name (hits, logprobs, ..., tokens, sample_ids, zlib_len; its other arguments are the probe's parameters
of the same name) and returns columns, one value per sample of the shard; the probe then asks for
`rows` (those columns over every sample, in order) instead of per-token arrays, which are dropped shard
by shard. The columns also go to `--samples-out` as `<probe>.<column>`.

`names=fn` lists the metric names the probe reports for its parameters, when they depend on them
(`rate[T=1.0][k=32,m=32][n=10,p=0.5]`): `fn(params, params_of)` (its own validated parameters, and every
selected probe's by name) returns them, and a check on a name outside the list is refused before anything
loads, with the valid names. `validate=fn` checks the audit's design before anything loads: `fn(params,
config)` raises memaudit.errors.ConfigError (exit 2) when the yaml cannot give the probe what it needs.
`opt_in=True` makes a probe that needs a design of its own (memorization_profile) run only when the yaml's
`probes:` names it (`memorization_profile: {}`), or the Python API's list of probes does. `not_numbers=(...)`
names the metrics that are curves, tables or text: a check or regression rule on one is refused before anything
loads."""
series_probe = _make("series")
series_probe.__doc__ = """Mark a function as a series probe: called once per series with the ordered
per-checkpoint results, returning {dataset name: {metric: value}}. `uses=("memorization",)` names the
per-checkpoint probes whose results it reads: selecting it (`-k`, `select:`) selects them too.
`for_series=fn` says which series it reports for (`fn(series config) -> bool`; twin: those with a reference), and
`per_group=True` that it reports on the groups of `group_by` too: checks on other series or groups are refused
before anything loads."""


def standard_probe_dir() -> Path:
    """The folder of the standard probes (the repo's `probes/`, installed as `memaudit.probes`)."""
    import memaudit.probes

    return Path(memaudit.probes.__file__).parent


def collect(paths: list[Path]) -> list[ProbeDef]:
    """Import every `*.py` file (not starting with `_`) under `paths` and return its probes."""
    found: dict[str, ProbeDef] = {}
    for path in paths:
        if not path.exists():
            raise ConfigError(f"Probe path '{path}' does not exist. Fix 'probe_paths' in the yaml.")
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.name.startswith("_"):
                continue
            for p in _probes_in(file):
                if p.name in found:
                    raise ConfigError(f"Two probes are named '{p.name}' ({found[p.name].source} and "
                                      f"{p.source}). Rename one with @probe(name=...).")
                found[p.name] = p
    return list(found.values())


def figure_makers(probe_paths=()) -> list[tuple[str, Callable]]:
    """(probe name, figure function) of every figure the standard probes and the probe files in `probe_paths`
    declare: what the renderers (memaudit.report) draw a report's figures with."""
    return [(p.name, make) for p in collect([standard_probe_dir(), *map(Path, probe_paths)]) for make in p.figures]


def _probes_in(file: Path) -> list[ProbeDef]:
    module = _standard_module(file) or _module_of_file(file)
    return _checked(module, file)


def _standard_module(file: Path):
    """A standard probe file as the module `memaudit.probes.<name>` (one module object, whoever imports it), or
    None for a file from elsewhere."""
    if file.resolve().parent != standard_probe_dir().resolve():
        return None
    try:
        return importlib.import_module(f"memaudit.probes.{file.stem}")
    except Exception as e:  # a broken installation: say which file
        raise ConfigError(f"Error while collecting probes from {file}: {type(e).__name__}: {e}. Reinstall memaudit.") \
            from e


def _module_of_file(file: Path):
    """A probe file from `probe_paths`, imported under a name made from its path (and again when it was edited)."""
    module_name = "memaudit_collected_" + re.sub(r"\W", "_", str(file.resolve()))
    try:
        content = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as e:
        raise ConfigError(f"Cannot read probe file {file}: {e.strerror or e}.") from None
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__memaudit_content__", None) != content:  # new, or edited since
        spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec)
        module.__memaudit_content__ = content
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except KeyboardInterrupt:
            del sys.modules[module_name]
            raise
        except BaseException as e:  # SystemExit too: a probe file must not end the run
            del sys.modules[module_name]
            raise ConfigError(f"Error while collecting probes from {file}: {type(e).__name__}: {e}. "
                              "Fix the file, or remove it from 'probe_paths'.") from e
    return module


def _checked(module, file: Path) -> list[ProbeDef]:
    """The probes a module defines, each checked: the arguments it and its rows function ask for exist."""
    probes = [v for v in vars(module).values() if isinstance(v, ProbeDef)]
    for p in probes:
        p.source = str(file)
        allowed = PRODUCTS if p.kind == "checkpoint" else SERIES_ARGS
        for arg in p.args:
            if arg not in allowed:
                raise ConfigError(
                    f"Probe '{p.name}' in {file} asks for '{arg}', which is not available to a "
                    f"{p.kind} probe.{did_you_mean(arg, allowed)} Available: {', '.join(allowed)}. "
                    "Give it a default value if it is meant as a parameter.")
        for arg in p.row_args:
            if p.kind != "checkpoint" or arg not in ROW_ARGS:
                raise ConfigError(
                    f"Probe '{p.name}' in {file}: its rows function asks for '{arg}', which is neither a per-sample "
                    f"product nor a parameter of the probe.{did_you_mean(arg, [*ROW_ARGS, *p.params])} A rows "
                    f"function may ask for {', '.join(ROW_ARGS)} and the probe's parameters.")
    return probes


def select(probes: list[ProbeDef], params: dict[str, dict] | None,
           keywords: list[tuple[str, str | None]] = (), names: list[str] | None = None) -> list[ProbeDef]:
    """Set (validated) parameters from the yaml's `probes:` mapping, keep the probes every keyword
    expression matches (`keywords`: (where it came from, e.g. "-k", expression)) and, when `names` is
    given (the Python API's list of probes), only those, then add the probes the kept ones `use`, as
    pytest adds the fixtures a test needs."""
    by_name = {p.name: p for p in probes}
    for name in names or ():
        if name not in by_name:
            raise ConfigError(f"Unknown probe '{name}' in the list of probes.{did_you_mean(name, by_name)} "
                              f"Collected probes: {', '.join(by_name) or 'none'}.")
    for name, values in (params or {}).items():
        if name not in by_name:
            raise ConfigError(f"Unknown probe '{name}' in the yaml's 'probes'.{did_you_mean(name, by_name)} "
                              f"Collected probes: {', '.join(by_name) or 'none'}.")
        p = by_name[name]
        for key in values or {}:
            if key not in p.params:
                raise ConfigError(f"Probe '{name}' has no parameter '{key}'.{did_you_mean(str(key), p.params)} "
                                  f"Its parameters: {', '.join(p.params) or 'none'}.")
        by_name[name] = dataclasses.replace(p, params={**p.params, **validate_params(p, values or {})})
    matchers = [(where, expr, parse_keyword(expr, where)) for where, expr in keywords if expr]
    asked = set(params or {}) | set(names or ())
    chosen = [p for p in by_name.values() if all(match(p.name) for _, _, match in matchers)
              and (names is None or p.name in names) and (not p.opt_in or p.name in asked)]
    if not chosen:
        shown = " and ".join([f"{where} '{expr}'" for where, expr, _ in matchers] +
                             ([f"the list {names}"] if names is not None else []))
        raise NothingCollected(f"No probe was selected by {shown or 'the configuration'}. Collected: "
                               f"{', '.join(by_name) or 'none'}. Run `memaudit list` to see them.")
    return _with_dependencies(chosen, by_name, asked)


def _with_dependencies(chosen: list[ProbeDef], by_name: dict[str, ProbeDef], asked: set[str]) -> list[ProbeDef]:
    """`chosen` plus every probe they use (transitively), in collection order; an opt-in probe only when
    `asked` names it."""
    wanted = {p.name for p in chosen}
    todo = list(chosen)
    while todo:
        p = todo.pop()
        for dep in p.uses:
            if dep not in by_name:
                raise ConfigError(f"Probe '{p.name}' ({p.source}) uses the results of probe '{dep}', which is not "
                                  f"collected.{did_you_mean(dep, by_name)} Collect it (probe_paths) or deselect "
                                  f"'{p.name}'.")
            if dep not in wanted and (not by_name[dep].opt_in or dep in asked):
                wanted.add(dep)
                todo.append(by_name[dep])
    return [p for p in by_name.values() if p.name in wanted]


def validate_params(p: ProbeDef, values: dict) -> dict:
    """Parameter values from the yaml checked against the probe's annotations (or, without one, the type
    of its default), strictly: `k: "32"` is an error, not 32; numbers must be finite."""
    from pydantic import TypeAdapter, ValidationError

    types = _param_types(p)
    out, errors = {}, []
    for key, value in values.items():
        try:
            out[key] = TypeAdapter(types.get(key, Any)).validate_python(value, strict=True)
        except ValidationError as e:
            err = e.errors()[0]
            where = "".join(f"[{part}]" for part in err["loc"])
            errors.append(f"{key}{where} = {err['input']!r}: {err['msg']}")
            continue
        if not _finite(out[key]):
            errors.append(f"{key} = {value!r}: numbers must be finite")
    if errors:
        raise ConfigError(f"Probe '{p.name}' ({p.source}): bad parameter value: {'; '.join(errors)}. Fix it under "
                          f"'probes: {p.name}:' in the yaml.")
    return out


def _param_types(p: ProbeDef) -> dict[str, Any]:
    """Each parameter's annotation, or the type of its default when it has none (floats take ints too)."""
    import typing

    try:
        hints = typing.get_type_hints(p.fn, include_extras=True)
    except Exception:  # an annotation that does not resolve: fall back to the defaults' types
        hints = {}
    defaults = {bool: bool, int: int, float: float, str: str}
    return {name: hints.get(name, defaults.get(type(default), Any)) for name, default in p.params.items()}


@dataclasses.dataclass(frozen=True)
class NameOf:
    """Marks a probe parameter whose value names a data set or a series of the yaml (`DatasetName`,
    `SeriesName`): a value given in the yaml is checked against the names before anything loads."""

    kind: str  # "dataset" or "series"


DatasetName = Annotated[str, NameOf("dataset")]
"""A probe parameter that names a data set of the yaml (e.g. membership's `members`)."""
SeriesName = Annotated[str, NameOf("series")]
"""A probe parameter that names another series of the yaml (e.g. unlearning's `reference`)."""


def validate_references(probes: list[ProbeDef], given: dict[str, dict], datasets: list[str],
                        series: list[str]) -> None:
    """Refuse a parameter value from the yaml (`given`: probe -> its parameters) that names a data set or
    series the yaml does not have, or a reference series that is the only series (nothing to compare with
    it), listing the valid names: such a value would give empty results after the whole run."""
    import typing

    names = {"dataset": datasets, "series": series}
    for p in probes:
        hints = typing.get_type_hints(p.fn, include_extras=True) if given.get(p.name) else {}
        for key, value in (given.get(p.name) or {}).items():
            mark = _name_mark(hints.get(key))
            if mark is None or value is None:
                continue
            valid, where = names[mark.kind], f"Probe '{p.name}': {key}: '{value}'"
            if value not in valid:
                raise ConfigError(f"{where} is no {mark.kind} of the yaml.{did_you_mean(str(value), valid)} "
                                  f"The {mark.kind} names: {', '.join(valid)}.")
            if mark.kind == "series" and valid == [value]:
                raise ConfigError(f"{where} is the only series of the yaml, so no series is compared with it. "
                                  "Add the series to compare with it (both are audited in one run).")
        named = {key: value for key, value in p.params.items() if _name_mark(hints.get(key)) == NameOf("dataset")}
        if given.get(p.name) and len(set(named.values())) < len(named):
            raise ConfigError(f"Probe '{p.name}': {', '.join(f'{k}: {v}' for k, v in named.items())} name one data "
                              "set twice, so the probe would compare it with itself. Name different data sets.")


def _name_mark(annotation) -> NameOf | None:
    """The NameOf mark of `DatasetName`, `SeriesName` or `SeriesName | None`, else None."""
    import typing

    for candidate in (annotation, *typing.get_args(annotation)):
        for mark in getattr(candidate, "__metadata__", ()):
            if isinstance(mark, NameOf):
                return mark
    return None


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def parse_keyword(expr: str, where: str = "-k") -> Callable[[str], bool]:
    """pytest's `-k` grammar: words match as case-insensitive substrings of the name, combined with
    `and`, `or`, `not` and parentheses. Returns the matcher; a malformed expression is a ConfigError
    naming `where` it came from (`-k` or the yaml's `select:`)."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    pos = 0

    def fail(why: str):
        raise ConfigError(f"{where} '{expr}' is not a valid expression ({why}): use words combined with and, or, "
                          "not and parentheses, e.g. 'memorization and not series'.")

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def either():
        left = both()
        while peek() == "or":
            take()
            left = (lambda a, b: lambda n: a(n) or b(n))(left, both())
        return left

    def both():
        left = negation()
        while peek() == "and":
            take()
            left = (lambda a, b: lambda n: a(n) and b(n))(left, negation())
        return left

    def negation():
        if peek() == "not":
            take()
            inner = negation()
            return lambda n: not inner(n)
        return atom()

    def atom():
        token = peek()
        if token is None:
            fail("it ends too early")
        take()
        if token == "(":
            inner = either()
            if peek() != ")":
                fail("a '(' is not closed")
            take()
            return inner
        if token in (")", "and", "or"):
            fail(f"'{token}' where a word was expected")
        return lambda n, word=token.lower(): word in n.lower()

    matcher = either()
    if peek() is not None:
        fail(f"unexpected '{peek()}'")
    return matcher


def matches_keyword(expr: str, name: str) -> bool:
    """Whether probe `name` matches the `-k` expression `expr`."""
    return parse_keyword(expr)(name)


def probe_arguments(samples, products: dict, text_products: dict, checkpoint, ledger,
                    part: slice | None = None) -> dict[str, Any]:
    """Everything a per-checkpoint probe may ask for on one data set (the names of memaudit.engine.catalog);
    with `part`, of the samples in that slice only (`products` are then the shard's). Arrays as read-only
    views, so a probe that writes into its inputs fails instead of changing what the probes after it see."""
    import numpy as np

    from memaudit.engine.sampling import PREFIX

    def read_only(array):
        view = array.view()
        view.flags.writeable = False
        return view

    def cut(value):
        return value[part] if part is not None and value is not None and not callable(value) else value

    per_scheme = {k.removeprefix(PREFIX): read_only(v) for k, v in products.items() if k.startswith(PREFIX)}
    values = {**{k: v for k, v in products.items() if not k.startswith(PREFIX)}, "sampling_logprobs": per_scheme,
              "tokens": cut(samples.tokens), "sample_ids": cut(samples.ids), "sample_steps": cut(samples.steps),
              "target_mask": cut(samples.target_mask), "lengths": cut(samples.lengths), "n_bytes": cut(samples.n_bytes),
              "n_words": cut(samples.n_words), "dataset": samples.info(), "checkpoint": checkpoint,
              "ledger": ledger, **{k: cut(v) for k, v in text_products.items()}}
    return {name: read_only(v) if isinstance(v, np.ndarray) else v for name, v in values.items()}


def reads(p: ProbeDef, arguments: dict) -> bool:
    """Whether a per-checkpoint probe looks at this data set: data sets with a target mask (canary
    candidates) go only to probes that read the mask, or see every data set (`per_dataset=False`); data sets of
    whole records (rows of varied length, padded) only to probes that read `lengths` (`honours_lengths`)."""
    if not honours_lengths(p, arguments):
        return False
    return not p.per_dataset or arguments["target_mask"] is None or "target_mask" in p.wants


def honours_lengths(p: ProbeDef, arguments: dict) -> bool:
    """Whether a probe can be given this data set as far as sample lengths go: fixed-length samples, or a probe
    that reads `lengths` (its own or its rows function's argument) and so knows where each padded row ends."""
    return arguments.get("lengths") is None or "lengths" in p.wants


def row_columns(p: ProbeDef, arguments: dict) -> dict[str, Any]:
    """Call `p`'s rows function on one shard (`arguments`: the shard's probe_arguments) and check what it
    returns: columns of numbers, booleans or text, one per sample of the shard."""
    import numpy as np

    n = len(arguments["sample_ids"])
    where = f"Probe '{p.name}' ({p.source}): its rows function"
    out = _call_user_code(p.rows, {**{a: arguments[a] for a in p.row_args}, **{a: p.params[a] for a in p.row_params}},
                          where, "a dict of columns")
    columns = {}
    for name, values in out.items():
        array = np.asarray(values)
        if array.shape != (n,) or array.dtype.kind not in "biufU" or not isinstance(name, str) or "." in name:
            raise MemauditError(f"{where} returned column {name!r} of {array.dtype} values, shape {array.shape}: a "
                                f"column is named without dots and holds one number or boolean per sample ({n} "
                                "here), or one text (a numpy str array).", ExitCode.INTERNAL_ERROR)
        columns[name] = array
    return columns


def call_checkpoint_probes(probes: list[ProbeDef], arguments: dict[str, dict], checkpoint, ledger,
                           skip=(), rows: dict | None = None) -> dict[str, dict[str, Any]]:
    """Every per-checkpoint probe not in `skip` on every data set it reads (`arguments`: data set -> its
    `probe_arguments`), or once with all of them (`per_dataset=False`, under the name "all"). `rows`:
    probe -> data set -> its rows function's columns over every sample (see memaudit.engine.shards)."""
    results: dict[str, dict[str, Any]] = {}
    for p in probes:
        if p.name in skip:
            continue
        mine = (rows or {}).get(p.name, {})
        with_rows = {name: {**args, "rows": mine.get(name)} for name, args in arguments.items()}
        if not p.per_dataset:  # the data sets of the yaml, not their group_by groups
            data = {name: SimpleNamespace(**args) for name, args in with_rows.items()
                    if args["dataset"].group_of is None and honours_lengths(p, args)}
            results[p.name] = {"all": call_probe(p, {"data": data, "checkpoint": checkpoint, "ledger": ledger})}
            continue
        results[p.name] = {name: call_probe(p, args) for name, args in with_rows.items() if reads(p, args)}
    return results


def probe_on(p: ProbeDef, **arguments) -> dict:
    """A per-checkpoint probe's metrics on arguments given by name (products, sample_ids, dataset, ...): its
    rows function, if it has one, runs on all of them as one shard. For tests and notebooks. The products of whole
    records (`lengths`, `n_bytes`, `n_words`) are None unless given: samples of one length."""
    arguments = {"lengths": None, "n_bytes": None, "n_words": None, **arguments}
    if p.rows is not None:
        arguments = {**arguments, "rows": row_columns(p, arguments)}
    return call_probe(p, arguments)


def call_series_probes(probes: list[ProbeDef], context: dict) -> dict[str, dict]:
    """Every series probe on one series (`context`: the names of memaudit.engine.catalog.SERIES_ARGS)."""
    return {p.name: call_probe(p, context) for p in probes}


def call_probe(p: ProbeDef, context: dict) -> dict:
    """Call a probe with the arguments it names and its parameters; its metrics made JSON-ready. A probe
    that raises or returns no dict is a bug in the probe (exit 3), named with its file."""
    out = _call_user_code(p.fn, {**{a: context[a] for a in p.args}, **p.params}, f"Probe '{p.name}' ({p.source})",
                          "a dict of metrics")
    return jsonable(out)


def _call_user_code(fn: Callable, arguments: dict, where: str, returns: str) -> dict:
    """Call a probe's function; an exception from it, or anything but a dict, is a bug in the probe (exit 3)."""
    try:
        out = fn(**arguments)
    except MemauditError:
        raise
    except Exception as e:
        raise MemauditError(f"{where} raised {type(e).__name__}: {e}. This is a bug in the probe; run with --debug "
                            "for the traceback.", ExitCode.INTERNAL_ERROR) from e
    if not isinstance(out, dict):
        raise MemauditError(f"{where} returned {type(out).__name__}; it must return {returns}.",
                            ExitCode.INTERNAL_ERROR)
    return out


def jsonable(value):
    """numpy scalars/arrays and pydantic models -> Python; NaN/inf -> None (JSON has neither)."""
    import numpy as np

    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(exclude_none=True))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
