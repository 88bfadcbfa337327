"""A local Hugging Face Hub for tests: the real `huggingface_hub` client and `datasets` talk to it
over HTTP on 127.0.0.1, with no network.

    with FakeHub() as hub, hub_env(hub, home=tmp_path):      # env vars, for a subprocess
        subprocess.run(["jprefs", "push", "model", ...], env=os.environ)
    hub.commits("me/rm")                                     # what each commit added / changed

In-process (pytest) use the `fake_hub` fixture of `tests/hub/conftest.py`, which also patches the
constants `huggingface_hub` and `datasets` read at import time.

What it is:
- `http.server.ThreadingHTTPServer` on 127.0.0.1, port 0; `start()`/`stop()` or `with FakeHub()`.
- Model and dataset repos with a real commit history per branch: each commit has a 40-hex id, a
  parent, a message and the full file tree {path: Entry(git-sha1 oid, size, LFS sha256 or None)}.
  File contents live on disk under `root` (content-addressed: `objects/<git oid>`, `lfs/<sha256>`);
  the repo metadata lives in memory. A new repo gets an "initial commit" with the Hub's default
  `.gitattributes`, as on huggingface.co; a path is LFS when it matches a `filter=lfs` pattern of
  the `.gitattributes` on the target revision, or is 10 MB or more.
- Every endpoint below is one the installed huggingface_hub 2.4.0 / datasets 5.2.0 really call;
  the client function is named next to each route in `_route`.
- Xet is NOT used, and the server cannot make the client use it: uploads go through Xet whenever
  `hf_xet` is installed unless `HF_HUB_DISABLE_XET=1` (`huggingface_hub.utils._runtime.
  is_xet_available`, checked in `_commit_api._upload_files`), so `hub_env` and the fixture set it.
  Downloads would use Xet only if a response carried `X-Xet-Hash`; this server never sends it.
- LFS uses the batch API with the "basic" transfer only: the upload action is a PUT to this server
  (a signed URL, like the presigned S3 URL of the real Hub: no Authorization header is sent), then
  a verify POST. An object the server already has gets no actions, so the client uploads nothing.
- Auth: `Authorization: Bearer <token>` is required for every write and for reads of private
  repos; a wrong token is a 401 with the Hub's "Invalid credentials in Authorization header"
  (the client then raises a plain `HfHubHTTPError`). One token, one user, who owns every
  namespace. Tokens are never logged: `hub.requests` records only method and path.
- Not implemented (501 or absent): pull requests (`create_pr`), tags, Spaces, Xet, multipart LFS.

Counters: `hub.commits(repo_id, repo_type)`, `hub.bytes_uploaded` (file bytes received: regular
files inside commits plus LFS PUT bodies), `hub.upload_requests` (commit POSTs plus LFS PUTs).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

# The `.gitattributes` huggingface.co puts in a new model repo (a new dataset repo also tracks audio and
# image files, left out here).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in ("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
                    "*.lz4", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
                    "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
                    "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz",
                    "*.zip", "*.zst", "*tfevents*")
)
LFS_SIZE = 10 * 1024 * 1024  # the Hub stores files of 10 MB or more in LFS whatever .gitattributes says
PREFIX = {"model": "", "dataset": "datasets/"}  # URL prefix of a repo type (constants.REPO_TYPES_URL_PREFIXES)


def git_oid(data: bytes) -> str:
    """The git blob id of `data` (what the Hub reports as a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class Entry(NamedTuple):
    oid: str  # git blob id (of the pointer file for an LFS file, as on the Hub)
    size: int  # size of the content
    lfs: str | None  # sha256 of the content for an LFS file, else None


@dataclass
class Commit:
    id: str
    parent: str | None
    message: str
    files: dict[str, Entry]
    branch: str
    changed: list[str] = field(default_factory=list)  # paths added or changed against the parent
    deleted: list[str] = field(default_factory=list)
    date: str = ""


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit id
    commits: dict[str, Commit] = field(default_factory=dict)  # insertion order = creation order

    def resolve(self, rev: str) -> Commit | None:
        """A branch name, `refs/heads/<branch>` or a full commit id (what the Hub accepts)."""
        rev = rev.removeprefix("refs/heads/")
        cid = self.branches.get(rev) or (rev if rev in self.commits else None)
        return self.commits.get(cid) if cid else None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


class FakeHub:
    """A Hub-compatible HTTP server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, root: str | Path | None = None, *, token: str = "hf_fakehub_test_token",
                 user: str = "fakehub-user", page_size: int = 1000):
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="fakehub-")
        self.root = Path(root or self._tmp.name)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "lfs").mkdir(exist_ok=True)
        self.token, self.user, self.page_size = token, user, page_size
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []  # "METHOD /path" of every request (no headers, no token)
        self.bytes_uploaded = 0
        self.upload_requests = 0
        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(16)  # signs the LFS upload URLs
        self._server: ThreadingHTTPServer | None = None
        self._connections: set = set()  # open keep-alive sockets, closed by stop()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fakehub").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # a keep-alive connection's handler thread would go on serving this hub's state to a client
        # (httpx pools connections across tests): close them all
        with self._lock:
            for sock in list(self._connections):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._connections.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what tests read ---------------------------------------------------------------------------
    def commits(self, repo_id: str, repo_type: str = "model", branch: str | None = None) -> list[Commit]:
        """Commits of a repo, oldest first (newest last); with `branch`, only that branch's history."""
        repo = self.repos[(repo_type, repo_id)]
        if branch is None:
            return list(repo.commits.values())
        out, cid = [], repo.branches[branch]
        while cid:
            out.append(repo.commits[cid])
            cid = repo.commits[cid].parent
        return out[::-1]

    def read(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        """The bytes of a file as the server stored them."""
        return self._content(self.repos[(repo_type, repo_id)].resolve(revision).files[path]).read_bytes()

    # -- storage -----------------------------------------------------------------------------------
    def _content(self, e: Entry) -> Path:
        return self.root / ("lfs" if e.lfs else "objects") / (e.lfs or e.oid)

    def _commit(self, repo: Repo, branch: str, message: str, files: dict[str, Entry]) -> Commit:
        parent = repo.commits.get(repo.branches.get(branch, ""))
        old = parent.files if parent else {}
        date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        cid = hashlib.sha1(json.dumps([repo.repo_id, parent and parent.id, message, sorted(files.items()),
                                       len(repo.commits), secrets.token_hex(4)]).encode()).hexdigest()
        c = Commit(cid, parent and parent.id, message, files, branch,
                   changed=sorted(p for p in files if old.get(p) != files[p]),
                   deleted=sorted(p for p in old if p not in files), date=date)
        repo.commits[cid] = c
        repo.branches[branch] = cid
        return c

    def _is_lfs(self, commit: Commit, path: str, size: int) -> bool:
        attrs = commit.files.get(".gitattributes")
        text = self._content(attrs).read_text() if attrs else ""
        patterns = [ln.split()[0] for ln in text.splitlines() if "filter=lfs" in ln and ln.split()]
        name = path.rsplit("/", 1)[-1]
        return size >= LFS_SIZE or any(fnmatch.fnmatch(path, p) or ("/" not in p and fnmatch.fnmatch(name, p))
                                       for p in patterns)

    def _sign(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), "sha256").hexdigest()


def _ok_path(path: str) -> str:
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise HubError(400, f"invalid path in repo: {path!r}")
    return path


def _card_data(text: str) -> dict | None:
    """The YAML block at the top of a README.md (the Hub's `cardData`), or None."""
    if not text.startswith("---"):
        return None
    try:
        import yaml  # a dependency of huggingface_hub itself
    except ImportError:
        return None
    head, sep, _ = text[3:].partition("\n---")
    return (yaml.safe_load(head) or None) if sep else None


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every response has a Content-Length

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        super().finish()

    def log_message(self, *args) -> None:  # quiet; `hub.requests` keeps method and path
        pass

    # -- plumbing ------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (n := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(n))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():  # header values are latin-1: escape a Japanese path in a message
            self.send_header(k, str(v).encode("ascii", "backslashreplace").decode())
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        if hmac.compare_digest(auth.encode(), f"Bearer {self.hub.token}".encode()):
            return self.hub.user
        raise HubError(401, "Invalid credentials in Authorization header")

    def _writer(self) -> str:
        if (user := self._user()) is None:
            raise HubError(401, "You must be authenticated to write to the Hub (Authorization: Bearer <token>)")
        return user

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        user = self._writer() if write else self._user()
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _rev(self, repo: Repo, rev: str) -> Commit:
        if (c := repo.resolve(rev)) is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return c

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_GET

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command in ("POST", "PUT") else b""
        with self.hub._lock:
            self.hub.requests.append(f"{self.command} {url.path}")
        try:
            with self.hub._lock:
                self._route(url.path.strip("/").split("/"), parse_qs(url.query), body)
        except HubError as e:
            headers = {**e.headers, "X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._send(e.status, {"error": e.message, **(e.extra or {})}, headers)
        except Exception as e:  # a bug here, or a request shape the fake does not know: say which
            msg = f"FakeHub: {type(e).__name__}: {e}"
            self._send(500, {"error": msg}, {"X-Error-Message": msg[:200]})

    # -- routes ------------------------------------------------------------------------------------
    def _route(self, seg: list[str], query: dict, body: bytes) -> None:
        m = self.command
        if seg[0] == "api":
            if seg[1:] == ["whoami-v2"] and m == "GET":  # HfApi.whoami
                if (user := self._user()) is None:
                    raise HubError(401, "Invalid credentials in Authorization header")
                return self._send(200, {"type": "user", "name": user, "orgs": [],
                                        "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
            if seg[1:] == ["validate-yaml"] and m == "POST":  # HfApi._validate_yaml (create_commit of a README)
                try:
                    _card_data(json.loads(body)["content"])
                except Exception as e:  # yaml.YAMLError
                    return self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []})
                return self._send(200, {"errors": [], "warnings": []})
            if seg[1:] == ["repos", "create"] and m == "POST":  # HfApi.create_repo
                return self._create_repo(json.loads(body))
            if len(seg) >= 4 and seg[1] in ("models", "datasets"):
                repo_type, repo_id, rest = seg[1][:-1], f"{unquote(seg[2])}/{unquote(seg[3])}", seg[4:]
                return self._repo_api(m, repo_type, repo_id, rest, query, body)
        if seg[:2] == ["_fakehub", "lfs"]:
            return self._lfs_store(m, seg[2:], query, body)
        repo_type = "dataset" if seg[0] == "datasets" else "model"
        seg = seg[1:] if repo_type == "dataset" else seg
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"] \
                and m == "POST":  # lfs.post_lfs_batch_info (from _commit_api._upload_files)
            return self._lfs_batch(repo_type, f"{seg[0]}/{seg[1][:-4]}", json.loads(body))
        if len(seg) >= 5 and seg[2] == "resolve" and m in ("GET", "HEAD"):
            # file_download.get_hf_file_metadata (HEAD), http_get (GET); HfFileSystem._fetch_range (Range)
            return self._resolve(repo_type, f"{seg[0]}/{seg[1]}", unquote(seg[3]), unquote("/".join(seg[4:])))
        raise HubError(404, f"FakeHub does not implement {m} /{'/'.join(seg)}")

    def _create_repo(self, payload: dict) -> None:
        user = self._writer()
        repo_type = payload.get("type") or "model"
        if repo_type not in PREFIX:
            raise HubError(400, f"FakeHub has no repos of type {repo_type!r}")
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        url = f"{self.hub.endpoint}/{PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            # create_repo(exist_ok=True) reads the url from this 409 body, as from the Hub's
            raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
        repo = Repo(repo_type, repo_id, private=payload.get("visibility", "public") != "public")
        oid = git_oid(DEFAULT_GITATTRIBUTES.encode())
        (self.hub.root / "objects" / oid).write_bytes(DEFAULT_GITATTRIBUTES.encode())
        attrs = Entry(oid, len(DEFAULT_GITATTRIBUTES), None)
        self.hub._commit(repo, "main", "initial commit", {".gitattributes": attrs})
        self.hub.repos[(repo_type, repo_id)] = repo
        self._send(200, {"url": url, "name": repo_id})

    def _repo_api(self, m: str, repo_type: str, repo_id: str, rest: list[str], query: dict, body: bytes) -> None:
        what = rest[0] if rest else ""
        write = what in ("branch", "preupload", "commit")
        repo = self._repo(repo_type, repo_id, write=write and m == "POST")
        rev = unquote(rest[1]) if len(rest) > 1 else "main"
        if what in ("", "revision") and m == "GET":  # HfApi.model_info / dataset_info / repo_info
            return self._info(repo, self._rev(repo, unquote("/".join(rest[1:])) if rest else "main"), query)
        if what == "tree" and m == "GET":  # HfApi.list_repo_tree (HfFileSystem.ls, snapshot_download)
            return self._tree(repo, self._rev(repo, rev), unquote("/".join(rest[2:])).strip("/"), query)
        if what == "paths-info" and m == "POST":  # HfApi.get_paths_info (HfFileSystem.info)
            return self._paths_info(repo, self._rev(repo, rev), parse_qs(body.decode()))
        if what == "refs" and m == "GET":  # HfApi.list_repo_refs
            ref = lambda b, c: {"name": b, "ref": f"refs/heads/{b}", "targetCommit": c}  # noqa: E731
            return self._send(200, {"branches": [ref(b, c) for b, c in repo.branches.items()],
                                    "converts": [], "tags": [], "pullRequests": []})
        if what == "commits" and m == "GET":  # HfApi.list_repo_commits
            out, cid = [], self._rev(repo, rev).id
            while cid:
                c = repo.commits[cid]
                out.append({"id": c.id, "title": c.message.split("\n")[0], "message": c.message,
                            "authors": [{"user": self.hub.user}], "date": c.date})
                cid = c.parent
            return self._send(200, out)
        if what == "branch" and m == "POST":  # HfApi.create_branch
            branch = unquote("/".join(rest[1:]))
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = self._rev(repo, (json.loads(body or b"{}")).get("startingPoint") or "main")
            repo.branches[branch] = start.id
            return self._send(200, {})
        if what == "preupload" and m == "POST":  # _commit_api._fetch_upload_modes
            return self._preupload(self._rev(repo, rev), json.loads(body))
        if what == "commit" and m == "POST":  # _commit_api._send_commit (create_commit, upload_folder)
            if query.get("create_pr"):
                raise HubError(501, "FakeHub does not implement pull requests (create_pr)")
            return self._apply_commit(repo, rev, [json.loads(ln) for ln in body.splitlines() if ln.strip()])
        raise HubError(404, f"FakeHub does not implement {m} {what!r} for repos")

    # -- reads ---------------------------------------------------------------------------------------
    def _file_json(self, path: str, e: Entry) -> dict:
        d = {"type": "file", "oid": e.oid, "size": e.size, "path": path}
        if e.lfs:
            d["lfs"] = {"oid": e.lfs, "size": e.size, "pointerSize": len(lfs_pointer(e.lfs, e.size))}
        return d

    def _dir_json(self, c: Commit, path: str) -> dict:
        inside = sorted((p, e.oid) for p, e in c.files.items() if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(repr(inside).encode()).hexdigest(), "size": 0, "path": path}

    def _info(self, repo: Repo, c: Commit, query: dict) -> None:
        blobs = query.get("blobs", [""])[0].lower() in ("1", "true")
        siblings = []
        for p, e in sorted(c.files.items()):
            s = {"rfilename": p}
            if blobs:
                s |= {"size": e.size, "blobId": e.oid}
                if e.lfs:
                    s["lfs"] = {"size": e.size, "sha256": e.lfs, "pointerSize": len(lfs_pointer(e.lfs, e.size))}
            siblings.append(s)
        readme = c.files.get("README.md")
        card = _card_data(self.hub._content(readme).read_text(encoding="utf-8")) if readme else None
        first = next(iter(repo.commits.values()))
        self._send(200, {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                         "author": repo.repo_id.split("/")[0], "sha": c.id, "private": repo.private,
                         "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                         "createdAt": first.date, "lastModified": c.date, "siblings": siblings,
                         **({"cardData": card} if card else {})})

    def _tree(self, repo: Repo, c: Commit, path: str, query: dict) -> None:
        recursive = query.get("recursive", [""])[0].lower() in ("1", "true")
        if path and not any(p.startswith(path + "/") for p in c.files):
            raise HubError(404, f"{path} does not exist on {c.id}", "EntryNotFound")
        base = path + "/" if path else ""
        items: dict[str, dict] = {}
        for p, e in sorted(c.files.items()):
            if not p.startswith(base):
                continue
            parts = p[len(base):].split("/")
            if recursive:  # every file below `path`, and every folder on the way
                for i in range(1, len(parts)):
                    items.setdefault(base + "/".join(parts[:i]), self._dir_json(c, base + "/".join(parts[:i])))
                items[p] = self._file_json(p, e)
            elif len(parts) == 1:  # only the direct children
                items[p] = self._file_json(p, e)
            else:
                items.setdefault(base + parts[0], self._dir_json(c, base + parts[0]))
        listing = sorted(items.values(), key=lambda d: (d["type"] != "directory", d["path"]))
        # pagination as utils._pagination.paginate reads it: a GitHub-style `Link: <next>; rel="next"`
        start = int(query.get("cursor", ["0"])[0])
        page, headers = listing[start:start + self.hub.page_size], {}
        if start + self.hub.page_size < len(listing):
            nxt = (f"{self.hub.endpoint}{urlsplit(self.path).path}?recursive={recursive}"
                   f"&expand=False&cursor={start + self.hub.page_size}")
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._send(200, page, headers)

    def _paths_info(self, repo: Repo, c: Commit, form: dict) -> None:
        out = []
        for p in form.get("paths", []):
            p = p.strip("/")
            if p in c.files:
                out.append(self._file_json(p, c.files[p]))
            elif any(f.startswith(p + "/") for f in c.files):
                out.append(self._dir_json(c, p))
        self._send(200, out)

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id)
        c = self._rev(repo, rev)
        if (e := c.files.get(path)) is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": c.id})
        data = self.hub._content(e).read_bytes()
        etag = f'"{e.lfs or e.oid}"'
        headers = {"X-Repo-Commit": c.id, "ETag": etag, "Accept-Ranges": "bytes"}
        if e.lfs:
            headers |= {"X-Linked-Etag": etag, "X-Linked-Size": e.size}
        status, rng = 200, self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            lo, hi = (len(data) - int(b), len(data) - 1) if not a else (int(a), int(b) if b else len(data) - 1)
            if lo >= len(data) or lo > hi:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            hi = min(hi, len(data) - 1)
            status, data = 206, data[max(lo, 0):hi + 1]
            headers["Content-Range"] = f"bytes {max(lo, 0)}-{hi}/{e.size}"
        self._send(status, data, headers | {"Content-Length": len(data)}, "application/octet-stream")

    # -- writes --------------------------------------------------------------------------------------
    def _preupload(self, c: Commit, payload: dict) -> None:
        files = []
        for f in payload["files"]:
            path = _ok_path(f["path"])
            d = {"path": path, "uploadMode": "lfs" if self.hub._is_lfs(c, path, f["size"]) else "regular",
                 "shouldIgnore": False}
            if (e := c.files.get(path)) is not None:
                # the client compares this with its own oid (sha256 for LFS, git sha1 otherwise) and
                # leaves an unchanged file out of the commit (HfApi.create_commit, `_remote_oid`)
                d["oid"] = e.lfs or e.oid
            files.append(d)
        self._send(200, {"files": files, "commitOid": c.id})

    def _lfs_batch(self, repo_type: str, repo_id: str, payload: dict) -> None:
        self._repo(repo_type, repo_id, write=True)
        if payload.get("operation") != "upload":
            raise HubError(501, "FakeHub's LFS batch API only uploads (downloads go through /resolve)")
        objects = []
        for o in payload["objects"]:
            obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if not (self.hub.root / "lfs" / o["oid"]).exists():  # present objects get no actions: no upload
                href = f"{self.hub.endpoint}/_fakehub/lfs/{o['oid']}"
                obj["actions"] = {"upload": {"href": f"{href}?size={o['size']}&sig={self.hub._sign(o['oid'])}"},
                                  "verify": {"href": f"{self.hub.endpoint}/_fakehub/lfs/verify"}}
            objects.append(obj)
        self._send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def _lfs_store(self, m: str, rest: list[str], query: dict, body: bytes) -> None:
        if m == "PUT" and len(rest) == 1:  # lfs._upload_single_part (the "upload" action's href)
            oid = rest[0]
            if not hmac.compare_digest(query.get("sig", [""])[0], self.hub._sign(oid)):
                raise HubError(403, "bad upload signature")
            if hashlib.sha256(body).hexdigest() != oid or len(body) != int(query["size"][0]):
                raise HubError(400, "uploaded content does not match its oid/size")
            (self.hub.root / "lfs" / oid).write_bytes(body)
            self.hub.bytes_uploaded += len(body)
            self.hub.upload_requests += 1
            return self._send(200, b"", content_type="text/plain")
        if m == "POST" and rest == ["verify"]:  # lfs.lfs_upload, step 3 (the "verify" action)
            self._writer()
            obj = json.loads(body)
            p = self.hub.root / "lfs" / obj["oid"]
            if not p.exists() or p.stat().st_size != obj["size"]:
                raise HubError(404, f"LFS object {obj['oid']} not found")
            return self._send(200, {"success": True})
        raise HubError(404, "unknown LFS store route")

    def _apply_commit(self, repo: Repo, branch: str, lines: list[dict]) -> None:
        self.hub.upload_requests += 1
        header = lines[0]["value"] if lines and lines[0]["key"] == "header" else {}
        if branch not in repo.branches:
            if repo.resolve(branch) is not None:
                raise HubError(400, f"can only commit to a branch, not to {branch}")
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        if (parent := header.get("parentCommit")) and parent != head.id:
            # HfApi.create_commit(parent_commit=...): the Hub refuses when the branch has moved on
            raise HubError(412, f"A commit has happened since {parent}: the head of {branch} is {head.id}")
        files = dict(head.files)
        for op in lines[1:]:
            key, v = op["key"], op["value"]
            path = _ok_path(v["path"].strip("/") if key == "deletedFolder" else v["path"])
            if key == "file":
                data = base64.b64decode(v["content"])
                oid = git_oid(data)
                (self.hub.root / "objects" / oid).write_bytes(data)
                self.hub.bytes_uploaded += len(data)
                files[path] = Entry(oid, len(data), None)
            elif key == "lfsFile":
                obj = self.hub.root / "lfs" / v["oid"]
                if not obj.exists():
                    raise HubError(400, f"LFS object {v['oid']} for {path} was never uploaded")
                size = obj.stat().st_size
                files[path] = Entry(git_oid(lfs_pointer(v["oid"], size)), size, v["oid"])
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path + "/")]
                if not gone:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise HubError(400, f"FakeHub does not implement commit operation {key!r}")
        message = "\n\n".join(s for s in (header.get("summary", ""), header.get("description", "")) if s)
        c = self.hub._commit(repo, branch, message or "commit", files)
        url = f"{self.hub.endpoint}/{PREFIX[repo.repo_type]}{repo.repo_id}/commit/{c.id}"
        self._send(200, {"success": True, "commitOid": c.id, "commitUrl": url, "hookOutput": ""})


def hub_env_vars(hub: FakeHub, home: str | Path | None = None) -> dict[str, str]:
    """Environment variables that point huggingface_hub, datasets and transformers at `hub`
    (for a subprocess, or set before they are imported). With `home`, every cache lives there."""
    env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
           "HF_UPDATE_DOWNLOAD_COUNTS": "0"}
    if home is not None:
        home = Path(home)
        env |= {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                "HF_DATASETS_CACHE": str(home / "datasets"), "HF_XET_CACHE": str(home / "xet")}
    return env


@contextlib.contextmanager
def hub_env(hub: FakeHub, home: str | Path | None = None):
    """Set `hub_env_vars(hub, home)` in `os.environ` for the block (and drop the other token
    sources), then restore it. For subprocesses: `subprocess.run([...], env=os.environ)`.
    In-process code that already imported huggingface_hub needs the `fake_hub` fixture instead."""
    drop = ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE")  # token sources that would win over HF_TOKEN
    saved = {k: os.environ.get(k) for k in (*hub_env_vars(hub, home), *drop)}
    for k in drop:
        os.environ.pop(k, None)
    os.environ.update(hub_env_vars(hub, home))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["FakeHub", "Commit", "Entry", "hub_env", "hub_env_vars", "git_oid"]
