"""Inter-annotator agreement of ``jprefs label`` labels: Cohen's kappa per pair of annotators,
Fleiss' kappa and Krippendorff's alpha over all of them, and the items they disagree on most.

The store hands over one :class:`Label` per (item, annotator) (the latest; undo is the store's
business); :func:`agreement` turns them into a JSON-serialisable report per mode and
:func:`agreement_text` into the table ``jprefs label stats`` prints. What is compared, per mode:

- **ab**: ``{"label": "left" | "right" | "tie" | "cant_tell"}``, nominal over left / right / tie.
  "can't tell" is not a category: it counts as a missing label (counted in ``missing``).
- **rank**: ``{"order": [indices, best first], "all_bad": bool}``. Each pair of responses
  (i < j) of an item is one unit whose value is ``"i>j"`` (i ranked above j) or ``"j>i"``; the
  kappas and alpha are over these units. Per item: the mean Kendall tau between the annotators who
  ranked it. An "all bad" label carries no order: it counts as missing for the order (counted in
  ``missing``), and the ``all_bad`` flag gets its own agreement block (nominal, every rank label).
- **review**: ``{"verdict": "accept" | "reject" | "correct", ...}``, nominal over the verdict.
- **reward**: ``{"score": 1..5}`` (ordinal) or ``{"thumb": "up" | "down"}`` (nominal); with both
  kinds in one store the scores are the main block and the thumbs a nested ``thumb`` block.

The coefficients:

- Cohen's kappa of a pair: on the items both labelled, chance agreement from each annotator's own
  label shares (not pooled: that would be Scott's pi). Always nominal; for scores the pair entry
  also has Krippendorff's ordinal alpha of the two.
- Fleiss' kappa needs the same number of labels on every item: it is computed on the items with
  the most common number (2 or more) of usable labels, and the report says how many and which.
- Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability") uses every
  item with at least 2 usable labels, whoever gave them (missing labels allowed), at the mode's level.
- Per-item disagreement in [0, 1]: 1 - the share of annotator pairs that gave the same label
  (0 = all agree); for rank (1 - mean Kendall tau) / 2 (0 = identical orders, 1 = reversed).

A figure that cannot be computed is ``None`` with a ``reason`` beside it (one annotator only, no
item labelled by two people, every label the same: chance agreement is 1). Bad label values are
not fatal: they are left out, counted (``n_invalid``) and listed with the reason (``invalid``).

Example::

    from jprefs.label.agreement import Label, agreement, agreement_text
    labels = [Label("item-001", "sato", "ab", {"label": "left"}), ...]
    print(agreement_text(agreement(labels)))
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Hashable, Mapping, Sequence

from jprefs.errors import DataError

MODES = ("ab", "rank", "review", "reward")
LEVELS = ("nominal", "ordinal", "interval")
AB_LABELS = ("left", "right", "tie")
VERDICTS = ("accept", "reject", "correct")
THUMBS = ("up", "down")
SCORES = range(1, 6)
TOP_ITEMS = 10        # items shown by agreement_text
MAX_INVALID = 50      # invalid labels listed in the report (all are counted)


@dataclass(frozen=True)
class Label:
    """One annotator's (latest) label of one item in one mode; ``value`` as the mode defines it
    (see the module docstring).

    >>> Label("item-001", "sato", "ab", {"label": "left"}).value["label"]
    'left'
    """

    item_id: str
    annotator: str
    mode: str
    value: dict


# ================================================================ coefficients

def cohen_kappa(x: list[str], y: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items; ``None`` when chance agreement is 1
    (both used a single, identical category: kappa is undefined).

    >>> cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    0.5
    """
    n = len(x)
    if n == 0 or n != len(y):
        return None
    po = sum(i == j for i, j in zip(x, y)) / n
    cats = set(x) | set(y)
    pe = sum((x.count(c) / n) * (y.count(c) / n) for c in cats)
    return None if pe >= 1 else (po - pe) / (1 - pe)


