"""A data set's samples as memaudit scores them (`Samples`: token rows with stable ids, their fields and training
steps), and the checks every loader applies to its records' ids, steps, fields and token ids. The loaders are
memaudit/inputs/data.py (every token format) and memaudit/inputs/records.py (whole records)."""

from __future__ import annotations

import collections
import collections.abc
import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from memaudit.errors import ConfigError
from memaudit.inputs.config import DatasetConfig
from memaudit.memory import release_pages
from memaudit.names import group_name
from memaudit.results.schema import DatasetInfo, GroupInfo, RecordsInfo


class InputChanged(ConfigError):
    """A memory-mapped data file changed while the audit read it: nothing computed from it is stored."""

    def __init__(self, name: str, path: Path):
        super().__init__(f"Data set '{name}': '{path}' changed while the audit was reading it (written, cut short or "
                         "replaced). Nothing computed from it was stored. Leave the file as it is while memaudit "
                         "runs (write a new file and point the yaml at it), then run the audit again.")


def file_stamp(path: Path) -> tuple | None:
    """(size, modification time in ns, inode, device) of a file, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


class Group(NamedTuple):
    """A group of a data set's samples by their group_by field: its name (the key of its results), the field, the
    value (int, float, bool or text) and the samples' indices (samples in the group,)."""

    name: str
    field: str
    value: object
    index: np.ndarray


HASH_ROWS = 1 << 16  # samples hashed at a time


class NumberedIds(collections.abc.Sequence):
    """The ids `<prefix><first + i>` of n samples, made when asked for: a million samples need no million
    strings. Behaves as the list of those strings (indexing, slicing, iteration, `in`, equality)."""

    def __init__(self, prefix: str, first: int, n: int):
        self.prefix, self.first, self.n = prefix, first, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            if step == 1:
                return NumberedIds(self.prefix, self.first + start, max(0, stop - start))
            return [self[j] for j in range(start, stop, step)]
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"sample {i} of {self.n}")
        return f"{self.prefix}{self.first + (i % self.n)}"

    def __contains__(self, sid) -> bool:
        rest = sid[len(self.prefix):] if isinstance(sid, str) and sid.startswith(self.prefix) else ""
        return rest.isdigit() and str(int(rest)) == rest and 0 <= int(rest) - self.first < self.n

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a == b for a, b in zip(self, other)) \
            if isinstance(other, collections.abc.Sequence) else NotImplemented

    def __str__(self) -> str:  # what the data set fingerprint hashes (memaudit.engine.identity.digest)
        return f"NumberedIds({self.prefix!r}, {self.first}, {self.n})"

    __repr__ = __str__


