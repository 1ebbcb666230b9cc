"""Data sets -> fixed-length token samples with stable ids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memaudit.config import DatasetConfig
from memaudit.errors import ConfigError
from memaudit.schema import DatasetInfo


@dataclass
class Samples:
    """A data set cut into samples for one tokenizer."""

    config: DatasetConfig
    tokens: np.ndarray  # (n_samples, seq_len) int64
    ids: list[str]
    steps: np.ndarray | None = None  # (n_samples,) training step at which each sample was seen, when known
    target_mask: np.ndarray | None = None  # (n_samples, seq_len - 1) targets to score (canary candidates)
    canaries: dict | None = None  # canary id -> {"space", "exact", "n_candidates"}

    @property
    def sha256(self) -> str:
        """Hash of the tokens (and their shape): what the products cache is keyed by."""
        h = hashlib.sha256(str(self.tokens.shape).encode())
        h.update(np.ascontiguousarray(self.tokens).tobytes())
        return h.hexdigest()

    def info(self) -> DatasetInfo:
        return DatasetInfo(name=self.config.name, role=self.config.role, path=str(self.config.path),
                           seq_len=self.config.seq_len, n_samples=len(self.ids),
                           n_tokens=int(self.tokens.size), sha256=self.sha256[:16],
                           seen_at_step=self.config.seen_at_step, canaries=self.canaries)


def load_samples(config: DatasetConfig, tokenizer) -> Samples:
    """Read `config.path` (text, JSONL `text`, or JSONL `tokens`) and cut it into samples.

    Plain text and JSONL `text` records are tokenized (records joined by the EOS token), then cut
    into consecutive `seq_len` chunks; the remainder is dropped. JSONL `tokens` records are
    pre-tokenized samples (as the lab writes them) and are used as they are.
    """
    path, seq_len = Path(config.path), config.seq_len
    if not path.is_file():
        raise ConfigError(f"Data set '{config.name}': no file at '{path}'. Fix 'path' in the yaml "
                          "(relative paths are relative to the yaml's folder).")
    try:
        text = "" if path.suffix == ".npy" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"Data set '{config.name}': '{path}' is not UTF-8 text ({e.reason} at byte "
                          f"{e.start}). Convert it, e.g. `iconv -f latin1 -t utf-8`.") from None
    if config.role == "canary":
        from memaudit.canaries import candidate_samples, read_canaries

        tokens, mask, ids, meta = candidate_samples(read_canaries(path), tokenizer, config.max_candidates)
        return Samples(config, tokens, ids, target_mask=mask, canaries=meta)
    if path.suffix == ".npy":
        return _from_npy(config, path, len(tokenizer))
    if not text.strip():
        raise ConfigError(f"Data set '{config.name}': '{path}' is empty. Point 'path' at a file with text.")

    if path.suffix in (".jsonl", ".json"):
        records = _read_jsonl(config, text)
        if "tokens" in records[0]:
            return _pretokenized(config, records, len(tokenizer))
        text_parts = [str(r.get("text", "")) for r in records]
    else:
        text_parts = [text]

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    n_text_tokens = 0
    for i, part in enumerate(text_parts):
        ids = tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"]
        stream += ids
        n_text_tokens += len(ids)
        if i < len(text_parts) - 1:
            stream += eos
    if not n_text_tokens:
        raise ConfigError(f"Data set '{config.name}': the text of '{path}' tokenizes to nothing. "
                          "Check that the file holds real text and that 'text' is the JSONL field.")
    n = len(stream) // seq_len
    if n == 0:
        raise ConfigError(f"Data set '{config.name}': '{path}' gives {len(stream)} tokens, too few for one "
                          f"sample of seq_len={seq_len}. Lower 'seq_len' or give more text.")
    if config.max_samples:
        n = min(n, config.max_samples)
    tokens = np.asarray(stream[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    return Samples(config, tokens, [f"{config.name}:{i}" for i in range(n)])


def _read_jsonl(config: DatasetConfig, text: str) -> list[dict]:
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"Data set '{config.name}': line {lineno} of '{config.path}' is not JSON "
                              f"({e.msg}). Each line must be an object with a 'text' or 'tokens' field.") from None
        if not isinstance(record, dict) or not ({"text", "tokens"} & record.keys()):
            raise ConfigError(f"Data set '{config.name}': line {lineno} of '{config.path}' has no 'text' "
                              "or 'tokens' field. Each line must be an object with one of them.")
        records.append(record)
    return records


def _from_npy(config: DatasetConfig, path: Path, vocab_size: int) -> Samples:
    """Token ids from a `.npy` array: (samples, length), or (steps, batch, length) as Pythia's batch
    viewer writes it, whose row j was seen at step `first_seen_step + j`."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ConfigError(f"Data set '{config.name}': '{path}' is not a readable .npy array of token ids ({e}).") from None
    steps = None
    if array.ndim == 3:
        if config.first_seen_step is not None:
            steps = np.repeat(np.arange(array.shape[0]) + config.first_seen_step, array.shape[1])
        array = array.reshape(-1, array.shape[2])
    if array.ndim != 2 or array.shape[1] < config.seq_len or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(f"Data set '{config.name}': '{path}' holds a {array.dtype} array of shape {array.shape}; "
                          f"expected integer token ids of shape (samples, >= seq_len={config.seq_len}) or "
                          "(steps, batch, length).")
    n = min(len(array), config.max_samples or len(array))
    records = [{"tokens": array[i, :config.seq_len].tolist(), "id": f"{config.name}:{i}",
                **({"seen_at_step": int(steps[i])} if steps is not None else {})} for i in range(n)]
    return _pretokenized(config, records, vocab_size)


def _pretokenized(config: DatasetConfig, records: list[dict], vocab_size: int) -> Samples:
    rows, ids, steps = [], [], []
    for i, r in enumerate(records):
        toks = r.get("tokens") or []
        if len(toks) < config.seq_len:
            raise ConfigError(f"Data set '{config.name}': record {i} of '{config.path}' has {len(toks)} "
                              f"tokens, fewer than seq_len={config.seq_len}. Lower 'seq_len' to at most "
                              "the shortest record.")
        rows.append(toks[: config.seq_len])
        ids.append(str(r.get("id", i)))
        steps.append(r.get("seen_at_step"))
        if config.max_samples and len(rows) == config.max_samples:
            break
    tokens = np.asarray(rows, dtype=np.int64)
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ConfigError(f"Data set '{config.name}': '{config.path}' holds token id {int(tokens.max())}, but the "
                          f"series' tokenizer has {vocab_size} tokens: the data was tokenized with another "
                          "tokenizer. Re-create it with this series' tokenizer, or audit the series it belongs to.")
    known = [s for s in steps if s is not None]
    if known and len(known) != len(steps):
        raise ConfigError(f"Data set '{config.name}': some records of '{config.path}' have 'seen_at_step' and some "
                          "do not. Give it for every record or for none.")
    return Samples(config, tokens, ids, np.asarray(steps, dtype=np.int64) if known else None)