def fleiss_kappa(votes: list[list[str]]) -> tuple[float | None, float]:
    """Fleiss' kappa and the mean pairwise agreement P-bar of items that each carry the same number
    (at least 2) of ratings.

    >>> k, p = fleiss_kappa([["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]])
    >>> round(k, 4), p
    (0.4667, 0.75)
    """
    if not votes:
        return None, float("nan")
    m = len(votes[0])
    if m < 2 or any(len(v) != m for v in votes):
        raise ValueError("every item needs the same number (>= 2) of ratings")
    cats = sorted({c for v in votes for c in v})
    n_items = len(votes)
    p_i = [(sum(v.count(c) ** 2 for c in cats) - m) / (m * (m - 1)) for v in votes]
    p_bar = sum(p_i) / n_items
    p_j = [sum(v.count(c) for v in votes) / (n_items * m) for c in cats]
    pe = sum(q * q for q in p_j)
    return (None if pe >= 1 else (p_bar - pe) / (1 - pe)), p_bar


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def krippendorff_alpha(units: Mapping[Hashable, Sequence[Any]], level: str = "nominal") -> float | None:
    """Krippendorff's alpha of ``{unit: [the values its coders gave]}``: 1 = perfect agreement,
    0 = agreement at chance level, below 0 = systematic disagreement.

    Missing data are allowed: a unit lists only the values it got (``None`` or NaN entries are
    skipped too); units with fewer than 2 values are not pairable and are dropped. ``level`` is
    ``nominal`` (any hashable values), ``ordinal`` (sortable values; distances from the values'
    ranks and frequencies) or ``interval`` (numbers; squared differences). ``None`` when alpha is
    undefined: no pairable unit, or no variation (every pairable value the same). Computed as in
    Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": the coincidence matrix
    ``o[c][k] = sum over units of (pairs of values c, k in the unit) / (m_u - 1)``, its marginals
    ``n_c`` and ``alpha = 1 - (n - 1) * sum(o[c][k] d2[c][k]) / sum(n_c n_k d2[c][k])``.

    >>> krippendorff_alpha({"u1": ["a", "a"], "u2": ["a", "b"], "u3": ["b", "b"], "u4": ["b", "b"]})
    0.5333333333333333
    >>> krippendorff_alpha({"u1": [1, 2], "u2": [1], "u3": [3, 3]}, "interval") == krippendorff_alpha(
    ...     {"u1": [1, 2], "u3": [3, 3]}, "interval")   # a unit with one value is not pairable
    True
    >>> krippendorff_alpha({"u1": ["a", "a"], "u2": ["a", "a"]}) is None   # no variation: undefined
    True
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    pairable = []
    for vs in units.values():
        vs = [v for v in vs if not _is_missing(v)]
        if len(vs) >= 2:
            pairable.append(vs)
    if not pairable:
        return None
    values = [v for vs in pairable for v in vs]
    if level == "interval" and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        bad = next(v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)))
        raise ValueError(f"interval alpha needs numbers, got {bad!r}")
    try:
        domain = list(dict.fromkeys(values)) if level == "nominal" else sorted(set(values))
    except TypeError as e:   # unhashable (a list) or, for ordinal, values that do not sort
        raise ValueError(f"{level} alpha needs {'hashable' if level == 'nominal' else 'sortable'} values: {e}") \
            from None
    index = {v: i for i, v in enumerate(domain)}
    nv = len(domain)
    # coincidence matrix (V, V): each unit of m values contributes m (m - 1) ordered pairs, weighted 1 / (m - 1)
    o = [[0.0] * nv for _ in range(nv)]
    for vs in pairable:
        m = len(vs)
        cnt = Counter(index[v] for v in vs)
        for c, nc in cnt.items():
            for k, nk in cnt.items():
                o[c][k] += nc * (nk - (c == k)) / (m - 1)
    n_c = [sum(row) for row in o]
    n = sum(n_c)

    def d2(c: int, k: int) -> float:   # squared difference of values c and k at this level
        if c == k:
            return 0.0
        if level == "nominal":
            return 1.0
        if level == "interval":
            return float(domain[c] - domain[k]) ** 2
        lo, hi = min(c, k), max(c, k)  # ordinal: the ranks between the two values, the ends counted half
        return (sum(n_c[lo:hi + 1]) - (n_c[c] + n_c[k]) / 2) ** 2

    dist = [[d2(c, k) for k in range(nv)] for c in range(nv)]
    observed = sum(o[c][k] * dist[c][k] for c in range(nv) for k in range(nv))
    expected = sum(n_c[c] * n_c[k] * dist[c][k] for c in range(nv) for k in range(nv))
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def kendall_tau(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Kendall's tau between two rankings (lists of response indices, best first), over the
    responses both ranked; ``None`` when fewer than 2 are in common. 1 = the same order, -1 = reversed.

    >>> round(kendall_tau([0, 1, 2], [0, 2, 1]), 4), kendall_tau([2, 1, 0], [0, 1, 2])
    (0.3333, -1.0)
    """
    pa = {x: i for i, x in enumerate(a)}
    pb = {x: i for i, x in enumerate(b)}
    common = [x for x in a if x in pb]
    if len(common) < 2:
        return None
    s = sum(1 if (pa[x] - pa[y]) * (pb[x] - pb[y]) > 0 else -1 for x, y in combinations(common, 2))
    return s / (len(common) * (len(common) - 1) / 2)


