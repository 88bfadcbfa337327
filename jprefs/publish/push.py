"""Push a staged dataset or model to the Hugging Face Hub through huggingface_hub's client.

The order is fixed: stage (Parquet shards or copied model files, and the card) into a private
temporary folder -> licence check -> pre-flight (secrets, pickles, sizes) -> ``--dry-run`` stops
here with the exact file list, sizes and the rendered card -> ``create_repo`` (``exist_ok``) and the
branch for ``--revision`` -> one commit with only the files whose content differs from the remote
(git blob sha1 for regular files, sha256 for LFS ones), and the deletion of files jprefs manages
that the new version no longer has (stale shards). A push of an unchanged folder makes no commit
and uploads nothing.

The token comes from ``HF_TOKEN`` or the ``hf auth login`` store (``huggingface_hub.get_token``);
it is passed to the client and never printed, logged or written.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from jprefs.errors import ConfigError, JprefsError


# the files that say what a repo is (a jprefs dataset, reward model, stack, ensemble): one left from an
# earlier push of another kind would make the repo load as that kind, so a push removes the ones it lacks
JPREFS_MARKERS = ("jprefs_dataset.json", "jprefs_reward.json", "jprefs_stack.json", "jprefs_ensemble.json",
                  "probe.json", "done.json")


@dataclass
class PushResult:
    repo_id: str
    repo_type: str
    revision: str
    files: list[tuple[str, int]]                    # staged (path, bytes)
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    commit_url: str = ""
    dry_run: bool = False
    card: str = ""
    license: str = ""


def check_repo_id(repo_id: str) -> str:
    """``OWNER/NAME`` as the Hub allows it, or a ConfigError saying what is wrong."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}", repo_id or "") \
            or ".." in repo_id or "--" in repo_id or repo_id.endswith((".git", ".")):
        raise ConfigError(f"--repo-id {repo_id!r} is not a Hub repository id; fix: use OWNER/NAME "
                          f"(letters, digits, '-', '_', '.'), e.g. my-team/ja-hh-rlhf-pairs")
    return repo_id


def git_blob_sha1(data: bytes) -> str:
    r"""The git object id of a file's bytes (what the Hub reports as a regular file's ``blob_id``).

    >>> git_blob_sha1(b"hello\n")              # = `git hash-object` of that file
    'ce013625030ba8dba906f756967f9e9ca394464a'
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _remote_state(api, repo_id: str, repo_type: str, revision: str) -> dict[str, tuple[str, str | None]] | None:
    """path -> (git blob id, lfs sha256 or None) of the remote revision; None when the repo or branch is new."""
    from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        items = api.list_repo_tree(repo_id, repo_type=repo_type, revision=revision, recursive=True)
        out = {}
        for it in items:
            if getattr(it, "blob_id", None) is None and not hasattr(it, "size"):
                continue                                   # a folder
            lfs = getattr(it, "lfs", None)
            sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
            out[it.path] = (getattr(it, "blob_id", None), sha)
        return out
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
        return None


def _changed(root: Path, rel: str, remote: dict | None) -> bool:
    if not remote or rel not in remote:
        return True
    blob, sha = remote[rel]
    path = root / rel
    if sha:                                     # an LFS file: sha256, streamed (weights can be gigabytes)
        from jprefs.data.io import file_sha256

        return file_sha256(path) != sha
    return git_blob_sha1(path.read_bytes()) != blob


def token_or_error(dry_run: bool) -> str | None:
    from huggingface_hub import get_token

    token = get_token()
    if not token and not dry_run:
        raise JprefsError("no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`; "
                          "or try --dry-run first (it needs no token)")
    return token


def push(kind: str, path: str, repo_id: str, *, private: bool = False, revision: str | None = None,
         dry_run: bool = False, allow_unknown_license: bool = False, allow_secrets: bool = False,
         max_file_bytes: int | None = None, commit_message: str = "", eval_dirs: list[str] | None = None,
         pretty_name: str = "", allow_unverified_eval: bool = False, stream=None) -> PushResult:
    """Stage, check and push ``path`` as a ``kind`` (``dataset`` | ``model``) repository (module doc); the
    cards' snippets load ``revision``."""
    from jprefs.publish.preflight import MAX_FILE_BYTES, preflight, refuse

    check_repo_id(repo_id)
    stream = stream or sys.stderr
    token = token_or_error(dry_run)
    repo_type = "dataset" if kind == "dataset" else "model"
    with tempfile.TemporaryDirectory(prefix="jprefs-push-") as tmp:
        root = Path(tmp)
        if kind == "dataset":
            from jprefs.publish.dataset import find_source, stage_dataset

            staged = stage_dataset(find_source(path), root, repo_id=repo_id, allow_unknown=allow_unknown_license,
                                   pretty_name=pretty_name, revision=revision)
            skipped: dict[str, str] = {}
            managed = ("pairs/", "binary/", "trl/", "trl-conversational/", "trl-unpaired/",
                       "trl-unpaired-conversational/", "rejects/")
        else:
            from jprefs.publish.model import BACKBONE_DIR, stage_model

            staged = stage_model(path, root, repo_id=repo_id, allow_unknown=allow_unknown_license,
                                 eval_dirs=eval_dirs, revision=revision, allow_unverified_eval=allow_unverified_eval)
            skipped = staged.skipped
            # a stack's / ensemble's member folders and bundled backbone: stale files there go
            managed = ("run/", f"{BACKBONE_DIR}/") + tuple(f"{m}/" for m in staged.meta.get("members", []))
        files = staged.files
        findings = preflight(root, files, max_file_bytes=max_file_bytes or MAX_FILE_BYTES, token=token)
        refuse(findings, f"{kind} {path}", allow_secrets=allow_secrets)
        res = PushResult(repo_id, repo_type, revision or "main", [(f, (root / f).stat().st_size) for f in files],
                         skipped=skipped, dry_run=dry_run, card=staged.card,
                         license=staged.licenses.license + (f" ({staged.licenses.license_name})"
                                                            if staged.licenses.license_name else ""))
        if dry_run:
            return res
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
        remote = _remote_state(api, repo_id, repo_type, revision or "main")
        ops = []
        for f in files:
            if _changed(root, f, remote):
                ops.append(CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(root / f)))
                res.uploaded.append(f)
            else:
                res.unchanged.append(f)
        # a folder of the remote that a jprefs push made (it holds a marker: a member of an earlier stack or
        # ensemble) is jprefs' too: what the new version lacks there goes
        made = tuple(p.rsplit("/", 1)[0] + "/" for p in (remote or {})
                     if "/" in p and p.rsplit("/", 1)[1] in JPREFS_MARKERS) if kind == "model" else ()
        stale = sorted(p for p in (remote or {}) if p not in files and
                       (p.startswith(managed + made) or p.endswith(".safetensors") or p in JPREFS_MARKERS
                        or (kind == "model" and _staged_kind_of_file(p))))
        ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
        res.deleted = stale
        if ops:
            info = api.create_commit(repo_id, operations=ops, repo_type=repo_type, revision=revision or "main",
                                     commit_message=commit_message or f"jprefs push {kind}: {len(res.uploaded)} "
                                                                      f"file(s) changed, {len(stale)} removed")
            res.commit_url = getattr(info, "commit_url", "") or str(info)
        return res


