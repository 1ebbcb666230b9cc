"""One digest for every key memaudit makes (journal, products cache, shard journal, tag cache, data fingerprints):
sha256 of the JSON of its parts. The lowest floor: the engine, the inputs and the API all key with it."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(*parts: Any) -> str:
    """sha256 hex of JSON-encoded parts (sorted keys; other objects as their str)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
