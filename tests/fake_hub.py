"""Loopback fake of the Hugging Face Hub, for tests.

The real ``huggingface_hub`` / ``datasets`` client code talks to this server over real HTTP: nothing
is monkeypatched. Only the stdlib is used for the server (plus PyYAML, a hard dependency of
``huggingface_hub``, to parse README front matter).

Usage, stand-alone::

    with FakeHub() as hub:
        os.environ["HF_ENDPOINT"] = hub.url  # must happen BEFORE huggingface_hub/datasets are imported

Usage with pytest: call :func:`start_session_hub` at the very top of ``tests/conftest.py`` (before
anything imports ``huggingface_hub`` or ``datasets``) and use the :func:`fake_hub` fixture.

Endpoints (checked against huggingface_hub 2.4 / datasets 5.2), ``{t}`` in models|datasets|spaces:

- ``GET  /api/whoami-v2``
- ``POST /api/repos/create``, ``DELETE /api/repos/delete``, ``POST /api/validate-yaml``
- ``GET  /api/{t}/{ns}/{name}[/revision/{rev}]``  (``?blobs=1``, ``?expand=...``)
- ``POST /api/{t}/{ns}/{name}/preupload/{rev}``
- ``POST /api/{t}/{ns}/{name}/commit/{rev}``  (NDJSON, ``?create_pr=1``)
- ``GET  /api/{t}/{ns}/{name}/tree/{rev}[/{path}]``  (``recursive``, ``expand``, ``cursor`` pagination)
- ``POST /api/{t}/{ns}/{name}/paths-info/{rev}``  (form-encoded ``paths``/``expand``)
- ``GET  /api/{t}/{ns}/{name}/commits/{rev}``, ``GET .../refs``, ``POST .../branch/{branch}``
- ``POST /[{t}/]{ns}/{name}.git/info/lfs/objects/batch``  (LFS batch API, basic transfer)
- ``PUT  /__fake_lfs__/upload/{oid}``, ``POST /__fake_lfs__/verify/{oid}``  (hrefs handed out by batch)
- ``HEAD|GET /[{t}/]{ns}/{name}/resolve/{rev}/{path}``  (``Range`` supported)

Anything else is answered ``404`` and reported on stderr and in :attr:`FakeHub.unhandled`. Faults:
:meth:`FakeHub.fail_next` (an HTTP error, before or after acting), :meth:`FakeHub.stall_next` (no answer),
:meth:`FakeHub.on_request` (a hook, e.g. a concurrent writer).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import traceback
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlencode

import pytest

FAKE_TOKEN = "hf_fake_test_token_do_not_leak"
FAKE_USER = "tester"

_PREFIX_TO_TYPE = {"datasets": "dataset", "models": "model", "spaces": "space"}
_TYPE_TO_URL_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}
# Extensions tracked by LFS in the Hub's default .gitattributes (subset).
_LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".gz", ".h5", ".joblib", ".lz4", ".mds", ".msgpack",
    ".npy", ".npz", ".onnx", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth", ".safetensors",
    ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst", ".jpg", ".jpeg", ".png", ".webp",
    ".mp3", ".wav", ".ogg", ".flac", ".mp4",
)  # fmt: skip
_LFS_MIN_SIZE = 10 * 1024 * 1024
_GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in _LFS_SUFFIXES).encode()
_YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
_HEX = re.compile(r"[0-9a-f]{7,40}")
_LFS_ROUTE = "/__fake_lfs__/"
_PARENT_MISMATCH = "A commit has happened since. Please refresh and try again."

_API_REPO = re.compile(r"^/api/(?P<t>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?$")
_LFS_BATCH = re.compile(r"^/(?:(?P<t>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(?:(?P<t>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)/resolve/(?P<rest>.+)$")


def _now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Blob:
    """Immutable file content plus its git / LFS identifiers."""

    __slots__ = ("data", "lfs", "sha256", "git_oid", "pointer_size")

    def __init__(self, data: bytes, lfs: bool) -> None:
        self.data = data
        self.lfs = lfs
        self.sha256 = hashlib.sha256(data).hexdigest()
        if lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(data)}\n"
            self.git_oid = _git_oid(pointer.encode())
            self.pointer_size: int | None = len(pointer)
        else:
            self.git_oid = _git_oid(data)
            self.pointer_size = None


@dataclass
class _Commit:
    sha: str
    summary: str
    description: str
    parent: _Commit | None
    files: dict[str, _Blob]
    date: str
    changed: list[str]
    deleted: list[str]
    body: bytes | None = None


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    refs: dict[str, _Commit] = field(default_factory=dict)
    by_sha: dict[str, _Commit] = field(default_factory=dict)
    pr_count: int = 0


class RecordedRequest(NamedTuple):
    """One request received by the fake hub (body is the raw request body)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Fault:
    route: str
    status: int
    remaining: int | None
    method: str | None
    body: dict[str, Any] | None
    headers: dict[str, str]
    after: bool = False
    stall: float | None = None  # seconds to hold the request without answering, then drop the connection