def _staged_kind_of_file(p: str) -> bool:
    """A model-repo file jprefs stages (tokenizer and config files, plots, the run/ record): one the new
    version lacks is deleted, or a pull would load the old version's (an old chat_template.jinja or
    added_tokens.json beside the new weights)."""
    from jprefs.publish.model import MODEL_FILES, MODEL_SUFFIXES

    return p.startswith("run/") or ("/" not in p and (p in MODEL_FILES or p.endswith(MODEL_SUFFIXES)))


def report(res: PushResult, *, show_card: bool = True) -> str:
    """What a push did (or, with --dry-run, would do), for the terminal."""
    total = sum(n for _, n in res.files)
    lines = [f"{'DRY RUN: would push' if res.dry_run else 'pushed'} {res.repo_type} {res.repo_id} "
             f"(revision {res.revision}): {len(res.files)} files, {_size(total)}; licence {res.license}"]
    for f, n in res.files:
        mark = "" if res.dry_run else ("  (unchanged)" if f in res.unchanged else "  (uploaded)")
        lines.append(f"  {_size(n):>10}  {f}{mark}")
    for f in res.deleted:
        lines.append(f"  {'':>10}  {f}  (deleted: no longer in this version)")
    if res.skipped:
        lines.append(f"left out ({len(res.skipped)}):")
        lines += [f"  {f}: {why}" for f, why in sorted(res.skipped.items())]
    if not res.dry_run:
        lines.append(f"commit: {res.commit_url}" if res.commit_url else
                     "nothing changed on the Hub: every file is identical to the remote one (no commit made)")
    if res.dry_run and show_card:
        lines += ["", "----- README.md (the card) -----", res.card]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def parse_size(s: str) -> int:
    """``500MB``, ``5GiB``, ``1000`` -> bytes.

    >>> parse_size("5GiB"), parse_size("10MB"), parse_size("123")
    (5368709120, 10000000, 123)
    """
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*", str(s), re.I)
    if not m:
        raise ConfigError(f"--max-file-size {s!r}: not a size; fix: e.g. 500MB or 5GiB")
    num, unit = float(m.group(1)), (m.group(2) or "").upper()
    mult = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20,
            "GIB": 2**30, "TIB": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}.get(unit)
    if mult is None:
        raise ConfigError(f"--max-file-size {s!r}: unknown unit; fix: B, KB, MB, GB, KiB, MiB, GiB")
    return int(num * mult)