@dataclass
class Samples:
    """A data set cut into samples for one tokenizer."""

    config: DatasetConfig
    tokens: np.ndarray  # (n_samples, seq_len) integer token ids; a read-only memory map for .npy and .bin data
    ids: list[str] | NumberedIds
    steps: np.ndarray | None = None  # (n_samples,) training step at which each sample was seen, when known
    target_mask: np.ndarray | None = None  # (n_samples, seq_len - 1) targets to score (canary candidates)
    canaries: dict | None = None  # canary id -> {"space", "exact", "n_candidates"}
    mapped: tuple = ()  # (path, stat stamp) of each file `tokens` is memory-mapped from, as it was when opened
    fields: dict = field(default_factory=dict)  # per-sample fields of the data (the group_by field): name -> (n,)
    group_of: str | None = None  # for a group of group_by: the data set it is part of
    group: GroupInfo | None = None  # for a group of group_by: its field and value
    lengths: np.ndarray | None = None  # (n_samples,) with `samples: records`: tokens of each row, the rest padding
    n_bytes: np.ndarray | None = None  # (n_samples,) with `samples: records`: UTF-8 bytes of each record's text
    n_words: np.ndarray | None = None  # (n_samples,) with `samples: records`: its words (lm-eval's count)
    cut: np.ndarray | None = None  # (n_samples,) with `samples: records`: tokens cut away from each record (`cut`)
    prefix: tuple[str, int | None] = ("none", None)  # with `samples: records`: the token before each record, its id

    @functools.cached_property
    def sha256(self) -> str:
        """Hash of the tokens (and their shape) as int64, whatever their stored type, read in chunks (a memory
        map is never loaded whole), and for whole records their lengths and window: what the products cache is keyed
        by."""
        return self._token_digest()

    def _token_digest(self) -> str:
        h = hashlib.sha256(str(self.tokens.shape).encode())
        for start in range(0, len(self.tokens), HASH_ROWS):
            h.update(np.ascontiguousarray(self.tokens[start:start + HASH_ROWS], dtype=np.int64).data)
            release_pages(self.tokens)  # each chunk's pages leave our memory: a pass over the file stays flat
        if self.lengths is not None:  # whole records: where each row ends and the window decide every product
            h.update(np.ascontiguousarray(self.lengths, dtype=np.int64).data)
            h.update(f"window={self.config.seq_len}".encode())
        return h.hexdigest()

    def check_unchanged(self, rehash: bool = False) -> None:
        """Raise InputChanged when a file the tokens are memory-mapped from (.npy, Megatron .bin/.idx) was
        written, truncated or replaced since it was opened: its size, modification time and inode, and with
        `rehash` the hash of the tokens read now against the one the run is keyed by. Called before any
        result computed from the tokens is stored (shard journal, products cache, run journal), and before
        each shard is read (a file cut short under a memory map would crash the process)."""
        for path, stamp in self.mapped:
            if file_stamp(path) != stamp:
                raise InputChanged(self.config.name, path)
        if rehash and self.mapped and self._token_digest() != self.sha256:
            raise InputChanged(self.config.name, self.mapped[0][0])

    @functools.cached_property
    def fingerprint(self) -> str:
        """Everything of the data set a probe can see besides the path: tokens, ids, training steps,
        target mask, canary metadata and the settings in the report's DatasetInfo (see memaudit.engine.identity)."""
        from memaudit.hashing import digest

        h = hashlib.sha256(self.sha256.encode())
        whole = (self.lengths, self.n_bytes, self.n_words, self.cut) if self.lengths is not None else ()  # fixed: as before
        for array in (self.steps, self.target_mask, *self.fields.values(), *whole):
            h.update(b"-" if array is None else repr(array.tolist()).encode() if array.dtype == object
                     else np.ascontiguousarray(array).tobytes())
        info = self.info().model_dump(exclude={"path"})
        return digest(h.hexdigest(), self.ids, info)

    def info(self) -> DatasetInfo:
        whole = self.lengths is not None
        return DatasetInfo(name=self.config.name, role=self.config.role, path=str(self.config.path),
                           seq_len=self.config.seq_len if whole else int(self.tokens.shape[1]),
                           n_samples=len(self.ids), n_tokens=int(self.lengths.sum()) if whole else int(self.tokens.size),
                           sha256=self.sha256[:16], seen_at_step=self.config.seen_at_step, canaries=self.canaries,
                           group_by=self.config.group_by, group_of=self.group_of, group=self.group,
                           records=self._records_info() if whole else None)

    def _records_info(self) -> RecordsInfo:
        """How these records are scored (windows counted as memaudit.engine.forward.record_windows cuts them)."""
        window, targets = self.config.seq_len, self.lengths - 1  # (samples,) each
        longer = (targets > window) | (self.cut > 0)
        return RecordsInfo(prefix=self.prefix[0], prefix_token=self.prefix[1], longer=self.config.longer,
                           n_longer=int(longer.sum()), n_cut_tokens=int(self.cut.sum()),
                           n_windows=int(windows_per_record(self.lengths, window).sum()),
                           n_targets=int(targets.sum()), min_tokens=int(self.lengths.min()),
                           max_tokens=int(self.lengths.max()))

    @property
    def record_start(self) -> int:
        """Where a record's own tokens start in its row: 1 after a prefix token, else 0 (fixed-length samples: 0)."""
        return int(self.prefix[1] is not None)

    @property
    def n_targets(self) -> int:
        """Tokens scored: every sample's tokens after its first (padding never counts)."""
        return int((self.lengths - 1).sum()) if self.lengths is not None else \
            int(self.tokens.shape[0] * (self.tokens.shape[1] - 1))

    def groups(self) -> list[Group]:
        """Each group of the group_by field's values, in the values' order (numbers numerically): its name
        (`train[dup=4]`, the key of its results), the field, the value and its samples' indices."""
        name = self.config.group_by
        if name is None:
            return []
        unique, which = np.unique(self.fields[name], return_inverse=True)  # which: (samples,) index into unique
        # by position, not `values == v`: numpy would compare text as its own string type (trailing NULs dropped)
        return [Group(group_name(self.config.name, name, v), name, v.item() if hasattr(v, "item") else v,
                      np.flatnonzero(which == k)) for k, v in enumerate(unique)]

    def subset(self, group: Group) -> Samples:
        """A group's samples as a data set of their own, named after it."""
        index = group.index
        config = self.config.model_copy(update={"name": group.name, "group_by": None})
        pick = lambda a: a[index] if a is not None else None
        return Samples(config, self.tokens[index], [self.ids[int(i)] for i in index], pick(self.steps),
                       pick(self.target_mask), self.canaries, group_of=self.config.name,
                       fields={k: v[index] for k, v in self.fields.items()}, lengths=pick(self.lengths),
                       n_bytes=pick(self.n_bytes), n_words=pick(self.n_words), cut=pick(self.cut), prefix=self.prefix,
                       group=GroupInfo(field=group.field, value=group.value))


