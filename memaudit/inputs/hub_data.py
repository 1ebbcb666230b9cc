"""Paths of data files in Hugging Face Hub data set repositories,
`path: hf://datasets/<owner>/<name>[@<revision>]/<file>` (their form only: memaudit.inputs.sources.fetch_hub_file
downloads them).

The file is downloaded into the HF cache with huggingface_hub (the same client, cache, endpoint and offline mode as
the checkpoints) and read as a local file of its kind: Hubble's `passages_gutenberg_popular_nodup.jsonl.gz` as the
upstream tasks read it. Its content decides the data fingerprint, as for any file.
"""

from __future__ import annotations

import re

HUB_PATH = re.compile(r"hf:/+datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<file>.+)")
"""`hf://datasets/owner/name[@revision]/file` (a Path keeps one slash after `hf:`)."""


def is_hub_path(path) -> bool:
    """Whether a data set path names a file of a Hub data set repository."""
    return str(path).startswith("hf:")


def parse_hub_path(path) -> tuple[str, str | None, str]:
    """(repo, revision or None, file) of an `hf://datasets/...` path; ValueError when it has another form."""
    m = HUB_PATH.fullmatch(str(path))
    if m is None:
        raise ValueError(f"'{shown(path)}' is not a Hub data set file: write hf://datasets/<owner>/<name>/<file> (or "
                         "hf://datasets/<owner>/<name>@<revision>/<file>)")
    return m.group("repo"), m.group("revision"), m.group("file")


def shown(path) -> str:
    """An `hf://` path as the user wrote it (a Path keeps one slash after `hf:`)."""
    return re.sub(r"^hf:/+", "hf://", str(path))