# ================================================================ parsing the labels

_MISSING = object()   # a label that says "no comparable answer" (can't tell, all bad)


class _Invalid(Exception):
    pass


def _parse(mode: str, v: Any) -> tuple[str, Any]:
    """``(variable, value)`` of one label's value; ``value`` is ``_MISSING`` for can't tell / all bad."""
    if not isinstance(v, dict):
        raise _Invalid(f"the value must be an object, got {type(v).__name__}")
    if mode == "ab":
        lab = v.get("label")
        if lab == "cant_tell":
            return "label", _MISSING
        if lab not in AB_LABELS:
            raise _Invalid(f"label must be left, right, tie or cant_tell, got {lab!r}")
        return "label", lab
    if mode == "review":
        ver = v.get("verdict")
        if ver not in VERDICTS:
            raise _Invalid(f"verdict must be accept, reject or correct, got {ver!r}")
        return "verdict", ver
    if mode == "reward":
        if "score" in v and "thumb" in v:
            raise _Invalid("a reward is a score or a thumb, not both")
        if "score" in v:
            s = v["score"]
            if isinstance(s, bool) or not isinstance(s, int) or s not in SCORES:
                raise _Invalid(f"score must be an integer 1..5, got {s!r}")
            return "score", s
        t = v.get("thumb")
        if t not in THUMBS:
            raise _Invalid(f"a reward needs a score (1..5) or a thumb (up or down), got {v!r}")
        return "thumb", t
    # rank
    all_bad = v.get("all_bad", False)
    if not isinstance(all_bad, bool):
        raise _Invalid(f"all_bad must be true or false, got {all_bad!r}")
    if all_bad:
        return "order", _MISSING
    order = v.get("order")
    if not isinstance(order, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in order):
        raise _Invalid(f"order must be a list of response indices (0, 1, ...), got {order!r}")
    if len(set(order)) != len(order):
        raise _Invalid(f"order lists a response twice: {order!r}")
    if len(order) < 2:
        raise _Invalid(f"an order needs at least 2 responses, got {order!r}")
    return "order", tuple(order)


# ================================================================ the report

def _reason_none(units: Mapping[Any, Mapping[str, Any]], annotators: list[str]) -> str:
    if not annotators:
        return "no labels"
    if len(annotators) < 2:
        return "one annotator only"
    if not any(len(v) >= 2 for v in units.values()):
        return "no item has usable labels from 2 annotators"
    return "no variation: every usable label is the same, so chance agreement is 1"