@dataclass
class _Hook:
    route: str
    callback: Callable[[RecordedRequest], None]
    remaining: int | None
    method: str | None


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})


class _Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _split_rev(rest: str) -> tuple[str, str]:
    """Split ``{rev}[/{tail}]`` where rev is URL-quoted, or an unquoted ``refs/x/y``."""
    parts = rest.split("/")
    n = 3 if parts[0] == "refs" and len(parts) >= 3 else 1
    return unquote("/".join(parts[:n])), unquote("/".join(parts[n:]))


def _card_data(readme: bytes | None) -> dict[str, Any] | None:
    if readme is None:
        return None
    match = _YAML_BLOCK.search(readme.decode("utf-8", errors="replace"))
    if match is None:
        return None
    import yaml  # hard dependency of huggingface_hub

    data = yaml.safe_load(match.group(2))
    return data if isinstance(data, dict) else None


class FakeHub:
    """In-memory Hub serving repos over HTTP on 127.0.0.1 (context manager, background thread).

    Args:
        expected_token: if set, authenticated requests must carry exactly this bearer token.
        upload_mode: ``"auto"`` (LFS for binary / LFS-tracked extensions / >=10MB, like the Hub) or
            ``"lfs"`` (every non-empty file is LFS).
        tree_page_size: entries per ``tree`` page (the Hub uses 1000, and 50 with ``expand``).
        verbose: print every request on stderr.
    """

    def __init__(
        self,
        *,
        expected_token: str | None = None,
        upload_mode: str = "auto",
        tree_page_size: int = 1000,
        verbose: bool = False,
    ) -> None:
        self.expected_token = expected_token
        self.upload_mode = upload_mode
        self.tree_page_size = tree_page_size
        self.verbose = verbose
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self.lfs_objects: dict[str, bytes] = {}
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self._lock = threading.RLock()
        self._release = threading.Event()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.parent_view = False  # True for the URL-only view handed out in child processes

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeHub:
        """Bind a free port and serve in a daemon thread."""
        if self._server is not None:
            return self

        class Handler(_Handler):
            hub = self

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers
    def reset(self) -> None:
        """Forget all repos, LFS objects, requests, faults and hooks."""
        with self._lock:
            self._repos.clear()
            self.lfs_objects.clear()
            self.clear_log()
            self.clear_faults()

    def clear_log(self) -> None:
        """Forget recorded requests and unhandled routes."""
        with self._lock:
            self.requests.clear()
            self.unhandled.clear()

    def new_repo_id(self, name: str = "ds", namespace: str = FAKE_USER) -> str:
        """A repo id never used before in this hub (repos survive between tests)."""
        with self._lock:
            self._counter += 1
            return f"{namespace}/{name}-{self._counter:04d}"

    def fail_next(
        self,
        route: str,
        status: int,
        times: int | None = 1,
        *,
        method: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next ``times`` (None: all) requests whose path contains ``route`` with ``status``.

        ``after=True`` handles the request first (a commit lands) and then answers the failure: a response
        lost after the server acted, as a gateway timeout does.
        """
        with self._lock:
            fault = _Fault(route, status, times, method and method.upper(), body, dict(headers or {}), after)
            self._faults.append(fault)

    def stall_next(
        self, route: str, times: int | None = 1, *, method: str | None = None, seconds: float = 60.0
    ) -> None:
        """Never answer the next ``times`` (None: all) requests whose path contains ``route``: hold each for
        ``seconds`` (or until ``clear_faults``), then close the connection without a response. A server that
        accepted the request and hangs, as an overloaded gateway does."""
        with self._lock:
            self._faults.append(_Fault(route, 0, times, method and method.upper(), None, {}, stall=seconds))

    def on_request(
        self,
        route: str,
        callback: Callable[[RecordedRequest], None],
        times: int | None = 1,
        *,
        method: str | None = None,
    ) -> None:
        """Call ``callback(request)`` when the next ``times`` (None: all) requests whose path contains ``route``
        arrive, before they are handled (e.g. ``external_commit`` on ``/preupload/``: a concurrent writer)."""
        with self._lock:
            self._hooks.append(_Hook(route, callback, times, method and method.upper()))

    def clear_faults(self) -> None:
        """Forget injected faults and request hooks."""
        with self._lock:
            self._faults.clear()
            self._hooks.clear()
            self._release.set()  # stalled requests end now
            self._release = threading.Event()

    def count(self, route: str, method: str | None = None) -> int:
        """Number of recorded requests whose path contains ``route`` (optionally with ``method``)."""
        with self._lock:
            return sum(1 for r in self.requests if route in r.path and (method is None or r.method == method.upper()))

    def create_repo(self, repo_id: str, *, repo_type: str = "dataset", private: bool = False) -> _Repo:
        """Create a repo with an initial ``.gitattributes`` commit, like the Hub."""
        with self._lock:
            key = (repo_type, repo_id)
            if key in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
            self._repos[key] = repo
            self._add_commit(repo, "main", None, {".gitattributes": _Blob(_GITATTRIBUTES, False)}, "initial commit")
            return repo

    def external_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | None],
        *,
        summary: str = "external commit",
        repo_type: str = "dataset",
        lfs: bool | None = None,
    ) -> str:
        """Commit on ``main`` behind the clients' back (concurrent writer); ``None`` deletes. Returns sha."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            head = repo.refs["main"]
            snapshot = dict(head.files)
            for path, data in files.items():
                if data is None:
                    snapshot.pop(path, None)
                else:
                    is_lfs = self._is_lfs(path, data[:512], len(data)) if lfs is None else lfs
                    if is_lfs:
                        self.lfs_objects[hashlib.sha256(data).hexdigest()] = data
                    snapshot[path] = _Blob(data, is_lfs)
            return self._add_commit(repo, "main", head, snapshot, summary).sha

    def commits(self, repo_id: str, *, repo_type: str = "dataset", rev: str = "main") -> list[dict[str, Any]]:
        """History of ``rev``, oldest first (sha, summary, description, files, changed, deleted, body...)."""
        with self._lock:
            commit: _Commit | None = self._resolve(self._get_repo(repo_type, repo_id), rev)
            out = []
            while commit is not None:
                out.append(
                    {
                        "sha": commit.sha,
                        "summary": commit.summary,
                        "description": commit.description,
                        "files": sorted(commit.files),
                        "changed": list(commit.changed),
                        "deleted": list(commit.deleted),
                        "lfs_files": sorted(p for p, b in commit.files.items() if b.lfs),
                        "date": commit.date,
                        "body": commit.body,
                    }
                )
                commit = commit.parent
            return out[::-1]

    def files(self, repo_id: str, rev: str = "main", *, repo_type: str = "dataset") -> dict[str, bytes]:
        """Snapshot of the repo at ``rev`` (branch, ``refs/pr/N`` or sha): path -> content."""
        with self._lock:
            return {p: b.data for p, b in self._resolve(self._get_repo(repo_type, repo_id), rev).files.items()}

    def head(self, repo_id: str, *, repo_type: str = "dataset") -> str:
        """Sha of ``main``."""
        with self._lock:
            return self._get_repo(repo_type, repo_id).refs["main"].sha

    def repo_exists(self, repo_id: str, *, repo_type: str = "dataset") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    # ------------------------------------------------------------------ internals: state
    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: _Repo, rev: str | None) -> _Commit:
        rev = rev or "main"
        if _HEX.fullmatch(rev.lower()) and rev not in repo.refs:
            rev = rev.lower()
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/") :]
        if rev in repo.refs:
            return repo.refs[rev]
        if _HEX.fullmatch(rev):
            matches = [c for sha, c in repo.by_sha.items() if sha.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
        raise _HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _add_commit(
        self,
        repo: _Repo,
        ref: str,
        parent: _Commit | None,
        files: dict[str, _Blob],
        summary: str,
        description: str = "",
        body: bytes | None = None,
    ) -> _Commit:
        self._counter += 1
        seed = f"{repo.repo_type}/{repo.repo_id}\0{parent.sha if parent else ''}\0{summary}\0{self._counter}"
        old = parent.files if parent else {}
        changed = sorted(p for p, b in files.items() if old.get(p) is not b)
        deleted = sorted(p for p in old if p not in files)
        commit = _Commit(
            sha=hashlib.sha1(seed.encode()).hexdigest(),
            summary=summary,
            description=description,
            parent=parent,
            files=files,
            date=_now(),
            changed=changed,
            deleted=deleted,
            body=body,
        )
        repo.by_sha[commit.sha] = commit
        repo.refs[ref] = commit
        return commit

    def _is_lfs(self, path: str, sample: bytes, size: int) -> bool:
        if size == 0:
            return False
        if self.upload_mode == "lfs":
            return True
        return path.lower().endswith(_LFS_SUFFIXES) or b"\0" in sample or size >= _LFS_MIN_SIZE

    def _take_hooks(self, method: str, path: str) -> list[_Hook]:
        with self._lock:
            hooks = [h for h in self._hooks if h.route in path and (h.method is None or h.method == method)]
            for hook in hooks:
                if hook.remaining is not None:
                    hook.remaining -= 1
                    if hook.remaining <= 0:
                        self._hooks.remove(hook)
            return hooks

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.route in path and (fault.method is None or fault.method == method):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ internals: routing
    def _handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> _Response:
        params = parse_qs(query, keep_blank_values=True)
        lower_headers = {k.lower(): v for k, v in headers.items()}
        auth = lower_headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if token is not None and self.expected_token is not None and token != self.expected_token:
            raise _HttpError(401, "Invalid credentials in Authorization header")

        if path.startswith(_LFS_ROUTE):
            return self._lfs_object(method, path[len(_LFS_ROUTE) :], body)
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami(token)
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(token, json.loads(body or b"{}"))
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo(token, json.loads(body or b"{}"))
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))

        if m := _API_REPO.match(path):
            repo_type = _PREFIX_TO_TYPE[m["t"]]
            repo = self._readable_repo(repo_type, f"{unquote(m['ns'])}/{unquote(m['name'])}", token)
            rest = m["rest"] or ""
            action, _, tail = rest[1:].partition("/")
            if action == "" and method == "GET":
                return self._repo_info(repo, "main", params)
            if action == "revision" and method == "GET":
                return self._repo_info(repo, _split_rev(tail)[0], params)
            if action == "tree" and method == "GET":
                return self._tree(repo, path, *_split_rev(tail), params)
            if action == "paths-info" and method == "POST":
                return self._paths_info(repo, _split_rev(tail)[0], body)
            if action == "commits" and method == "GET":
                return self._list_commits(repo, _split_rev(tail)[0])
            if action == "refs" and method == "GET":
                return self._refs(repo, params)
            if action == "preupload" and method == "POST":
                self._require_write(token)
                return self._preupload(repo, _split_rev(tail)[0], json.loads(body or b"{}"))
            if action == "commit" and method == "POST":
                self._require_write(token)
                return self._commit(repo, _split_rev(tail)[0], params, body)
            if action == "branch" and method == "POST":
                self._require_write(token)
                return self._create_branch(repo, unquote(tail), json.loads(body or b"{}"))
        elif (m := _LFS_BATCH.match(path)) and method == "POST":
            self._require_write(token)
            repo_type = _PREFIX_TO_TYPE.get(m["t"] or "models", "model")
            repo = self._readable_repo(repo_type, f"{unquote(m['ns'])}/{unquote(m['name'])}", token)
            return self._lfs_batch(repo, json.loads(body or b"{}"))
        elif (m := _RESOLVE.match(path)) and method in ("GET", "HEAD"):
            repo_type = _PREFIX_TO_TYPE.get(m["t"] or "models", "model")
            repo = self._readable_repo(repo_type, f"{unquote(m['ns'])}/{unquote(m['name'])}", token)
            rev, file_path = _split_rev(m["rest"])
            return self._resolve_file(repo, rev, file_path, lower_headers.get("range"))

        message = f"[fake-hub] UNHANDLED ROUTE: {method} {path}{'?' + query if query else ''}"
        print(message, file=sys.stderr, flush=True)
        self.unhandled.append(f"{method} {path}")
        raise _HttpError(404, f"Fake hub has no route for {method} {path}")

    def _readable_repo(self, repo_type: str, repo_id: str, token: str | None) -> _Repo:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
        if repo.private and token is None:
            raise _HttpError(401, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _require_write(token: str | None) -> None:
        if token is None:
            raise _HttpError(401, "You must be authenticated to perform this action")

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_TYPE_TO_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ------------------------------------------------------------------ endpoint implementations
    def _whoami(self, token: str | None) -> _Response:
        if token is None:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return _json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": FAKE_USER,
                "fullname": "Fake Tester",
                "email": None,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
            }
        )

    def _create_repo(self, token: str | None, payload: dict[str, Any]) -> _Response:
        self._require_write(token)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or FAKE_USER}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                url = self._repo_url(self._repos[(repo_type, repo_id)])
                return _json({"error": "You already created this dataset repo", "url": url}, 409)
            repo = self.create_repo(repo_id, repo_type=repo_type, private=private)
        return _json({"url": self._repo_url(repo), "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _delete_repo(self, token: str | None, payload: dict[str, Any]) -> _Response:
        self._require_write(token)
        key = (
            payload.get("type") or "model",
            f"{payload.get('organization') or FAKE_USER}/{payload['name']}",
        )
        with self._lock:
            if self._repos.pop(key, None) is None:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
        return _Response(200, b"", {})

    def _validate_yaml(self, payload: dict[str, Any]) -> _Response:
        try:
            _card_data(str(payload.get("content", "")).encode())
        except Exception as err:  # yaml.YAMLError
            return _json({"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}, 400)
        return _json({"errors": [], "warnings": []})

    def _repo_info(self, repo: _Repo, rev: str, params: dict[str, list[str]]) -> _Response:
        with self._lock:
            commit = self._resolve(repo, rev)
        blobs = _truthy(params.get("blobs", [None])[0])
        siblings = []
        for path in sorted(commit.files):
            blob = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(blob.data), blobId=blob.git_oid)
                if blob.lfs:
                    sibling["lfs"] = {
                        "sha256": blob.sha256,
                        "size": len(blob.data),
                        "pointerSize": blob.pointer_size,
                    }
            siblings.append(sibling)
        readme = commit.files.get("README.md")
        info: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(b.data) for b in commit.files.values()),
        }
        card = _card_data(readme.data if readme else None)
        if card:
            info["cardData"] = card
        expand = params.get("expand") or params.get("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
        return _json(info)

    def _entry(self, commit: _Commit, path: str, is_dir: bool, expand: bool) -> dict[str, Any]:
        if is_dir:
            prefix = path + "/"
            listing = "".join(f"{p}\0{b.git_oid}\n" for p, b in sorted(commit.files.items()) if p.startswith(prefix))
            entry: dict[str, Any] = {
                "type": "directory",
                "oid": _git_oid(listing.encode()),
                "size": 0,
                "path": path,
            }
        else:
            blob = commit.files[path]
            entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": blob.pointer_size}
        if expand:
            last = self._last_commit_touching(commit, path, is_dir)
            entry["lastCommit"] = {"id": last.sha, "title": last.summary, "date": last.date}
        return entry

    @staticmethod
    def _last_commit_touching(commit: _Commit, path: str, is_dir: bool) -> _Commit:
        def state(c: _Commit | None) -> Any:
            if c is None:
                return None
            if is_dir:
                return tuple((p, id(b)) for p, b in sorted(c.files.items()) if p.startswith(path + "/"))
            return id(c.files.get(path))

        current = commit
        while current.parent is not None and state(current.parent) == state(current):
            current = current.parent
        return current

    def _tree(self, repo: _Repo, raw_path: str, rev: str, path: str, params: dict[str, list[str]]) -> _Response:
        recursive = _truthy(params.get("recursive", [None])[0])
        expand = _truthy(params.get("expand", [None])[0])
        with self._lock:
            commit = self._resolve(repo, rev)
            path = path.strip("/")
            prefix = path + "/" if path else ""
            names = [p for p in commit.files if p.startswith(prefix)]
            if path and not names:
                raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
            dirs: set[str] = set()
            files: list[str] = []
            for name in names:
                parts = name[len(prefix) :].split("/")
                if recursive:
                    dirs.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts)))
                    files.append(name)
                elif len(parts) == 1:
                    files.append(name)
                else:
                    dirs.add(prefix + parts[0])
            ordered = [(d, True) for d in sorted(dirs)] + [(f, False) for f in sorted(files)]
            page_size = min(self.tree_page_size, 50) if expand else self.tree_page_size
            start = int(params.get("cursor", ["0"])[0] or 0)
            page = [self._entry(commit, p, is_dir, expand) for p, is_dir in ordered[start : start + page_size]]
        headers = {}
        if start + page_size < len(ordered):
            query = {k: v[0] for k, v in params.items() if k != "cursor"}
            query["cursor"] = str(start + page_size)
            headers["Link"] = f'<{self.url}{raw_path}?{urlencode(query)}>; rel="next"'
        return _json(page, headers=headers)

    def _paths_info(self, repo: _Repo, rev: str, body: bytes) -> _Response:
        form = parse_qs(body.decode(), keep_blank_values=True)
        expand = _truthy(form.get("expand", [None])[0])
        with self._lock:
            commit = self._resolve(repo, rev)
            out = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    out.append(self._entry(commit, path, False, expand))
                elif path and any(p.startswith(path + "/") for p in commit.files):
                    out.append(self._entry(commit, path, True, expand))
        return _json(out)

    def _list_commits(self, repo: _Repo, rev: str) -> _Response:
        with self._lock:
            commit: _Commit | None = self._resolve(repo, rev)
            out = []
            while commit is not None:
                out.append(
                    {
                        "id": commit.sha,
                        "title": commit.summary,
                        "message": commit.description,
                        "authors": [{"user": FAKE_USER, "avatar": ""}],
                        "date": commit.date,
                    }
                )
                commit = commit.parent
        return _json(out)

    def _refs(self, repo: _Repo, params: dict[str, list[str]]) -> _Response:
        with self._lock:
            branches, prs = [], []
            for name, commit in sorted(repo.refs.items()):
                if name.startswith("refs/pr/"):
                    prs.append({"name": name, "ref": name, "targetCommit": commit.sha})
                else:
                    branches.append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit.sha})
        out: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if _truthy(params.get("include_prs", [None])[0]):
            out["pullRequests"] = prs
        return _json(out)

    def _create_branch(self, repo: _Repo, branch: str, payload: dict[str, Any]) -> _Response:
        with self._lock:
            if branch in repo.refs:
                raise _HttpError(409, f"Reference refs/heads/{branch} already exists")
            repo.refs[branch] = self._resolve(repo, payload.get("startingPoint") or "main")
        return _json({})

    def _preupload(self, repo: _Repo, rev: str, payload: dict[str, Any]) -> _Response:
        with self._lock:
            commit = self._resolve(repo, rev)
            files = []
            for item in payload.get("files", []):
                path = item["path"]
                sample = base64.b64decode(item.get("sample", ""))
                existing = commit.files.get(path)
                is_lfs = existing.lfs if existing is not None else self._is_lfs(path, sample, int(item.get("size", 0)))
                oid = None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid)
                mode = "lfs" if is_lfs else "regular"
                files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return _json({"files": files, "commitOid": commit.sha})

    def _lfs_batch(self, repo: _Repo, payload: dict[str, Any]) -> _Response:
        if payload.get("operation") != "upload":
            raise _HttpError(422, "Only the upload operation is supported by the fake hub")
        objects = []
        with self._lock:
            for obj in payload.get("objects", []):
                oid, size = obj["oid"], int(obj["size"])
                out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in self.lfs_objects:
                    out["actions"] = {
                        "upload": {
                            "href": f"{self.url}{_LFS_ROUTE}upload/{oid}?size={size}",
                            "expires_in": 3600,
                        },
                        "verify": {"href": f"{self.url}{_LFS_ROUTE}verify/{oid}", "expires_in": 3600},
                    }
                objects.append(out)
        return _json(
            {"transfer": "basic", "objects": objects},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_object(self, method: str, rest: str, body: bytes) -> _Response:
        action, _, oid = rest.partition("/")
        if action == "upload" and method == "PUT":
            digest = hashlib.sha256(body).hexdigest()
            if digest != oid:
                raise _HttpError(400, f"sha256 mismatch: expected {oid}, got {digest}")
            with self._lock:
                self.lfs_objects[oid] = body
            return _Response(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        if action == "verify" and method == "POST":
            with self._lock:
                data = self.lfs_objects.get(oid)
            if data is None:
                raise _HttpError(404, f"LFS object {oid} not found")
            return _json({"success": True})
        raise _HttpError(404, f"Unknown LFS route {method} {rest}")

    def _commit(self, repo: _Repo, rev: str, params: dict[str, list[str]], body: bytes) -> _Response:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line.get("key") == "header"), None)
        if header is None or not header.get("summary"):
            raise _HttpError(400, "Missing commit header with a summary")
        create_pr = _truthy(params.get("create_pr", [None])[0])
        with self._lock:
            if rev.startswith("refs/heads/"):
                rev = rev[len("refs/heads/") :]
            if rev not in repo.refs:
                raise _HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            head = repo.refs[rev]
            parent_commit = header.get("parentCommit")
            base = head
            if parent_commit:
                if create_pr:
                    base = self._resolve(repo, parent_commit)
                elif not head.sha.startswith(parent_commit.lower()):
                    raise _HttpError(412, _PARENT_MISMATCH)
            snapshot = dict(base.files)
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    snapshot[value["path"]] = _Blob(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    data = self.lfs_objects.get(value["oid"])
                    if data is None:
                        raise _HttpError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    snapshot[value["path"]] = _Blob(data, True)
                elif key == "deletedFile":
                    if snapshot.pop(value["path"], None) is None:
                        raise _HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in snapshot if p.startswith(prefix)]:
                        del snapshot[path]
                elif key != "header":
                    raise _HttpError(400, f"Unknown commit operation {key!r}")
            target = rev
            if create_pr:
                repo.pr_count += 1
                target = f"refs/pr/{repo.pr_count}"
            commit = self._add_commit(
                repo, target, base, snapshot, header["summary"], header.get("description") or "", body
            )
            url = self._repo_url(repo)
        return _json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{url}/commit/{commit.sha}",
                "commitMessage": header["summary"],
                "hookOutput": "",
                "pullRequestUrl": f"{url}/discussions/{repo.pr_count}" if create_pr else None,
            }
        )

    def _resolve_file(self, repo: _Repo, rev: str, path: str, range_header: str | None) -> _Response:
        with self._lock:
            commit = self._resolve(repo, rev)
            blob = commit.files.get(path)
        if blob is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{blob.git_oid}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
        }
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, size = blob.data, len(blob.data)
        if range_header and (m := re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)):
            if m[1]:
                start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            else:
                start, end = max(size - int(m[2] or 0), 0), size - 1
            if start >= size:
                raise _HttpError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return _Response(206, data[start : end + 1], headers)
        return _Response(200, data, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    hub: FakeHub

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.hub.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        path, _, query = self.path.partition("?")
        body = self._read_body()
        headers = dict(self.headers.items())
        request = RecordedRequest(method, path, query, headers, body)
        with hub._lock:
            hub.requests.append(request)
        try:
            for hook in hub._take_hooks(method, path):
                hook.callback(request)  # outside the lock's scope: it may call the hub's helpers
            fault = hub._take_fault(method, path)
            if fault is not None and fault.stall is not None:
                hub._release.wait(fault.stall)
                self.close_connection = True  # no response at all
                return
            if fault is not None and fault.after:
                hub._handle(method, path, query, headers, body)  # acted on; the response is then lost
            if fault is not None:
                payload = fault.body if fault.body is not None else {"error": f"Injected failure ({fault.status})"}
                response = _json(payload, fault.status, fault.headers)
            else:
                response = hub._handle(method, path, query, headers, body)
        except _HttpError as err:
            extra = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                extra["X-Error-Code"] = err.code
            response = _json({"error": err.message}, err.status, extra)
        except Exception as err:  # a bug in the fake: make it loud
            traceback.print_exc()
            response = _json({"error": f"Fake hub crashed: {err!r}"}, 500)
        self.send_response(response.status)
        headers_out = {"X-Request-Id": uuid.uuid4().hex, **response.headers}
        for key, value in headers_out.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)


