"""A Hugging Face Hub on the loopback address, for tests and benchmarks: the part of the Hub's HTTP API that
huggingface_hub uses to list a repository's branches, resolve a revision to its commit, and download files (HEAD
metadata with ETags, GET with byte ranges), serving model repositories from a folder:

    <root>/<owner>/<name>/<branch>/config.json, model.safetensors, tokenizer.json, ...

Each branch folder is one revision; its commit sha is a hash of its files' names and contents, so a branch whose
files change is another commit. memaudit (and any huggingface_hub client) uses it unchanged through the documented
endpoint setting: `HF_ENDPOINT=http://127.0.0.1:<port>`.

For measurements and faults: `bandwidth` throttles every response body (bytes per second, shared by all
connections, as one link would be), `faults` makes chosen requests fail (a connection cut after some bytes, an HTTP
status, a delay), and `log` records every request (method, path, byte range, status, bytes sent). The server binds
127.0.0.1 only and stops by itself after `max_seconds` or `max_requests`. Data set repositories are served the same
way from `<root>/datasets/<owner>/<name>/<branch>/`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".npy", ".gguf")  # served as LFS files (ETag: their sha256)


@dataclass
class Fault:
    """What happens to the next `times` requests whose path matches `path` (a regular expression) and `method`."""

    path: str
    method: str = "GET"
    cut_after: int | None = None  # close the connection after this many body bytes
    status: int | None = None  # answer with this HTTP status instead
    delay: float = 0.0  # seconds to wait before answering
    times: int = 1


@dataclass
class Served:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int
    started: float
    finished: float


@dataclass
class _Throttle:
    """A shared link of `rate` bytes per second: each chunk waits for its turn on the link."""

    rate: float | None
    free_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.free_at)
            self.free_at = start + n / self.rate
            pause = self.free_at - now
        time.sleep(pause)


class HubServer:
    """`with HubServer(root) as hub: os.environ["HF_ENDPOINT"] = hub.url ...`; `hub.log` lists the requests."""

    def __init__(self, root: Path, bandwidth: float | None = None, faults: list[Fault] | None = None,
                 max_seconds: float = 600, max_requests: int = 100_000, chunk: int = 1 << 16):
        self.root, self.faults, self.chunk = Path(root), list(faults or []), chunk
        self.throttle = _Throttle(bandwidth)
        self.max_requests, self.log = max_requests, []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(max_seconds, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubServer:
        return self.start() if not self._thread.is_alive() else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def fault_for(self, method: str, path: str) -> Fault | None:
        """The first fault that applies to this request (and one of its uses spent)."""
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def record(self, entry: Served) -> int:
        with self._lock:
            self.log.append(entry)
            return len(self.log)

    def downloads(self, pattern: str = r"\.safetensors$") -> dict[str, int]:
        """Completed GETs of files whose path matches `pattern`: path -> how many times (a measure of what was
        fetched more than once)."""
        out: dict[str, int] = {}
        for e in self.log:
            if e.method == "GET" and "/resolve/" in e.path and re.search(pattern, e.path) and e.status in (200, 206):
                out[e.path] = out.get(e.path, 0) + 1
        return out

    # the repository layout ----------------------------------------------------------------------------------------

    def branches(self, repo: str) -> list[str]:
        folder = self.root / repo
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def files(self, repo: str, branch: str) -> list[Path]:
        folder = self.root / repo / branch
        return sorted(p for p in folder.rglob("*") if p.is_file())

    def commit(self, repo: str, revision: str) -> tuple[str, str] | None:
        """(branch, commit sha) of a branch name or a commit sha; None when the repo has no such revision."""
        for branch in self.branches(repo):
            sha = self._sha(repo, branch)
            if revision in (branch, sha):
                return branch, sha
        return None

    def _sha(self, repo: str, branch: str) -> str:
        h = hashlib.sha1(f"{repo}@{branch}".encode())
        for f in self.files(repo, branch):
            h.update(str(f.relative_to(self.root / repo / branch)).encode() + b"\0" + _digest(f, "sha1").encode())
        return h.hexdigest()


def _digest(path: Path, kind: str) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, kind)
    if key not in _DIGESTS:
        h = hashlib.new(kind)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict = {}


def _sibling(path: Path, name: str) -> dict:
    entry = {"rfilename": name, "size": path.stat().st_size, "blobId": _digest(path, "sha1")}
    if name.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"sha256": _digest(path, "sha256"), "size": path.stat().st_size, "pointerSize": 134}
    return entry


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: the hub's own log records every request
            pass

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def do_GET(self) -> None:
            self._answer("GET")

        def _answer(self, method: str) -> None:
            started = time.monotonic()
            path = unquote(urlsplit(self.path).path)
            status, sent = 500, 0
            try:
                if len(hub.log) >= hub.max_requests:
                    status = self._error(503, "TooManyRequests", "the test hub's request budget is spent")
                    return
                fault = hub.fault_for(method, path)
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and fault.status:
                    status = self._error(fault.status, None, f"fault injected: {fault.status}")
                    return
                status, sent = self._route(method, path, fault)
            except (BrokenPipeError, ConnectionResetError):
                status = 499
            finally:
                hub.record(Served(method, path, self.headers.get("Range"), status, sent, started, time.monotonic()))

        def _route(self, method: str, path: str, fault: Fault | None) -> tuple[int, int]:
            m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/(.+))?", path)
            if m:
                return self._info(f"datasets/{m.group(1)}", m.group(2) or "main"), 0
            m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                return self._file(method, f"datasets/{m.group(1)}", m.group(2), m.group(3), fault)
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/refs", path)
            if m:
                repo = m.group(1)
                if not hub.branches(repo):
                    return self._error(404, "RepoNotFound", f"Repository {repo} not found"), 0
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": hub.commit(repo, b)[1]}
                            for b in hub.branches(repo)]
                return self._json({"branches": branches, "converts": [], "tags": []}), 0
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
            if m:
                return self._info(m.group(1), m.group(2) or "main"), 0
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
            if m:
                return self._error(404, "EntryNotFound", "no such folder"), 0
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                return self._file(method, m.group(1), m.group(2), m.group(3), fault)
            return self._error(404, None, f"not served by the test hub: {path}"), 0

        def _info(self, repo: str, revision: str) -> int:
            if not hub.branches(repo):
                return self._error(404, "RepoNotFound", f"Repository {repo} not found")
            found = hub.commit(repo, revision)
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            branch, sha = found
            folder = hub.root / repo / branch
            siblings = [_sibling(f, str(f.relative_to(folder))) for f in hub.files(repo, branch)]
            return self._json({"_id": sha, "id": repo.removeprefix("datasets/"), "modelId": repo, "sha": sha,
                               "private": False, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                               "lastModified": "2026-01-01T00:00:00.000Z", "siblings": siblings})

        def _file(self, method: str, repo: str, revision: str, name: str, fault: Fault | None) -> tuple[int, int]:
            if not hub.branches(repo):
                return self._error(404, "RepoNotFound", f"Repository {repo} not found"), 0
            found = hub.commit(repo, revision)
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}"), 0
            branch, sha = found
            path = hub.root / repo / branch / name
            if not path.is_file():
                return self._error(404, "EntryNotFound", f"{name} does not exist at {revision}", sha), 0
            size = path.stat().st_size
            etag = _digest(path, "sha256" if name.endswith(LFS_SUFFIXES) else "sha1")
            start, status = 0, 200
            asked = self.headers.get("Range")
            if asked and method == "GET":
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", asked.strip())
                if m and int(m.group(1)) < size:
                    start, status = int(m.group(1)), 206
            self.send_response(status)
            self.send_header("Content-Length", str(size - start))
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", sha)
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            if name.endswith(LFS_SUFFIXES):
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(size))
            self.end_headers()
            if method == "HEAD":
                return status, 0
            sent = 0
            with open(path, "rb") as f:
                f.seek(start)
                while chunk := f.read(hub.chunk):
                    if fault is not None and fault.cut_after is not None and sent + len(chunk) > fault.cut_after:
                        chunk = chunk[:max(0, fault.cut_after - sent)]
                        hub.throttle.wait(len(chunk))
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)  # the transfer is cut: the client sees a short body
                        return 499, sent
                    hub.throttle.wait(len(chunk))
                    self.wfile.write(chunk)
                    sent += len(chunk)
            return status, sent

        def _json(self, payload) -> int:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            return 200

        def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> int:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            return status

    return Handler


def serve_series(root: Path, repo: str, folders: dict[str, Path]) -> None:
    """Lay local checkpoint folders out as branches of `repo` under `root` (hard links where the file system allows,
    else copies): `{"step1": Path("series/step-1"), ...}`."""
    import os
    import shutil

    for branch, folder in folders.items():
        target = root / repo / branch
        target.mkdir(parents=True, exist_ok=True)
        for f in Path(folder).iterdir():
            if f.is_file():
                (target / f.name).unlink(missing_ok=True)
                try:
                    os.link(f, target / f.name)
                except OSError:
                    shutil.copy2(f, target / f.name)