def _coefficients(units: dict[Any, dict[str, Any]], level: str, annotators: list[str],
                  unit_name: str = "items", item_of: Mapping[Any, str] | None = None) -> dict[str, Any]:
    """Pairs, Fleiss and Krippendorff of ``{unit: {annotator: value}}`` (usable values only)."""
    pairs = []
    for a, b in combinations(annotators, 2):
        common = [u for u, lab in units.items() if a in lab and b in lab]
        x, y = [units[u][a] for u in common], [units[u][b] for u in common]
        k = cohen_kappa(x, y) if common else None
        p: dict[str, Any] = {"annotators": [a, b], "n": len(common),
                             "agreement": sum(i == j for i, j in zip(x, y)) / len(common) if common else None,
                             "cohen_kappa": k}
        if item_of is not None:
            p["n_items"] = len({item_of[u] for u in common})
        if level != "nominal":
            p["krippendorff_alpha"] = krippendorff_alpha({u: [units[u][a], units[u][b]] for u in common}, level)
        if k is None:
            p["reason"] = (f"no {unit_name} labelled by both" if not common else
                           "both gave one and the same label to every common item: chance agreement is 1")
        pairs.append(p)
    sizes = Counter(len(lab) for lab in units.values() if len(lab) >= 2)
    fleiss: dict[str, Any] = {"kappa": None, "n_items": 0, "raters": None, "of_items": sum(sizes.values()),
                              "mean_pairwise_agreement": None}
    if sizes:
        m = max(sizes, key=lambda s: (sizes[s], s))   # the most common count; a tie goes to more raters
        used = [list(lab.values()) for lab in units.values() if len(lab) == m]
        kappa, pbar = fleiss_kappa(used)
        fleiss.update(kappa=kappa, n_items=len(used), raters=m, mean_pairwise_agreement=pbar,
                      on=f"the {len(used)} {unit_name if len(used) != 1 else unit_name[:-1]} with {m} usable "
                         f"labels each (the most common number; {fleiss['of_items']} of all have 2 or more)")
    if fleiss["kappa"] is None:
        fleiss["reason"] = _reason_none(units, annotators)
    alpha = krippendorff_alpha({u: list(lab.values()) for u, lab in units.items()}, level)
    kr: dict[str, Any] = {"alpha": alpha, "level": level, "n_units": sum(len(lab) >= 2 for lab in units.values()),
                          "unit": unit_name}
    if alpha is None:
        kr["reason"] = _reason_none(units, annotators)
    return {"pairs": pairs, "fleiss": fleiss, "krippendorff": kr}


def _items_nominal(by_item: dict[str, dict[str, Any]], shown: dict[str, dict[str, Any]],
                   scores: bool = False) -> list[dict[str, Any]]:
    out = []
    for item, lab in by_item.items():
        if len(lab) < 2:
            continue
        vals = list(lab.values())
        agree = sum(x == y for x, y in combinations(vals, 2))
        row: dict[str, Any] = {"item_id": item, "n": len(vals),
                               "disagreement": 1 - agree / (len(vals) * (len(vals) - 1) / 2),
                               "labels": shown[item]}
        if scores:
            row["spread"] = max(vals) - min(vals)
        out.append(row)
    return sorted(out, key=lambda r: (-r["disagreement"], r["item_id"]))


