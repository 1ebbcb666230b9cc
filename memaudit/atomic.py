"""Files as readers see them: writes that readers see whole or not at all (a temp file in the same folder, fsync,
rename), and the hash a written file is recorded and checked by."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from memaudit.errors import ConfigError


class OutputError(ConfigError):
    """A result could not be written (disk full, no permission): exit 2, nothing half-written."""


def explain_write_error(path: Path, e: OSError) -> OutputError:
    """The OutputError that says why `path` could not be written and what to do."""
    if e.errno == errno.ENOSPC:
        hint = "The disk is full: free some space, or point --json / run.cache_dir at another disk."
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "The folder is not writable: fix its permissions, or choose another place."
    else:
        hint = "Check the path, its permissions and free space."
    return OutputError(f"Cannot write '{path}': {e.strerror or e}. {hint} Nothing was left half-written.")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (the folder is created when missing)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise explain_write_error(path, e) from e
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # what a plain open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise explain_write_error(path, e) from e
        raise


def check_writable(path: str | Path) -> None:
    """Fail now, not after hours of work, when `path` (a file to write later) cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise explain_write_error(path, e) from e


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks of 1 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file's content; a folder, an unreadable or a binary file is a ConfigError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"The {what} '{path}' is not UTF-8 text ({e.reason} at byte {e.start}); is it the right "
                          "file? Save it as UTF-8.") from None
    except IsADirectoryError:
        raise ConfigError(f"The {what} '{path}' is a folder; give the path of a file.") from None
    except OSError as e:
        raise ConfigError(f"Cannot read the {what} '{path}': {e.strerror or e}.") from None
