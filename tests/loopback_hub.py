"""A real Hugging Face Hub-API server on 127.0.0.1 for tests, storing everything it receives.

The Hub cannot be reached from here and no installable server accepts pushes, so this one speaks
the part of the Hub API that `datasets.Dataset.push_to_hub` and `huggingface_hub.HfApi`
(create_repo, upload_file, upload_folder, create_commit, repo_info, list_repo_tree, hf_hub_download)
call. It was written by running those clients against it and reading what they request.

Point the clients at it with `HF_ENDPOINT` (see `LoopbackHub.patch_clients`) and `HF_HUB_DISABLE_XET=1`
(the Xet protocol is not spoken here: files travel as git-LFS objects or inline in commits).

What it stores, so tests can read back exactly what was uploaded:
- per repo: every commit (parent, summary, the full file tree at that commit), the branches, `private`;
- LFS objects by sha256 oid;
- every request: method, path, query, headers (lower-cased) and raw body, and the status answered.

Auth: every request must carry `authorization: Bearer <token>` with the configured token, except
anonymous reads of public repos. A wrong token gets 401 with the Hub's "Invalid credentials" message.

Faults: `hub.fail("POST", r"/commit/", status=500)` answers matching requests with that status
(`times` of them, or all when `times=None`).

Run it alone with `python tests/loopback_hub.py --token hf_xxx` (prints the endpoint).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TYPE_OF_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass
class StoredFile:
    """One file at one commit: its bytes, and its LFS oid when it was committed as an LFS file."""

    content: bytes
    lfs_oid: str | None = None

    @property
    def blob_id(self) -> str:
        return git_blob_sha1(lfs_pointer(self.lfs_oid, len(self.content)) if self.lfs_oid else self.content)

    @property
    def etag(self) -> str:
        return self.lfs_oid or self.blob_id


@dataclass
class Commit:
    """One commit: the whole tree after it, so any revision can be read back."""

    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, StoredFile]
    date: float = field(default_factory=time.time)
    operations: list[dict[str, Any]] = field(default_factory=list)  # the NDJSON lines, content elided


@dataclass
class Repo:
    """A repository: its commits (oid -> Commit) and branches (name -> head oid)."""

    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        oid = self.branches.get(revision) or (revision if revision in self.commits else None)
        return self.commits.get(oid) if oid else None

    def files(self, revision: str = "main") -> dict[str, bytes]:
        commit = self.resolve(revision)
        return {path: f.content for path, f in commit.files.items()} if commit else {}

    def history(self, branch: str = "main") -> list[Commit]:
        """Commits from the first to the head of `branch`."""
        chain, oid = [], self.branches.get(branch)
        while oid and oid in self.commits:
            chain.append(self.commits[oid])
            oid = self.commits[oid].parent
        return chain[::-1]


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int | None
    message: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class HubError(Exception):
    """Raised inside a handler: becomes an error response with the Hub's X-Error-* headers."""

    def __init__(self, status: int, message: str, code: str | None = None, **body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.body = body  # more fields for the JSON body


class LoopbackHub:
    """Threaded Hub-API server; use as a context manager.

    `hub.repos[("dataset", "owner/name")]` holds what was pushed; `hub.files(repo_id)` reads a
    revision back; `hub.lfs` maps sha256 oids to the uploaded bytes; `hub.log` lists every request.
    """

    def __init__(self, token: str = "hf_loopback_token", *, user: str = "tester", port: int = 0) -> None:
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.log: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackHub:
        # A short poll interval: shutdown() waits up to one interval, once per test.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests use ---------------------------------------------------------------------------

    def fail(self, method: str, pattern: str, status: int = 500, *, times: int | None = 1,
             message: str = "injected fault") -> None:
        """Answer the next `times` requests whose path matches `pattern` (re.search) with `status`."""
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(pattern), status, times, message))

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        return self.repo(repo_id, repo_type).files(revision)

    def stored_blobs(self) -> list[bytes]:
        """Every byte the server holds: files at every commit of every repo, LFS objects, request bodies."""
        with self._lock:  # a copy, so the server can go on while a test reads it
            blobs = [r.body for r in self.log] + list(self.lfs.values())
            for repo in self.repos.values():
                for commit in repo.commits.values():
                    blobs.append(json.dumps([commit.summary, commit.description, commit.operations]).encode())
                    blobs += [f.content for f in commit.files.values()]
        return blobs

    def requests(self, method: str | None = None, pattern: str = "") -> list[LoggedRequest]:
        return [r for r in self.log if (method is None or r.method == method) and re.search(pattern, r.path)]

    def patch_clients(self, monkeypatch: Any) -> None:
        """Point huggingface_hub and datasets at this server, in the environment and in the constants
        both libraries read once at import time (HF_ENDPOINT, HF_HUB_DISABLE_XET, HF_HUB_OFFLINE)."""
        import datasets.config
        from huggingface_hub import constants

        monkeypatch.setenv("HF_ENDPOINT", self.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", self.endpoint)
        monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", self.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    # -- the API ----------------------------------------------------------------------------------

    def _authorize(self, headers: dict[str, str], *, write: bool, repo: Repo | None = None) -> None:
        auth = headers.get("authorization")
        if auth is not None:
            if auth != f"Bearer {self.token}":
                raise HubError(401, "Invalid credentials in Authorization header")
            return
        if write:
            raise HubError(401, "You must be authenticated to access this resource")
        if repo is not None and repo.private:
            raise HubError(404, "Repository not found", "RepoNotFound")  # the Hub hides private repos

    def _find(self, repo_type: str, repo_id: str, headers: dict[str, str], *, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            self._authorize(headers, write=False)
            raise HubError(404, "Repository not found", "RepoNotFound")
        self._authorize(headers, write=write, repo=repo)
        return repo

    def _commit_of(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    def _create_repo(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        self._authorize(headers, write=True)
        name, org = body.get("name"), body.get("organization") or self.user
        repo_type = body.get("type") or "model"
        repo_id = f"{org}/{name}"
        url = f"{self.endpoint}/{REPO_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            # The Hub names the existing repo's URL in the 409: create_repo(exist_ok=True) returns it.
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
        repo = Repo(repo_type, repo_id, private)
        # A new repo on the Hub starts with one commit holding .gitattributes.
        first = Commit(_commit_oid(None, {"init": repo_id}), None, "initial commit", "",
                       {".gitattributes": StoredFile(b"*.parquet filter=lfs diff=lfs merge=lfs -text\n")})
        repo.commits[first.oid] = first
        repo.branches["main"] = first.oid
        self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def _repo_info(self, repo: Repo, revision: str) -> dict[str, Any]:
        commit = self._commit_of(repo, revision)
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "createdAt": _iso(repo.created), "lastModified": _iso(commit.date),
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def _preupload(self, repo: Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        commit = repo.resolve(revision)
        answer = []
        for item in body.get("files", []):
            path = item["path"]
            # Parquet and other binaries go through LFS, like the Hub's .gitattributes: `datasets`
            # deletes its temporary shard right after preupload, so it cannot be sent inline later.
            lfs = not path.endswith((".md", ".json", ".txt", ".yaml", ".yml", ".gitattributes", ".csv", ".jsonl"))
            current = commit.files.get(path) if commit else None
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": current.blob_id if current else None})
        return {"files": answer, "commitOid": commit.oid if commit else None}

    def _lfs_batch(self, repo: Repo, body: dict[str, Any]) -> dict[str, Any]:
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.lfs:  # already stored: no actions, the client skips the upload
                entry["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs-storage/{oid}", "header": {}},
                    "verify": {"href": f"{self.endpoint}/{REPO_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def _lfs_put(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"content does not match oid {oid}")
        self.lfs[oid] = data

    def _commit(self, repo: Repo, revision: str, raw: bytes) -> dict[str, Any]:
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.branches[branch]
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head].files)
        logged: list[dict[str, Any]] = []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value.get("path", "")
            if key == "file":
                content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                files[path] = StoredFile(content)
                logged.append({"key": key, "path": path, "size": len(content)})
            elif key == "lfsFile":
                oid = value["oid"]
                if oid not in self.lfs:
                    raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
                files[path] = StoredFile(self.lfs[oid], lfs_oid=oid)
                logged.append({"key": key, "path": path, "oid": oid, "size": value.get("size")})
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"cannot delete {path}: no such file", "EntryNotFound")
                logged.append({"key": key, "path": path})
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                for name in [p for p in files if p.startswith(prefix)]:
                    del files[name]
                logged.append({"key": key, "path": path})
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        oid = _commit_oid(head, {"header": header, "ops": logged, "t": time.time_ns()})
        repo.commits[oid] = Commit(oid, head, header.get("summary", ""), header.get("description", ""), files,
                                   operations=logged)
        repo.branches[branch] = oid
        url = f"{self.endpoint}/{REPO_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{oid}"
        return {"success": True, "commitOid": oid, "commitUrl": url, "commitMessage": header.get("summary", ""),
                "pullRequestUrl": None}

    @staticmethod
    def _tree_entry(path: str, f: StoredFile | None, commit: Commit) -> dict[str, Any]:
        if f is None:
            return {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(),
                    "size": 0, "path": path}
        entry: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": len(f.content), "path": path}
        if f.lfs_oid:
            entry["lfs"] = {"oid": f.lfs_oid, "size": len(f.content),
                            "pointerSize": len(lfs_pointer(f.lfs_oid, len(f.content)))}
        return entry

    def _tree(self, repo: Repo, revision: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        commit = self._commit_of(repo, revision)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for name, f in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, self._tree_entry(folder, None, commit))
            if recursive or len(parts) == 1:
                entries[name] = self._tree_entry(name, f, commit)
        return list(entries.values())

    def _paths_info(self, repo: Repo, revision: str, paths: list[str]) -> list[dict[str, Any]]:
        commit = self._commit_of(repo, revision)
        found = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                found.append(self._tree_entry(path, commit.files[path], commit))
            elif any(p.startswith(path + "/") for p in commit.files):
                found.append(self._tree_entry(path, None, commit))
        return found

    def _create_branch(self, repo: Repo, branch: str, body: dict[str, Any]) -> dict[str, Any]:
        branch = unquote(branch)
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = body.get("startingPoint") or "main"
        repo.branches[branch] = self._commit_of(repo, start).oid
        return {}

    # -- HTTP -------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               raw: bytes) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or raw bytes, extra headers) for one request."""
        if method == "GET" and path == "/api/whoami-v2":
            self._authorize(headers, write=True)
            return 200, {"type": "user", "name": self.user, "fullname": "Loopback Tester", "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}}}, {}
        if method == "POST" and path == "/api/repos/create":
            return (*self._create_repo(json.loads(raw or b"{}"), headers), {})
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}, {}
        if method == "PUT" and (m := re.fullmatch(r"/lfs-storage/([0-9a-f]{64})", path)):
            self._lfs_put(m.group(1), raw)  # a pre-signed storage URL: no auth, like S3
            return 200, b"", {"ETag": f'"{m.group(1)}"'}

        if m := re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+?)(?:/(.*))?", path):
            repo_type, repo_id, rest = TYPE_OF_PLURAL[m.group(1)], m.group(2), m.group(3) or ""
            write = method not in ("GET", "HEAD") and not rest.startswith("paths-info/")
            repo = self._find(repo_type, repo_id, headers, write=write)
            if method == "GET" and (rest == "" or rest.startswith("revision/")):
                return 200, self._repo_info(repo, rest.split("/", 1)[1] if rest else "main"), {}
            if method == "POST" and (r := re.fullmatch(r"preupload/([^/]+)", rest)):
                return 200, self._preupload(repo, r.group(1), json.loads(raw)), {}
            if method == "POST" and (r := re.fullmatch(r"commit/([^/]+)", rest)):
                return 200, self._commit(repo, r.group(1), raw), {}
            if method == "GET" and (r := re.fullmatch(r"tree/([^/]+)(?:/(.*))?", rest)):
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                return 200, self._tree(repo, r.group(1), unquote(r.group(2) or ""), recursive), {}
            if method == "POST" and (r := re.fullmatch(r"paths-info/([^/]+)", rest)):
                form = parse_qs(raw.decode())
                return 200, self._paths_info(repo, r.group(1), form.get("paths", [])), {}
            if method == "POST" and (r := re.fullmatch(r"branch/(.+)", rest)):
                return 200, self._create_branch(repo, r.group(1), json.loads(raw or b"{}")), {}
            if method == "PUT" and rest == "settings":
                body = json.loads(raw or b"{}")
                if "private" in body or "visibility" in body:
                    repo.private = body.get("visibility", "private" if body.get("private") else "public") == "private"
                return 200, {}, {}
            raise HubError(404, f"no such API route: {method} {path}")

        if m := re.fullmatch(r"/(datasets/|spaces/|)([^/]+/[^/]+?)\.git/info/lfs/objects/(batch|verify)", path):
            repo_type = {"datasets/": "dataset", "spaces/": "space", "": "model"}[m.group(1)]
            repo = self._find(repo_type, m.group(2), headers, write=True)
            body = json.loads(raw or b"{}")
            if m.group(3) == "batch":
                return 200, self._lfs_batch(repo, body), {"Content-Type": "application/vnd.git-lfs+json"}
            if body.get("oid") not in self.lfs:
                raise HubError(404, f"LFS object {body.get('oid')} not found")
            return 200, {}, {}

        if method in ("GET", "HEAD") and (m := re.fullmatch(r"/(datasets/|spaces/|)([^/]+/[^/]+?)/resolve/([^/]+)/(.+)", path)):
            repo_type = {"datasets/": "dataset", "spaces/": "space", "": "model"}[m.group(1)]
            repo = self._find(repo_type, m.group(2), headers)
            commit = self._commit_of(repo, m.group(3))
            name = unquote(m.group(4))
            stored = commit.files.get(name)
            if stored is None:
                raise HubError(404, f"Entry not found: {name}", "EntryNotFound")
            extra = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.etag}"', "Accept-Ranges": "bytes",
                     "Content-Type": "application/octet-stream"}
            if stored.lfs_oid:
                extra |= {"X-Linked-Etag": f'"{stored.lfs_oid}"', "X-Linked-Size": str(len(stored.content))}
            return 200, stored.content, extra

        raise HubError(404, f"no such route: {method} {path}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _send(self, status: int, payload: Any, headers: dict[str, str], entry: LoggedRequest) -> None:
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                head = self.command == "HEAD"
                byte_range = self.headers.get("Range") if status == 200 and isinstance(payload, bytes) else None
                if byte_range and (r := re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())) and body:
                    start = int(r.group(1)) if r.group(1) else max(0, len(body) - int(r.group(2)))
                    end = min(int(r.group(2)), len(body) - 1) if r.group(1) and r.group(2) else len(body) - 1
                    if start >= len(body):
                        status, headers = 416, {**headers, "Content-Range": f"bytes */{len(body)}"}
                        body = b""
                    else:
                        headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(body)}"}
                        status, body = 206, body[start : end + 1]
                entry.status = status
                self.send_response(status)
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _handle(self) -> None:
                split = urlsplit(self.path)
                raw = self._body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                entry = LoggedRequest(self.command, split.path, parse_qs(split.query), headers, raw)
                with hub._lock:
                    hub.log.append(entry)
                    fault = next((f for f in hub.faults if f.method == self.command and f.pattern.search(split.path)
                                  and (f.times is None or f.times > 0)), None)
                    if fault is not None and fault.times is not None:
                        fault.times -= 1
                    try:
                        if fault is not None:
                            raise HubError(fault.status, fault.message)
                        status, payload, extra = hub._route(self.command, split.path, entry.query, headers, raw)
                    except HubError as exc:
                        status, payload = exc.status, {"error": exc.message, **exc.body}
                        extra = {"X-Error-Message": exc.message}
                        if exc.code:
                            extra["X-Error-Code"] = exc.code
                    except (ValueError, KeyError) as exc:  # malformed request body
                        status, payload, extra = 400, {"error": f"bad request: {exc}"}, {"X-Error-Message": "bad request"}
                extra = {"X-Request-Id": f"loopback-{len(hub.log)}", **extra}
                self._send(status, payload, extra, entry)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle  # http.server dispatches on do_<METHOD>

        return Handler


def _commit_oid(parent: str | None, payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps([parent, payload], sort_keys=True, default=str).encode()).hexdigest()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="hf_loopback_token")
    args = parser.parse_args()
    with LoopbackHub(args.token, port=args.port) as hub:
        print(hub.endpoint, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
