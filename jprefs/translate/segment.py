"""Split texts into translation units, protecting code and URLs, under a token budget.

A field (one prompt turn, the chosen or the rejected response) becomes a list of
:class:`Segment`: literal pieces that are copied byte for byte (fenced code blocks,
the whitespace between paragraphs, text without letters) and units that are sent
to the engine. Inside a unit, inline code and URLs are replaced by placeholders
``⟦1⟧``, ``⟦2⟧`` ... (numbered from 1 in each unit, so two units that differ only
by a URL are the same unit and are translated once) and put back afterwards.

Only texts over ``max_tokens`` are split: first at paragraph breaks, then at
sentence ends, then (a last resort for run-on text) at spaces. The token count is
an estimate (UTF-8 bytes / 4, about right for English with LLM tokenizers) so that
segmentation, and hence the cache, is the same whatever engine or machine runs it.

>>> segs = segment_text("See `ls -l` at https://x.org now.", 512)
>>> [(s.kind, s.text, s.spans) for s in segs]
[('unit', 'See ⟦1⟧ at ⟦2⟧ now.', ('`ls -l`', 'https://x.org'))]
>>> reassemble(segs, ["⟦1⟧を⟦2⟧で見て。"])
('`ls -l`をhttps://x.orgで見て。', 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.M | re.S)
# inline code, then URLs (trailing sentence punctuation is not part of a URL)
PROTECT = re.compile(r"`[^`\n]+`|(?:https?://|www\.)[^\s<>()\[\]{}\"'`]*[^\s<>()\[\]{}\"'`.,;:!?]")
PLACEHOLDER = re.compile(r"⟦(\d+)⟧")
PARA = re.compile(r"(\n[ \t]*\n\s*)")
SENT = re.compile(r"(?<=[.!?。！？])(\s+)(?=\S)")
LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Segment:
    """``kind`` is ``lit`` (copied) or ``unit`` (translated; ``text`` holds placeholders)."""

    kind: str
    text: str
    spans: tuple[str, ...] = ()


def est_tokens(text: str) -> int:
    """Engine-independent token estimate: UTF-8 bytes / 4, rounded up."""
    return (len(text.encode("utf-8")) + 3) // 4


def _mask(text: str) -> Segment:
    spans: list[str] = []

    def sub(m: re.Match) -> str:
        spans.append(m.group(0))
        return f"⟦{len(spans)}⟧"

    masked = PROTECT.sub(sub, text)
    if not LETTER.search(PLACEHOLDER.sub("", masked)):
        return Segment("lit", text)  # nothing to translate (numbers, punctuation, only code/URLs)
    return Segment("unit", masked, tuple(spans))


def _split(pieces: list[str], seps: list[str], max_tokens: int) -> list[tuple[str, str]]:
    """Greedily join consecutive pieces (with the separators between them) while under budget."""
    out: list[tuple[str, str]] = []  # (chunk, separator after it)
    cur, cur_sep = None, ""
    for piece, sep in zip(pieces, seps + [""]):
        if cur is None:
            cur, cur_sep = piece, sep
        elif est_tokens(cur + cur_sep + piece) > max_tokens:
            out.append((cur, cur_sep))
            cur, cur_sep = piece, sep
        else:
            cur, cur_sep = cur + cur_sep + piece, sep
    out.append((cur or "", cur_sep))
    return out


def _by(regex: re.Pattern, text: str) -> tuple[list[str], list[str]]:
    parts = regex.split(text)  # [piece, sep, piece, sep, ..., piece]
    return parts[0::2], parts[1::2]


def _budget_split(text: str, max_tokens: int) -> list[tuple[str, str]]:
    """Chunks of ``text`` (each under budget where possible) and the separator after each."""
    if est_tokens(text) <= max_tokens:
        return [(text, "")]
    for regex in (PARA, SENT, re.compile(r"(\s+)")):
        pieces, seps = _by(regex, text)
        if len(pieces) > 1:
            out: list[tuple[str, str]] = []
            for chunk, sep in _split(pieces, seps, max_tokens):
                sub = _budget_split(chunk, max_tokens) if est_tokens(chunk) > max_tokens else [(chunk, "")]
                sub[-1] = (sub[-1][0], sub[-1][1] + sep)
                out.extend(sub)
            return out
    return [(text, "")]  # one enormous word: send it as is, the checks will flag a bad result


def segment_text(text: str, max_tokens: int = 1024) -> list[Segment]:
    """Segments of one field; ``"".join`` of the sources of all segments is ``text``.

    >>> [s.kind for s in segment_text("Hi.\\n\\n```py\\nx = 1\\n```\\n\\nBye.", 512)]
    ['unit', 'lit', 'unit']
    """
    segs: list[Segment] = []

    def lit(s: str) -> None:
        if s:
            segs.append(Segment("lit", s))

    def prose(s: str) -> None:
        for chunk, sep in _budget_split(s, max_tokens):
            core = chunk.strip()
            if core:
                lead = chunk[: len(chunk) - len(chunk.lstrip())]
                trail = chunk[len(chunk.rstrip()):]
                lit(lead)
                segs.append(_mask(core))
                lit(trail)
            else:
                lit(chunk)
            lit(sep)

    pos = 0
    for m in FENCE.finditer(text):
        prose(text[pos:m.start()])
        lit(m.group(0))
        pos = m.end()
    prose(text[pos:])
    # merge adjacent literals so that the layout stays small
    merged: list[Segment] = []
    for s in segs:
        if merged and s.kind == "lit" and merged[-1].kind == "lit":
            merged[-1] = Segment("lit", merged[-1].text + s.text)
        else:
            merged.append(s)
    return merged


def source_text(segs: list[Segment]) -> str:
    """The original text back from its segments (an identity: tested)."""
    return "".join(s.text if s.kind == "lit" else unmask(s.text, s.spans)[0] for s in segs)


def unmask(text: str, spans: tuple[str, ...]) -> tuple[str, int]:
    """Put protected spans back; return (text, number of placeholders lost or invented)."""
    seen: list[int] = []

    def sub(m: re.Match) -> str:
        k = int(m.group(1))
        if 1 <= k <= len(spans):
            seen.append(k)
            return spans[k - 1]
        return m.group(0)

    out = PLACEHOLDER.sub(sub, text)
    lost = sum(1 for k in range(1, len(spans) + 1) if seen.count(k) != 1)
    lost += len(PLACEHOLDER.findall(out))  # placeholders the model made up
    return out, lost


def reassemble(segs: list[Segment], translations: list[str]) -> tuple[str, int]:
    """Join literals and translated units (one translation per unit, in order).

    Returns (text, number of lost placeholders): a lost placeholder means a piece
    of code or a URL did not survive and the field is flagged.
    """
    it = iter(translations)
    parts, lost = [], 0
    for s in segs:
        if s.kind == "lit":
            parts.append(s.text)
        else:
            t, n = unmask(next(it), s.spans)
            parts.append(t)
            lost += n
    return "".join(parts), lost
