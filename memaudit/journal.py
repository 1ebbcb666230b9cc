"""The run journal: each finished checkpoint's results, one durable record per checkpoint.

Records live in `<cache>/journal/<run key>/`, one JSON file per checkpoint written atomically
(temp file, fsync, rename), so a run killed at any point leaves only whole records. A run with the
same key (configuration, probe selection and parameters, dtype, memaudit version) picks them up
and skips those checkpoints: resuming is automatic; `--no-cache` turns it off.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from memaudit.atomic import atomic_write_text
from memaudit.schema import CheckpointResult


def run_key(config_hash: str, probes, dtype: str, version: str) -> str:
    """What a journal record depends on."""
    selection = sorted((p.name, json.dumps(p.params, sort_keys=True, default=str)) for p in probes)
    return hashlib.sha256(json.dumps([config_hash, selection, dtype, version]).encode()).hexdigest()[:24]


class Journal:
    """Finished checkpoints of one run key."""

    def __init__(self, cache_root: Path, key: str, enabled: bool = True):
        self.folder = Path(cache_root) / "journal" / key
        self.enabled = enabled

    def _path(self, series: str, name: str, identity: str) -> Path:
        # hashed names: series and checkpoint names from the yaml never become paths
        return self.folder / (hashlib.sha256(f"{series}\0{name}\0{identity}".encode()).hexdigest()[:32] + ".json")

    def get(self, series: str, name: str, identity: str) -> CheckpointResult | None:
        """The recorded result, or None (also for an unreadable record: it is recomputed)."""
        path = self._path(series, name, identity)
        if not self.enabled or not path.is_file():
            return None
        try:
            return CheckpointResult.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def record(self, series: str, name: str, identity: str, result: CheckpointResult) -> None:
        """Append one finished checkpoint durably."""
        if self.enabled and result.error is None:
            atomic_write_text(self._path(series, name, identity), result.model_dump_json())
