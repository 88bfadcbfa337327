"""A pushed card's code pinned to the revision it was pushed to.

A card's snippets (``RewardModel.from_pretrained("REPO")``, transformers' ``from_pretrained``,
``load_dataset``, ``hf_hub_download`` / ``snapshot_download``, ``pipeline(model=...)``) are rendered
by several generators (the reward-model, stack, ensemble, policy and dataset cards, a member's
``subfolder=`` card). A push to a branch must hand out code that loads that branch, not ``main``:
:func:`pin_revision` rewrites every call that names the repository, whoever rendered it, and
:func:`unpinned_calls` says which ones still would load ``main``.

>>> pin_revision('rm = RewardModel.from_pretrained("me/rm", subfolder="reward")', "me/rm", "v2")
'rm = RewardModel.from_pretrained("me/rm", subfolder="reward", revision="v2")'
>>> pin_revision('load_dataset("me/d", "pairs", split="train")', "me/d", None)
'load_dataset("me/d", "pairs", split="train")'
"""

from __future__ import annotations

import re


def _calls(line: str, repo_id: str):
    """``(open, close)`` indices of the parentheses of every call on ``line`` that takes the string
    ``"repo_id"`` (or ``'repo_id'``) as an argument; calls spanning lines are not snippets jprefs writes."""
    for m in re.finditer(r"""(["'])%s\1""" % re.escape(repo_id), line):
        depth, start = 0, None
        for i in range(m.start() - 1, -1, -1):           # the innermost unclosed "(" before the literal
            if line[i] == ")":
                depth += 1
            elif line[i] == "(":
                if depth == 0:
                    start = i
                    break
                depth -= 1
        if start is None or not re.match(r"[\w.]", line[start - 1:start] or " "):
            continue                                   # a parenthesis of prose or markdown, not a call
        depth, quote = 0, None
        for j in range(start, len(line)):
            c = line[j]
            if quote:
                quote = None if c == quote else quote
            elif c in "\"'":
                quote = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    yield start, j
                    break


def pin_revision(text: str, repo_id: str, revision: str | None, *, repo_type: str = "model") -> str:
    """``text`` with ``revision="..."`` added to every call that loads ``repo_id`` (and links to the repo's
    page pointed at that revision's tree); unchanged for no revision or ``main`` (what a call loads by
    default)."""
    if not revision or revision == "main":
        return text
    out = []
    for line in text.split("\n"):
        # right to left, so earlier indices stay valid as text is inserted
        for start, end in sorted(set(_calls(line, repo_id)), reverse=True):
            if not re.search(r"\brevision\s*=", line[start:end]):
                line = line[:end] + f', revision="{revision}"' + line[end:]
        out.append(line)
    page = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    return re.sub(re.escape(page) + r"(?![\w/.\-])", f"{page}/tree/{revision}", "\n".join(out))


def unpinned_calls(text: str, repo_id: str) -> list[str]:
    """The calls in ``text`` that load ``repo_id`` with no ``revision=`` (they load ``main``)."""
    return [line[s:e + 1] for line in text.split("\n") for s, e in _calls(line, repo_id)
            if not re.search(r"\brevision\s*=", line[s:e])]