def check_vocabulary(where: str, high: int, vocab_size: int) -> None:
    """Refuse a token id the series' tokenizer does not have (`high`: the largest id of the data `where` names)."""
    if high >= vocab_size:
        raise ConfigError(f"{where} holds token id {high}, but the series' tokenizer has {vocab_size} tokens: the "
                          "data was tokenized with another tokenizer. Re-create it with this series' tokenizer, or "
                          "audit the series it belongs to.")


INT64 = (-(2 ** 63), 2 ** 63 - 1)


def field_values(config: DatasetConfig, values: list, where) -> np.ndarray:
    """The group_by field's values, one per sample, typed and exact: each present, not null, of one JSON type
    (numbers, text or booleans); numbers finite, integers within 64 bits, and where integers and floats mix,
    every integer one a float holds exactly (else 2**53 and 2**53 + 1 would become one group). `where(i)` names
    sample i. Returns int64, float64, bool or (text) object values."""
    field_name = config.group_by
    kind, has_float, has_int = None, False, False
    for i, v in enumerate(values):
        if v is None:
            raise ConfigError(f"{where(i)} has no field '{field_name}' (group_by), or it is null: every sample needs "
                              "a value to be grouped by.")
        numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        this = "boolean" if isinstance(v, (bool, np.bool_)) else "number" if numeric else "text" if isinstance(v, str) \
            else None
        if this is None:
            raise ConfigError(f"{where(i)}: field '{field_name}' (group_by) is {type(v).__name__}; group by numbers, "
                              "text or booleans.")
        kind = kind or this
        if this != kind:
            raise ConfigError(f"{where(i)}: field '{field_name}' (group_by) is {this}, but the first sample's is "
                              f"{kind}: give it one type in every record.")
        if this != "number":
            continue
        if isinstance(v, (float, np.floating)):
            has_float = True
            if not np.isfinite(v):
                what = "NaN" if np.isnan(v) else "infinite"
                raise ConfigError(f"{where(i)}: field '{field_name}' (group_by) is {what}, which is no group: give every "
                                  "sample a finite value.")
        else:
            has_int = True
            if not INT64[0] <= int(v) <= INT64[1]:
                raise ConfigError(f"{where(i)}: field '{field_name}' (group_by) is {int(v)}, outside 64-bit integers, "
                                  "which memaudit cannot keep exactly (in reports and Parquet files): give it as text.")
    if kind == "text":
        return np.asarray(values, dtype=object)
    if kind == "boolean":
        return np.asarray(values, dtype=bool)
    if has_float and has_int:
        for i, v in enumerate(values):
            if not isinstance(v, (float, np.floating)) and int(float(v)) != int(v):
                raise ConfigError(f"{where(i)}: field '{field_name}' (group_by) is the integer {int(v)}, and other "
                                  "samples' values are floats, which cannot hold it exactly: its group would merge "
                                  "with its neighbours'. Give the field integers only, or text.")
    return np.asarray(values, dtype=np.float64 if has_float else np.int64)


def record_steps(config: DatasetConfig, ids: list[str], steps: list) -> np.ndarray | None:
    """Check the records' ids (unique) and `seen_at_step` (given for every record or none); the steps as int64
    (samples,), or None."""
    dupes = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if dupes:
        raise ConfigError(f"Data set '{config.name}': the id '{dupes[0]}' is given to several records of "
                          f"'{config.path}'. Sample ids must be unique (they name samples in the report and the "
                          "ledger).")
    known = [s for s in steps if s is not None]
    if known and len(known) != len(steps):
        raise ConfigError(f"Data set '{config.name}': some records of '{config.path}' have 'seen_at_step' and some "
                          "do not. Give it for every record or for none.")
    return np.asarray(steps, dtype=np.int64) if known else None


def windows_per_record(lengths: np.ndarray, window: int) -> np.ndarray:
    """(records,) windows the model reads per record (memaudit.engine.forward.record_windows): one for a record whose
    targets (lengths - 1) fit the window, one per `window` targets (the last one fewer) for a longer one."""
    return np.maximum(1, -(-(lengths - 1) // window))
