"""The licence of a published dataset or model, derived from the licences of what went into it.

Every jprefs record carries its source's licence, and a reward model or policy is made from a
backbone and its training data. :func:`derive` turns those components into the licence the card
states, or refuses:

- **unknown** (no licence recorded, ``unknown``, ``other``, an id this table does not know):
  refused; ``allow_unknown=True`` (``--allow-unknown-license``) publishes anyway and the card
  says so in its first lines.
- **conflicting** terms that no single licence satisfies, refused (not overridable):
  no-derivatives material in anything derived (a translated row is a derivative of its source
  row, a model of all its data); and, for a model (one work made of every component), two
  different share-alike licences, or a share-alike licence with non-commercial material that its
  own terms do not already carry (CC BY-SA forbids adding the NC restriction). A dataset is a
  collection whose rows keep their own licence, so mixed licences there are no conflict.
- otherwise: the one licence when every component has it. A dataset with several: the list of
  them. A model: the share-alike or non-commercial licence that governs the rest when there is
  one, else ``license: other`` with ``license_name`` their SPDX conjunction (``apache-2.0 AND mit``).

This is a conservative reading for cards, not legal advice; the card lists every component so a
reader can check.

>>> derive({"data: Anthropic/hh-rlhf": "mit"}).license
'mit'
>>> derive({"backbone": "mit", "data": "cc-by-nc-4.0"}, kind="model").license
'cc-by-nc-4.0'
>>> derive({"backbone": "mit", "data": "apache-2.0"}, kind="model").license_name
'apache-2.0 AND mit'
>>> derive({"a": "cc-by-sa-4.0", "b": "cc-by-nc-4.0"}, kind="model").conflicts[0]
'cc-by-sa-4.0 (share-alike) cannot take the non-commercial restriction of cc-by-nc-4.0 (b)'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jprefs.errors import JprefsError

UNKNOWN = "unknown"
# Hub licence id -> (family, share_alike, non_commercial, no_derivatives). family: permissive | copyleft | cc
_TABLE: dict[str, tuple[str, bool, bool, bool]] = {
    "mit": ("permissive", False, False, False),
    "apache-2.0": ("permissive", False, False, False),
    "bsd-2-clause": ("permissive", False, False, False),
    "bsd-3-clause": ("permissive", False, False, False),
    "isc": ("permissive", False, False, False),
    "unlicense": ("permissive", False, False, False),
    "cc0-1.0": ("permissive", False, False, False),
    "pddl": ("permissive", False, False, False),
    "odc-by": ("permissive", False, False, False),
    "public-domain": ("permissive", False, False, False),
    "cc-by-3.0": ("permissive", False, False, False),
    "cc-by-4.0": ("permissive", False, False, False),
    "cc-by-sa-3.0": ("cc", True, False, False),
    "cc-by-sa-4.0": ("cc", True, False, False),
    "odbl": ("cc", True, False, False),
    "cc-by-nc-4.0": ("cc", False, True, False),
    "cc-by-nc-3.0": ("cc", False, True, False),
    "cc-by-nc-sa-4.0": ("cc", True, True, False),
    "cc-by-nc-sa-3.0": ("cc", True, True, False),
    "cc-by-nd-4.0": ("cc", False, False, True),
    "cc-by-nc-nd-4.0": ("cc", False, True, True),
    "gpl-3.0": ("copyleft", True, False, False),
    "lgpl-3.0": ("copyleft", True, False, False),
    "agpl-3.0": ("copyleft", True, False, False),
}
_ALIASES = {"apache 2.0": "apache-2.0", "apache-2": "apache-2.0", "apache2": "apache-2.0", "apache license 2.0":
            "apache-2.0", "mit license": "mit", "cc by 4.0": "cc-by-4.0", "cc-by": "cc-by-4.0",
            "cc by-sa 4.0": "cc-by-sa-4.0", "cc by-nc 4.0": "cc-by-nc-4.0", "cc by-nc-sa 4.0": "cc-by-nc-sa-4.0",
            "cc0": "cc0-1.0", "public domain": "public-domain", "pd": "public-domain"}


class LicenseRefused(JprefsError):
    """A push refused for its licence (unknown without the override, or conflicting)."""


def normalize(lic: str | None) -> str:
    """A Hub licence id (lower case, known aliases mapped), ``unknown`` for nothing or an unknown id.

    >>> normalize(" Apache 2.0 "), normalize("CC-BY-SA-4.0"), normalize(""), normalize("wtfpl")
    ('apache-2.0', 'cc-by-sa-4.0', 'unknown', 'unknown')
    """
    s = " ".join(str(lic or "").strip().lower().replace("_", "-").split())
    s = _ALIASES.get(s, s)
    return s if s in _TABLE else UNKNOWN


@dataclass
class Derived:
    """The outcome of :func:`derive`: what the card's metadata says, and why."""

    license: str                                   # the Hub `license` value (one id, or "other", or "unknown")
    license_name: str = ""                          # with license: other, the SPDX expression
    licenses: list[str] = field(default_factory=list)   # every distinct known licence of the components
    components: dict[str, str] = field(default_factory=dict)   # component -> its (normalised) licence
    unknown: list[str] = field(default_factory=list)    # components whose licence is unknown
    conflicts: list[str] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)   # component -> the licence as recorded
    # data the card names that is no component (a model only evaluated on it) -> why it does not count
    named_only: dict[str, str] = field(default_factory=dict)

    def metadata(self, kind: str) -> dict:
        """The card's YAML licence keys: ``license`` (and ``license_name``), a list for a mixed dataset."""
        if kind != "model" and len(self.licenses) > 1 and not self.unknown and self.license == "other":
            return {"license": list(self.licenses)}
        meta: dict = {"license": self.license}
        if self.license_name:       # the Hub wants an id here ([a-z0-9-.]); the card's body spells it out
            import re

            meta["license_name"] = re.sub(r"[^a-z0-9.\-]+", "-", self.license_name.lower()).strip("-")
        return meta


