"""The run journal: each finished checkpoint's probe results, one durable record per checkpoint.

A record lives in `<cache>/journal/<key[:2]>/<key>.json` (a memaudit.engine.store entry), written atomically
(temp file, fsync, rename), so a run killed at any point leaves only whole records. Its key is
`memaudit.engine.identity.journal_key`: the checkpoint's weights, every data set's content, the ledger, the
tokenizer, the text and scoring settings and memaudit's code, and nothing of the yaml's text or
paths. Inside, each probe's results are stored with the probe's own key (its code and parameters):
a later run reuses exactly the probes whose key is unchanged. Resuming is automatic; `--no-cache`
turns it off.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from memaudit.engine.store import KeyedStore
from memaudit.results.schema import CheckpointResult


class JournalRecord(BaseModel):
    """One checkpoint's result and the key of each probe whose results it holds."""

    result: CheckpointResult
    probe_keys: dict[str, str]


class Journal:
    """Finished checkpoints, keyed by everything that decides their results."""

    def __init__(self, cache_root: Path | None, enabled: bool = True):
        self.store = KeyedStore(cache_root, "journal", ".json", enabled)
        self.enabled = enabled

    def _read(self, key: str) -> JournalRecord | None:
        data = self.store.read(key)
        try:
            return None if data is None else JournalRecord.model_validate_json(data)
        except ValueError:
            return None  # unreadable: recomputed

    def get(self, key: str, probe_keys: dict[str, str]) -> tuple[CheckpointResult | None, dict]:
        """The recorded result and the results of the probes in `probe_keys` whose key it matches
        (probe name -> data set -> metrics); (None, {}) when there is no readable record."""
        record = self._read(key)
        if record is None:
            return None, {}
        reused = {name: record.result.results[name] for name, k in probe_keys.items()
                  if record.probe_keys.get(name) == k and name in record.result.results}
        return record.result, reused

    def record(self, key: str, result: CheckpointResult, probe_keys: dict[str, str]) -> None:
        """Write one finished checkpoint durably (a checkpoint that failed is not recorded), keeping what
        an earlier record holds for probes this run did not select."""
        if not self.enabled or result.error is not None:
            return
        keys = {name: k for name, k in probe_keys.items() if name in result.results}
        old = self._read(key)
        if old is not None:
            kept = {name: k for name, k in old.probe_keys.items()
                    if name not in probe_keys and name in old.result.results}
            result = result.model_copy(update={"results": {**{n: old.result.results[n] for n in kept},
                                                           **result.results}})
            keys = {**kept, **keys}
        self.store.write(key, JournalRecord(result=result, probe_keys=keys).model_dump_json().encode())
