"""Pre-flight checks on the files of a push: secrets, pickles, sizes.

Before anything is uploaded every staged file is read whole:

- **secrets**: Hugging Face tokens (``hf_...``), OpenAI-style keys (``sk-...``, ``sk-proj-...``),
  Anthropic keys, AWS access key ids, GitHub and Slack tokens, private-key blocks, credentials
  in URLs (``https://user:PASS@host``), and the token this process would push with, wherever it
  appears. Found secrets are reported by file, line and kind with the value masked: the report
  must not leak what it found.
  Parquet shards are scanned row by row after decoding (their pages are compressed).
- **pickles**: files that unpickle on load (``.bin``/``.pt``/``.pkl``/``.ckpt``/``.joblib``/
  ``.npy``... and anything whose bytes start with the pickle protocol header, or a zip holding a
  ``data.pkl`` like torch's format), whatever their name. jprefs publishes safetensors only.
- **size**: files over ``max_file_bytes`` (default 5 GiB).

:func:`preflight` returns the :class:`Finding` list; :func:`refuse` raises one error listing them.

>>> find_secrets("token = hf_" + "a" * 34)[0].detail
'Hugging Face token hf_a...(37 chars)'
>>> find_secrets("see https://example.com/docs and me@example.com")
[]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from jprefs.errors import JprefsError

MAX_FILE_BYTES = 5 << 30
# (kind, pattern); each pattern's group "secret" is what gets masked
_PATTERNS: list[tuple[str, re.Pattern[bytes]]] = [
    ("Hugging Face token", re.compile(rb"(?<![A-Za-z0-9_])(?P<secret>hf_[A-Za-z0-9]{30,})")),
    ("OpenAI-style API key", re.compile(rb"(?<![A-Za-z0-9_-])(?P<secret>sk-(?!ant-)(?:proj-|svcacct-|admin-)?"
                                        rb"[A-Za-z0-9_-]{20,})")),
    ("Anthropic API key", re.compile(rb"(?P<secret>sk-ant-[A-Za-z0-9_-]{20,})")),
    ("AWS access key id", re.compile(rb"(?<![A-Z0-9])(?P<secret>(?:AKIA|ASIA)[0-9A-Z]{16})(?![A-Z0-9])")),
    ("GitHub token", re.compile(rb"(?P<secret>(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}))")),
    ("Slack token", re.compile(rb"(?P<secret>xox[baprs]-[A-Za-z0-9-]{10,})")),
    ("private key", re.compile(rb"(?P<secret>-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----)")),
    ("credentials in a URL", re.compile(rb"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#:@\"']+:(?P<secret>[^\s/?#@\"']+)@"
                                        rb"[A-Za-z0-9.\-]")),
]
# torch.save / pickle / joblib formats, and numpy's (which may hold pickled objects)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".dill")


@dataclass
class Finding:
    """One problem: ``path`` (relative to the folder), ``kind`` (secret / pickle / size), and what."""

    path: str
    kind: str
    detail: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.kind}: {self.detail}"


def _mask(secret: bytes) -> str:
    s = secret.decode("utf-8", "replace")
    return (s[:4] + "..." + f"({len(s)} chars)") if len(s) > 8 else "***"


def find_secrets(text: str | bytes, extra: tuple[str, ...] = ()) -> list[Finding]:
    """Secrets in ``text`` (``extra``: literal values that are secrets too, e.g. the push token)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    out: list[Finding] = []
    for kind, pat in _PATTERNS:
        for m in pat.finditer(data):
            line = data.count(b"\n", 0, m.start()) + 1
            out.append(Finding("", "secret", f"{kind} {_mask(m.group('secret'))}", line))
    for value in extra:
        v = value.encode("utf-8") if value else b""
        if len(v) >= 8:
            start = data.find(v)
            if start >= 0:
                out.append(Finding("", "secret", f"the token this push uses {_mask(v)}",
                                   data.count(b"\n", 0, start) + 1))
    return out