def derive(components: dict[str, str | None], *, kind: str = "dataset") -> Derived:
    """The licence of something made of ``components`` (name -> recorded licence); see the module doc.
    ``kind``: ``dataset`` (a collection: rows keep their licence), ``translation`` (a collection of
    translated rows: each a derivative of its source row) or ``model`` (one work derived from all)."""
    raw = {k: str(v or "") for k, v in components.items()}
    comps = {k: normalize(v) for k, v in raw.items()}
    unknown = sorted(k for k, v in comps.items() if v == UNKNOWN)
    known = {k: v for k, v in comps.items() if v != UNKNOWN}
    lics = sorted(set(known.values()))
    conflicts: list[str] = []
    sa = sorted({v for v in lics if _TABLE[v][1]})
    nc = sorted({v for v in lics if _TABLE[v][2]})
    if kind in ("model", "translation"):          # a derived work: no-derivatives material cannot be in it
        for k, v in sorted(known.items()):
            if _TABLE[v][3]:
                conflicts.append(f"{v} (no derivatives) forbids the derived work ({k})")
    if kind == "model":                            # one work made of every component: their terms combine
        if len(sa) > 1:
            conflicts.append(f"two share-alike licences cannot both govern one work: {', '.join(sa)}")
        for s_ in sa:
            if not _TABLE[s_][2]:
                for n in nc:
                    if n != s_:
                        who = ", ".join(sorted(k for k, v in known.items() if v == n))
                        conflicts.append(f"{s_} (share-alike) cannot take the non-commercial restriction of {n} "
                                         f"({who})")
    out = Derived(license=UNKNOWN, licenses=lics, components=comps, unknown=unknown, conflicts=conflicts, raw=raw)
    if conflicts:
        out.license = "other"
        out.license_name = "conflicting: " + "; ".join(conflicts)
        return out
    if unknown and not lics:
        return out
    if len(lics) == 1:
        out.license = lics[0]
    elif kind != "model":                          # a collection: each row keeps its own licence
        out.license = "other"
        out.license_name = " AND ".join(lics)
    elif sa:
        out.license = sa[0]                        # the share-alike licence governs the whole
    elif len(nc) == 1:
        out.license = nc[0]                        # the non-commercial licence governs the whole
    else:
        out.license = "other"
        out.license_name = " AND ".join(lics)
    if unknown:                                    # known parts plus unknown ones: the whole is unknown
        out.license_name = (out.license if out.license != "other" else out.license_name) + " AND unknown"
        out.license = UNKNOWN
    return out


def check(d: Derived, *, allow_unknown: bool, what: str) -> None:
    """Raise :class:`LicenseRefused` for conflicts, and for unknown components unless ``allow_unknown``."""
    if d.conflicts:
        raise LicenseRefused(
            f"refusing to push {what}: its licences conflict: " + "; ".join(d.conflicts)
            + "\n  fix: leave the conflicting data out (jprefs data convert/merge with the sources you may combine),"
              " or publish the parts separately")
    if d.unknown and not allow_unknown:
        names = ", ".join(f"{k} ({d.raw.get(k) or 'none recorded'})" for k in d.unknown)
        raise LicenseRefused(
            f"refusing to push {what}: the licence of {names} is unknown, so nobody can tell whether it may be "
            f"redistributed\n  fix: check the source's terms and record them (`jprefs data convert ... --license "
            f"SPDX-ID`, train-rm `data_license=`), or pass --allow-unknown-license (the card then says so first)")


def unknown_banner(d: Derived) -> str:
    """The card's first lines when unknown licences were published with the override ('' otherwise)."""
    if not d.unknown:
        return ""
    names = ", ".join(d.unknown)
    return (f"> **WARNING: the licence of part of this repository is UNKNOWN** ({names}). It was published with "
            f"`--allow-unknown-license`; you may not be allowed to use or redistribute it. Check the sources' "
            f"terms before use.\n")


def table(d: Derived) -> str:
    """The markdown table of every component and its licence."""
    rows = "\n".join(f"| {k} | {d.raw.get(k) or '(none recorded)'} | {v} |" for k, v in d.components.items())
    out = "| component | licence as recorded | Hub licence id |\n|---|---|---|\n" + rows
    if d.named_only:
        out += ("\n\nNot licence components (the weights were not fit or chosen on them): "
                + "; ".join(f"{k}, {why}" for k, why in d.named_only.items()) + ".")
    return out