def _items_rank(by_item: dict[str, dict[str, tuple]], shown: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item, lab in by_item.items():
        taus = [t for x, y in combinations(lab.values(), 2) if (t := kendall_tau(x, y)) is not None]
        if not taus:
            continue
        tau = sum(taus) / len(taus)
        out.append({"item_id": item, "n": len(lab), "disagreement": (1 - tau) / 2, "mean_kendall_tau": tau,
                    "labels": shown[item]})
    return sorted(out, key=lambda r: (-r["disagreement"], r["item_id"]))


def _rank_units(by_item: dict[str, dict[str, tuple]]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """One unit per (item, pair of responses i < j): ``"i>j"`` when i is ranked above j."""
    units: dict[str, dict[str, str]] = {}
    item_of: dict[str, str] = {}
    for item, lab in by_item.items():
        for ann, order in lab.items():
            pos = {x: p for p, x in enumerate(order)}
            for i, j in combinations(sorted(pos), 2):
                u = f"{item}#{i}-{j}"
                units.setdefault(u, {})[ann] = "i>j" if pos[i] < pos[j] else "j>i"
                item_of[u] = item
    return units, item_of


def _variable_block(by_item: dict[str, dict[str, Any]], shown: dict[str, dict[str, Any]], variable: str,
                    level: str, annotators: list[str]) -> dict[str, Any]:
    return {"variable": variable, "level": level, **_coefficients(by_item, level, annotators),
            "items": _items_nominal(by_item, shown, scores=variable == "score")}


def _mode_report(mode: str, labels: list[Label]) -> dict[str, Any]:
    annotators = sorted({lab.annotator for lab in labels})
    items_all = sorted({lab.item_id for lab in labels})
    usable: dict[str, dict[str, dict[str, Any]]] = {}    # variable -> item -> annotator -> value
    shown: dict[str, dict[str, Any]] = {}                # item -> annotator -> what to show for it
    all_bad: dict[str, dict[str, bool]] = {}
    missing = Counter()
    invalid = []
    for lab in sorted(labels, key=lambda x: (x.item_id, x.annotator)):
        try:
            var, val = _parse(mode, lab.value)
        except _Invalid as e:
            invalid.append({"item_id": lab.item_id, "annotator": lab.annotator, "reason": str(e)})
            continue
        if mode == "rank":
            all_bad.setdefault(lab.item_id, {})[lab.annotator] = val is _MISSING
        if val is _MISSING:
            missing["cant_tell" if mode == "ab" else "all_bad"] += 1
            shown.setdefault(lab.item_id, {})[lab.annotator] = "cant_tell" if mode == "ab" else "all_bad"
            usable.setdefault(var, {})
            continue
        shown.setdefault(lab.item_id, {})[lab.annotator] = list(val) if mode == "rank" else val
        usable.setdefault(var, {}).setdefault(lab.item_id, {})[lab.annotator] = val
    per_item = Counter(lab.item_id for lab in labels)
    rep: dict[str, Any] = {"mode": mode, "n_items": len(items_all), "n_labels": len(labels),
                           "annotators": annotators,
                           "missing": {k: missing.get(k, 0) for k in
                                       {"ab": ("cant_tell",), "rank": ("all_bad",)}.get(mode, ())},
                           "n_invalid": len(invalid), "invalid": invalid[:MAX_INVALID],
                           "items_one_annotator": sum(c == 1 for c in per_item.values())}
    if not labels:
        rep["note"] = "no labels yet"
    elif len(annotators) == 1:
        rep["note"] = f"one annotator only ({annotators[0]}): agreement needs 2 people on the same items (overlap 2+)"
    elif max(per_item.values()) < 2:
        rep["note"] = "no item has been labelled by 2 annotators yet (is the overlap 1?)"
    if mode == "rank":
        orders = usable.get("order", {})
        units, item_of = _rank_units(orders)
        rep.update(variable="order (pairwise preferences)", level="nominal", n_units=len(units),
                   **_coefficients(units, "nominal", annotators, "response pairs", item_of),
                   items=_items_rank(orders, shown))
        rep["all_bad"] = {"variable": "all_bad", "level": "nominal",
                          "n_labels": sum(v for lab in all_bad.values() for v in lab.values()),
                          **_coefficients(all_bad, "nominal", annotators),
                          "items": _items_nominal(all_bad, all_bad)}
        return rep
    main = {"ab": "label", "review": "verdict"}.get(mode) or ("score" if "score" in usable or "thumb" not in usable
                                                              else "thumb")
    level = "ordinal" if main == "score" else "nominal"
    rep.update(_variable_block(usable.get(main, {}), shown, main, level, annotators))
    if mode == "reward" and main == "score" and "thumb" in usable:
        rep["thumb"] = _variable_block(usable["thumb"], shown, "thumb", "nominal", annotators)
        rep["thumb"]["note"] = "this store holds both scores and thumbs: the thumbs are compared on their own"
    return rep


def agreement(labels: Sequence[Label], modes: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Agreement report ``{mode: block}`` for every mode in ``labels`` (and every mode in ``modes``,
    empty blocks included), JSON-serialisable (no NaN: a figure that cannot be computed is ``None``
    with a ``reason``). A block holds ``n_items``, ``n_labels``, ``annotators``, ``missing``,
    ``n_invalid`` / ``invalid``, ``items_one_annotator``, ``variable`` and ``level`` (what is
    compared), ``pairs`` (per annotator pair: ``annotators``, ``n``, raw ``agreement``,
    ``cohen_kappa``), ``fleiss`` (``kappa``, ``n_items``, ``raters``, ``on``), ``krippendorff``
    (``alpha``, ``level``, ``n_units``), ``items`` (per item with 2+ usable labels: ``item_id``,
    ``n``, ``disagreement``, ``labels`` by annotator; most disagreed first) and ``note`` when there
    is little to compare. Rank blocks add ``n_units`` and an ``all_bad`` block.

    >>> labels = [Label("i1", "sato", "ab", {"label": "left"}), Label("i1", "kato", "ab", {"label": "left"}),
    ...           Label("i2", "sato", "ab", {"label": "left"}), Label("i2", "kato", "ab", {"label": "right"})]
    >>> r = agreement(labels)["ab"]
    >>> r["pairs"][0]["agreement"], r["pairs"][0]["cohen_kappa"], r["items"][0]["item_id"]
    (0.5, 0.0, 'i2')
    """
    by_mode: dict[str, list[Label]] = {m: [] for m in (modes or ())}
    seen: set[tuple[str, str, str]] = set()
    for lab in labels:
        if lab.mode not in MODES:
            raise DataError(f"label of item {lab.item_id!r} by {lab.annotator!r} has mode {lab.mode!r}",
                            fix=f"the modes are {', '.join(MODES)}")
        k = (lab.mode, lab.item_id, lab.annotator)
        if k in seen:
            raise DataError(f"two {lab.mode} labels of item {lab.item_id!r} by {lab.annotator!r}",
                            fix="pass one label per item and annotator (the latest)")
        seen.add(k)
        by_mode.setdefault(lab.mode, []).append(lab)
    for m in by_mode:
        if m not in MODES:
            raise DataError(f"unknown mode {m!r}", fix=f"the modes are {', '.join(MODES)}")
    return {m: _mode_report(m, by_mode[m]) for m in MODES if m in by_mode}


# ================================================================ text

def _num(x: float | None, reason: str | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a" + (f" ({reason})" if reason else "")
    return f"{x:.3f}"


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    w = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return [indent + "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in [header] + rows]


def _n(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ">".join(map(str, v))
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _coef_lines(b: dict[str, Any], title: str, n_annotators: int) -> list[str]:
    lines = [f"  {title}: {b['variable']} ({b['level']})"]
    if b["pairs"]:
        rows = []
        for p in b["pairs"]:
            row = [" / ".join(p["annotators"]), str(p["n"]), _num(p["agreement"]),
                   _num(p["cohen_kappa"], p.get("reason"))]
            if "krippendorff_alpha" in p:
                row.insert(3, _num(p["krippendorff_alpha"]))
            rows.append(row)
        hdr = ["pair", "n", "raw", "Cohen's kappa"]
        if b["pairs"] and "krippendorff_alpha" in b["pairs"][0]:
            hdr.insert(3, f"alpha ({b['level']})")
        lines += _table(hdr, rows)
    else:
        lines.append("  pairs: none (" + ("no labels)" if not n_annotators else "one annotator only)"))
    f = b["fleiss"]
    if f["kappa"] is not None:
        lines.append(f"  Fleiss' kappa: {_num(f['kappa'])} on {f['on']}")
    else:
        lines.append(f"  Fleiss' kappa: {_num(None, f.get('reason'))}")
    k = b["krippendorff"]
    lines.append(f"  Krippendorff's alpha ({k['level']}): {_num(k['alpha'], k.get('reason'))}"
                 + (f" over {k['n_units']} {k['unit'] if k['n_units'] != 1 else k['unit'][:-1]}"
                    if k["alpha"] is not None else ""))
    return lines


def _items_lines(items: list[dict[str, Any]], rank: bool = False) -> list[str]:
    if not items:
        return ["  items: none labelled by 2 or more annotators"]
    top = items[:TOP_ITEMS]
    lines = [f"  most disagreed items (top {len(top)} of {len(items)}):"]
    hdr = ["item", "n", "disagreement"] + (["tau"] if rank else []) + ["labels"]
    rows = [[r["item_id"], str(r["n"]), _num(r["disagreement"])] + ([_num(r["mean_kendall_tau"])] if rank else [])
            + [" ".join(f"{a}={_show(v)}" for a, v in r["labels"].items())] for r in top]
    return lines + _table(hdr, rows)


def agreement_text(report: dict[str, dict[str, Any]]) -> str:
    """The report of :func:`agreement` as a plain-text table per mode: kappa per pair, Fleiss'
    kappa, Krippendorff's alpha and the 10 most disagreed items; a figure that cannot be computed
    shows as ``n/a (why)``.

    >>> print(agreement_text(agreement([Label("i1", "sato", "review", {"verdict": "accept"})])))
    == review: 1 item, 1 label, 1 annotator (sato)
      note: one annotator only (sato): agreement needs 2 people on the same items (overlap 2+)
      agreement on: verdict (nominal)
      pairs: none (one annotator only)
      Fleiss' kappa: n/a (one annotator only)
      Krippendorff's alpha (nominal): n/a (one annotator only)
      items: none labelled by 2 or more annotators
    <BLANKLINE>
    """
    if not report:
        return "no labels yet: nothing to compare\n"
    out: list[str] = []
    for mode, b in report.items():
        out.append(f"== {mode}: {_n(b['n_items'], 'item')}, {_n(b['n_labels'], 'label')}, "
                   f"{_n(len(b['annotators']), 'annotator')}"
                   + (f" ({', '.join(b['annotators'])})" if b["annotators"] else ""))
        miss = {k: v for k, v in b["missing"].items() if v}
        if miss:
            out.append("  missing (left out, not a category): " + ", ".join(f"{k} {v}" for k, v in miss.items()))
        if b["n_invalid"]:
            first = b["invalid"][0]
            out.append(f"  invalid labels left out: {b['n_invalid']} (first: item {first['item_id']} by "
                       f"{first['annotator']}: {first['reason']})")
        if b.get("note"):
            out.append(f"  note: {b['note']}")
        if b["mode"] == "rank":
            out.append(f"  units: {b['n_units']} response pairs (i < j) of the ranked items")
        na = len(b["annotators"])
        out += _coef_lines(b, "agreement on", na)
        out += _items_lines(b["items"], rank=b["mode"] == "rank")
        if "all_bad" in b:
            out += _coef_lines(b["all_bad"], "agreement on the 'all bad' flag", na)
        if "thumb" in b:
            out.append(f"  note: {b['thumb']['note']}")
            out += _coef_lines(b["thumb"], "agreement on", na)
            out += _items_lines(b["thumb"]["items"])
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