def is_pickle(path: Path, head: bytes) -> str:
    """Why ``path`` (first bytes ``head``) is a pickle, or ''."""
    if path.suffix.lower() in PICKLE_SUFFIXES or path.name.lower().endswith(".tar"):
        return f"a {path.suffix} file (pickle-based formats run code on load; publish safetensors)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle data (protocol header), whatever its name"
    if head[:4] == b"PK\x03\x04":
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                if any(n.endswith(".pkl") for n in z.namelist()):
                    return "a zip with a .pkl inside (torch.save's format)"
        except zipfile.BadZipFile:
            return ""
    return ""


def preflight(folder: str | os.PathLike, files: list[str], *, max_file_bytes: int = MAX_FILE_BYTES,
              token: str | None = None, scan_secrets: bool = True) -> list[Finding]:
    """Every finding over ``files`` (paths relative to ``folder``)."""
    root = Path(folder)
    extra = (token,) if token else ()
    out: list[Finding] = []
    for rel in files:
        p = root / rel
        size = p.stat().st_size
        if size > max_file_bytes:
            out.append(Finding(rel, "size", f"{size / 2**30:.2f} GiB is over the {max_file_bytes / 2**30:.2f} GiB "
                                            f"limit (--max-file-size)"))
            continue
        with open(p, "rb") as fh:
            head = fh.read(8)
        why = is_pickle(p, head)
        if why:
            out.append(Finding(rel, "pickle", why))
        if not scan_secrets:
            continue
        if p.suffix == ".parquet":              # compressed pages: scan the decoded rows, by row number
            out.extend(_parquet_secrets(p, rel, extra))
        for f in _file_secrets(p, size, extra):
            f.path = rel
            out.append(f)
    return out


CHUNK = 1 << 26          # files above this are scanned in chunks (weights can be gigabytes)


def _file_secrets(p: Path, size: int, extra: tuple[str, ...]) -> list[Finding]:
    if size <= CHUNK:
        return find_secrets(p.read_bytes(), extra)
    out: list[Finding] = []
    overlap = 4096                             # a secret across a chunk border is still seen whole
    with open(p, "rb") as fh:
        prev = b""
        while chunk := fh.read(CHUNK):
            for f in find_secrets(prev + chunk, extra):
                if f.detail not in {x.detail for x in out}:    # each secret once (the overlap repeats some)
                    f.line = None              # a binary file: no meaningful line
                    out.append(f)
            prev = chunk[-overlap:]
    return out


def _parquet_secrets(p: Path, rel: str, extra: tuple[str, ...]) -> list[Finding]:
    import json

    import pyarrow.parquet as pq

    out = []
    row = 0
    for batch in pq.ParquetFile(p).iter_batches(batch_size=1024):
        for r in batch.to_pylist():
            row += 1
            for f in find_secrets(json.dumps(r, ensure_ascii=False, default=str), extra):
                f.path, f.line = f"{rel} row", row
                out.append(f)
    return out


class PreflightRefused(JprefsError):
    """Files that must not be published."""


def refuse(findings: list[Finding], what: str, *, allow_secrets: bool = False) -> None:
    """Raise :class:`PreflightRefused` listing ``findings`` (secrets pass with ``allow_secrets``)."""
    bad = [f for f in findings if not (allow_secrets and f.kind == "secret" and "this push uses" not in f.detail)]
    if not bad:
        return
    shown = "\n".join(f"  - {f}" for f in bad[:20]) + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
    kinds = {f.kind for f in bad}
    fixes = []
    if "secret" in kinds:
        fixes.append("remove the secret from the file (for data: drop or edit the row named above and rebuild); "
                     "revoke any real key that was written to disk; --allow-secrets publishes strings that only "
                     "look like keys (never the push token)")
    if "pickle" in kinds:
        fixes.append("save weights as safetensors (save_pretrained(..., safe_serialization=True)) and delete the "
                     "pickle files")
    if "size" in kinds:
        fixes.append("shard the file, or raise --max-file-size")
    raise PreflightRefused(f"refusing to push {what}: {len(bad)} file problem(s):\n{shown}\n  fix: "
                           + "; ".join(fixes))
