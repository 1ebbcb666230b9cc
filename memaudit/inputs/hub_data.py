"""Data files of Hugging Face Hub data set repositories: `path: hf://datasets/<owner>/<name>[@<revision>]/<file>`.

The file is downloaded into the HF cache with huggingface_hub (the same client, cache, endpoint and offline mode as
the checkpoints) and read as a local file of its kind: Hubble's `passages_gutenberg_popular_nodup.jsonl.gz` as the
upstream tasks read it. Its content decides the data fingerprint, as for any file.
"""

from __future__ import annotations

import re
from pathlib import Path

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


def fetch_hub_file(path, name: str) -> Path:
    """The local copy (in the HF cache) of a Hub data set file, downloaded when it is not there; SourceUnavailable
    when the repository, revision or file cannot be had (offline without it in the cache, gone, a failing server
    after the retries)."""
    from huggingface_hub import hf_hub_download

    from memaudit.errors import SourceUnavailable
    from memaudit.inputs.sources import _hub_errors, retried

    repo, revision, file = parse_hub_path(path)

    try:
        return Path(retried(hf_hub_download, repo, file, repo_type="dataset", revision=revision,
                            guard=_hub_errors(repo, revision or "main")))
    except SourceUnavailable as e:
        raise SourceUnavailable(f"Data set '{name}': {shown(path)} cannot be had: {e}") from e


def shown(path) -> str:
    """An `hf://` path as the user wrote it (a Path keeps one slash after `hf:`)."""
    return re.sub(r"^hf:/+", "hf://", str(path))
