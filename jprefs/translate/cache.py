"""The translation cache: checkpoint files of finished units, written atomically.

Each engine call's results go to one new file ``chunk-TAG-SEQ-PID.jsonl`` in the
cache folder (temp file + fsync + rename), one line per unit:
``{"k": key, "t": raw translation, "f": finish_reason}``. The key is a content
hash of (unit text, model, revision, template hash, sampling), so a rerun, a
resumed run or another shard finds exactly the work already done and sends
nothing twice. A process killed at any moment leaves only whole files (its
unfinished temp file starts with ``.`` and is ignored).

Only accepted translations are kept: an empty or blank text is never written, and
never loaded, so a unit that got no translation is sent again by the next run
instead of being remembered as finished.

>>> c = Cache("/tmp/jprefs-cache-doctest")      # doctest: +SKIP
>>> c.add([("k1", "訳", "stop")], tag="s0")      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jprefs.data.io import AtomicWriter
from jprefs.data.schema import content_hash
from jprefs.errors import DataError


def unit_key(text: str, model: str, revision: str, template_hash: str, sampling: dict) -> str:
    """Cache key of one unit under one translation setup."""
    return content_hash(text, model, revision, template_hash, sampling)[:32]


def _has_text(t) -> bool:
    return isinstance(t, str) and bool(t.strip())


class Cache:
    """A dict ``key -> (raw text, finish_reason)`` backed by checkpoint files."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, tuple[str, str]] = {}
        self.files = 0
        self.skipped = 0  # empty entries found in old checkpoint files and ignored
        for p in sorted(self.folder.glob("chunk-*.jsonl")):  # sorted: the first file wins a (rare) tie
            self._load(p)

    def _load(self, p: Path) -> None:
        self.files += 1
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                try:
                    d = json.loads(line)
                    k, t, r = d["k"], d["t"], d["f"]
                    if t is None or (isinstance(t, str) and not t.strip()):
                        # caches written before empty completions counted as failed hold "" (or null)
                        # for them as if finished; skip such entries so that those units are translated
                        # again rather than rejected as `empty` by every rerun
                        self.skipped += 1
                        continue
                    if not isinstance(t, str) or not isinstance(r, str):
                        raise TypeError("'t' and 'f' must be strings")
                    self.data.setdefault(k, (t, r))
                except (ValueError, KeyError, TypeError) as e:
                    raise DataError(f"corrupt checkpoint line ({e})", path=str(p), line=i,
                                    fix="delete this file; its units will be translated again") from e

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str) -> tuple[str, str] | None:
        return self.data.get(key)

    def add(self, records: list[tuple[str, str, str]], tag: str = "s0") -> Path | None:
        """Write ``(key, text, finish_reason)`` records as one new checkpoint file.

        Records with an empty or blank text are left out: the pipeline reports such units as
        failed before they get here; this is the last guard so that no caller can cache one
        (a unit left out is missing, and a missing unit is retranslated or reported, never lost).
        """
        records = [rec for rec in records if _has_text(rec[1])]
        if not records:
            return None
        seq = sum(1 for _ in self.folder.glob(f"chunk-{tag}-*.jsonl"))
        path = self.folder / f"chunk-{tag}-{seq:06d}-{os.getpid()}.jsonl"
        with AtomicWriter(path) as f:
            for k, t, r in records:
                f.write_json({"k": k, "t": t, "f": r})
        for k, t, r in records:
            self.data.setdefault(k, (t, r))
        self.files += 1
        return path

    def merge_from(self, other: str | os.PathLike) -> int:
        """Load (and copy in) the checkpoint files of another cache folder; return files added."""
        import shutil

        n = 0
        for p in sorted(Path(other).glob("chunk-*.jsonl")):
            dst = self.folder / p.name
            if not dst.exists():
                shutil.copyfile(p, self.folder / f".{p.name}.tmp")
                os.replace(self.folder / f".{p.name}.tmp", dst)
                self._load(dst)
                n += 1
        return n
