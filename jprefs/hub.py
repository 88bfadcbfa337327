"""Hugging Face Hub models offline: one clear error instead of a transformers traceback.

Every jprefs loader of a Hub model (train-rm backbones, ``RewardModel.from_pretrained``, the rl
policy and classifier rewards, the transformers and vllm translation engines, the similarity
model) runs its ``from_pretrained`` calls inside :func:`hub_model`. When the model is neither a
local path nor in the local cache and the Hub cannot be reached (``HF_HUB_OFFLINE=1``, no
network), transformers raises an ``OSError`` whose cause is huggingface_hub's
``LocalEntryNotFoundError`` / ``OfflineModeIsEnabled`` (or a connection error);
:func:`hub_model` turns that into one :class:`ModelNotCachedError` line that names the model
and the command that fixes it. Every other error passes through unchanged.

Light: nothing is imported until an error is inspected (classes are matched by name).

>>> with hub_model("org/name"):                      # doctest: +SKIP
...     AutoTokenizer.from_pretrained("org/name")
Traceback (most recent call last):
jprefs.hub.ModelNotCachedError: model 'org/name' is not in the local Hugging Face cache and the Hub ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from jprefs.errors import JprefsError

# huggingface_hub / requests / httpx exceptions that mean "not cached and the Hub is out of reach"
OFFLINE_ERRORS = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout",
                  "ConnectionError", "ProxyError", "NameResolutionError", "MaxRetryError"}
# what transformers (and sentence-transformers, vllm) say when they re-raise such an error as OSError
OFFLINE_TEXT = ("couldn't connect to 'https://huggingface.co'", "outgoing traffic has been disabled",
                "offline mode is enabled", "cannot find the requested files in the disk cache",
                "we couldn't connect to")


class ModelNotCachedError(JprefsError):
    """A Hub model that is not in the local cache while the Hub cannot be reached."""

    def __init__(self, model: str, revision: str | None = None):
        self.model = model
        rev = f" --revision {revision}" if revision else ""
        super().__init__(
            f"model '{model}'{f' (revision {revision})' if revision else ''} is not in the local Hugging Face "
            f"cache and the Hub cannot be reached (HF_HUB_OFFLINE=1 / no network); fix: download it on a machine "
            f"with network (`hf download {model}{rev}`) or pass a local path")


def is_offline_miss(e: BaseException) -> bool:
    """Whether ``e`` (or an exception it was raised from) says the Hub is out of reach for a file
    that is not cached.

    >>> is_offline_miss(OSError("We couldn't connect to 'https://huggingface.co' to load the files"))
    True
    >>> is_offline_miss(OSError("org/name does not appear to have a file named config.json"))
    False
    """
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if any(c.__name__ in OFFLINE_ERRORS for c in type(cur).__mro__):
            return True
        if isinstance(cur, OSError) and any(t in str(cur).lower() for t in OFFLINE_TEXT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _is_local(name: str) -> bool:
    return os.path.exists(os.path.expanduser(str(name)))


@contextlib.contextmanager
def hub_model(name: str | os.PathLike, revision: str | None = None) -> Iterator[None]:
    """Run model loading for ``name``; an offline cache miss becomes a :class:`ModelNotCachedError`.

    A local path is never a Hub id: its errors pass through (the caller explains them).

    >>> with hub_model("jprefs/resources"):
    ...     pass
    """
    try:
        yield
    except JprefsError:
        raise
    except Exception as e:  # noqa: BLE001 - inspected, and re-raised unless it is an offline miss
        if _is_local(str(name)) or not is_offline_miss(e):
            raise
        # from None: the message is complete, and transformers' chain is the 100-line traceback it replaces
        raise ModelNotCachedError(str(name), revision) from None


# what a snapshot of a jprefs model folder downloads: weights as safetensors, configs, tokenizers, cards;
# never pickles (*.bin, *.pt, *.pkl, ...), which nothing jprefs loads may read
SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.yaml", "*.md")


def folder_snapshot(repo_id: str, revision: str | None = None, subfolder: str | None = None,
                    markers: tuple[str, ...] = ()) -> str | None:
    """A local copy (huggingface_hub's cache) of the jprefs model folder a Hub repo holds, or None.

    With ``subfolder``: that folder of the repo (``reward``, ``seed-42``), always. Without: the whole
    repo, only when its root has one of ``markers`` (``jprefs_stack.json``, ``jprefs_ensemble.json``:
    a folder of models that is loaded from files, not through one ``from_pretrained``); a repo without
    them (a single reward model, a plain classifier) is None, and its loader reads it file by file.
    Only :data:`SNAPSHOT_PATTERNS` are downloaded. Offline, a cached copy is used; an uncached one is a
    :class:`ModelNotCachedError` naming the repo (a repo whose markers are not cached is None: the
    single-model loader then says what is missing).
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    if not subfolder:
        for name in markers:
            try:
                hf_hub_download(repo_id, name, revision=revision)
                break
            except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
                continue        # not this kind of folder (or no such repo: the single-model loader says so)
            except Exception as e:  # noqa: BLE001 - an offline miss means "not a cached folder"; the rest re-raised
                if not is_offline_miss(e):
                    raise
                continue
        else:
            return None
    sub = subfolder.strip("/") if subfolder else ""
    if ".." in sub.split("/"):
        raise JprefsError(f"subfolder {subfolder!r}: a folder inside the repo, without '..'")
    patterns = [f"{sub}/{p}" if sub else p for p in SNAPSHOT_PATTERNS]
    with hub_model(repo_id, revision):
        local = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    out = os.path.join(local, sub) if sub else local
    if not os.path.isdir(out):
        raise JprefsError(f"{repo_id}{f' (revision {revision})' if revision else ''} has no folder {sub!r}\n"
                          f"  fix: check the subfolder name (the repo's card lists its folders)")
    return out