# ---------------------------------------------------------------------- pytest integration
_REGISTRY = "_fake_hub_session_registry"  # survives importing this file under two module names


def _check_client_endpoint(url: str) -> None:
    """Fail loudly if huggingface_hub/datasets were imported before HF_ENDPOINT pointed at the fake."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and (url != constants.ENDPOINT or not constants.HF_HUB_DISABLE_XET):
        raise RuntimeError(
            "huggingface_hub was imported before start_session_hub() set HF_ENDPOINT/HF_HUB_DISABLE_XET "
            f"(it uses {constants.ENDPOINT!r}, fake hub is {url!r}). Call start_session_hub() at the top of "
            "tests/conftest.py, before anything imports huggingface_hub, datasets or transformers."
        )
    config = sys.modules.get("datasets.config")
    if config is not None and url != config.HF_ENDPOINT:
        raise RuntimeError(f"datasets was imported before start_session_hub() (HF_ENDPOINT={config.HF_ENDPOINT!r}).")


def _env_points_to_parent_hub() -> bool:
    url = os.environ.get("FAKE_HUB_URL")
    return bool(url) and os.environ.get("HF_ENDPOINT") == url and os.environ.get("HF_TOKEN") == FAKE_TOKEN


def start_session_hub() -> FakeHub:
    """Start (once per process) a FakeHub and point the HF env at it; idempotent.

    Sets ``HF_ENDPOINT``, ``HF_TOKEN`` (:data:`FAKE_TOKEN`), ``HF_HUB_DISABLE_XET=1``, fresh temp
    ``HF_HOME`` / ``HF_DATASETS_CACHE``, telemetry/progress bars off; unsets offline and cache-path
    overrides. Must run before ``huggingface_hub``/``datasets`` are imported: both read the env at import
    time (raises ``RuntimeError`` if they already did with another endpoint).
    """
    registry = sys.modules.setdefault(_REGISTRY, types.ModuleType(_REGISTRY))
    hub: FakeHub | None = getattr(registry, "hub", None)
    owner = os.environ.get("FAKE_HUB_PID")
    if hub is None and owner not in (None, str(os.getpid())) and _env_points_to_parent_hub():
        # Child process (multiprocessing "spawn", subprocess) of a session that already runs a hub: keep
        # talking to the parent's server. This object is a URL-only view: its helpers see no repos.
        hub = FakeHub(expected_token=FAKE_TOKEN)
        hub.url, hub.parent_view = os.environ["FAKE_HUB_URL"], True
        registry.hub = hub  # type: ignore[attr-defined]
    if hub is not None and (hub.running or hub.parent_view):
        _check_client_endpoint(hub.url)
        return hub
    hub = FakeHub(expected_token=FAKE_TOKEN).start()
    _check_client_endpoint(hub.url)
    home = tempfile.mkdtemp(prefix="fake-hub-home-")
    for var in (
        "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH",
        "HF_STORED_TOKENS_PATH", "HF_OIDC_RESOURCE", "HUGGINGFACE_CO_STAGING", "HF_HUB_ENABLE_HF_TRANSFER",
    ):  # fmt: skip
        os.environ.pop(var, None)
    os.environ.update(
        {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": FAKE_TOKEN,
            "HF_HOME": os.path.join(home, "hf_home"),
            "HF_DATASETS_CACHE": os.path.join(home, "datasets_cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "FAKE_HUB_URL": hub.url,
            "FAKE_HUB_PID": str(os.getpid()),
        }
    )
    registry.hub = hub  # type: ignore[attr-defined]
    atexit.register(shutil.rmtree, home, True)
    atexit.register(hub.stop)
    return hub


@pytest.fixture(name="fake_hub")
def fake_hub_fixture() -> Iterator[FakeHub]:
    """``fake_hub`` fixture: the session FakeHub, faults and request log cleared.

    Repos persist for the whole session (HfFileSystem/datasets caches would go stale if names were
    reused), so use ``fake_hub.new_repo_id()`` to get a repo name no other test uses.
    """
    hub = start_session_hub()
    hub.clear_faults()
    hub.clear_log()
    yield hub
    hub.clear_faults()
