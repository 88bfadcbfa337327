"""``jprefs label export``: labels out of the database, in the jprefs data model.

Per mode (every item of the database ends up in ``OUT`` or in ``OUT.rejects.jsonl`` with its
reason, and ``OUT.summary.json`` has the counts, which add up):

- ``rank``: one canonical rank list per item (responses best first), ready for ``jprefs
  train-rm``. Several annotators' orders are combined by Borda count; ``meta.label`` keeps each
  annotator's order, the Kendall tau between them and the item's disagreement. Responses with
  equal points are a tie that the labels do not break (the mean position is no tie-break: over
  full orders it follows from the points), and a rank list cannot hold a tie (it would claim a
  preference between them), so such an item is written as the preference pairs between its
  tiers instead (``meta.label.tiers``), with no pair inside a tier; an item whose responses all tie
  goes to the rejects (``tied``). ``OUT.summary.json`` counts the pairs written (``pairs``), the
  pairs left out as ties (``tied_pairs_dropped``) and the items with a tie (``items_with_ties``).
  ``--per-annotator`` writes one rank list per annotator instead (one person's order has no tie).
  Items marked "all bad" by a majority go to the rejects (``all_bad``).
- ``ab``: one row per annotator and item, ``item_id, prompt, left, right, label, comment, rater``,
  which ``jprefs eval import-human --labels OUT --key key.jsonl`` reads (``can't tell`` is an
  empty label: import-human counts it as unlabelled).
- ``review``: the accepted and the corrected pairs (with the corrected text; the machine
  translation is kept in ``meta.review.original``) as canonical pairs; rejected pairs go to the
  rejects with the reviewers' reasons. With several reviewers the majority verdict wins (correct
  counts as accept), a tie is ``no_majority``.
- ``reward``: one row per scored item: ``prompt, response, score`` (the mean of the annotators'
  scores, 1-5 or thumbs up = 1 / down = 0) and each annotator's score.

Every record keeps the licence of its item and names the annotators in ``meta.label``.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from jprefs.data.io import atomic_write_json, rejects_path_for, write_jsonl
from jprefs.data.schema import PreferencePair, RankList, SchemaError
from jprefs.errors import DataError
from jprefs.label.agreement import kendall_tau
from jprefs.runlock import holds_output

EPILOG = """examples:
  jprefs label export --db labels.sqlite -o ranked.jsonl
  jprefs label export --db labels.sqlite --per-annotator -o ranked-by-annotator.jsonl
  jprefs label export --db ab.sqlite -o ab-labels.jsonl     # then: jprefs eval import-human --labels ab-labels.jsonl --key key.jsonl"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="the labelling database (`jprefs label serve --db`)")
    p.add_argument("-o", "--output", required=True, help="output JSONL")
    p.add_argument("--per-annotator", action="store_true",
                   help="rank: one rank list per annotator instead of one combined list per item")
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def borda(orders: list[list[int]]) -> list[list[int]]:
    """Several annotators' orders (best first, each of all k responses) combined by Borda count,
    as tiers best first: the responses with equal points share a tier (in index order). A tier of
    two or more is a tie that the labels leave open; nothing breaks it (the mean position follows
    from the points when every order lists all k responses).

    >>> borda([[0, 1, 2], [1, 0, 2], [0, 2, 1]])
    [[0], [1], [2]]
    >>> borda([[0, 1, 2], [1, 0, 2]])
    [[0, 1], [2]]
    """
    k = len(orders[0])
    points = Counter({i: 0 for i in range(k)})
    for o in orders:
        for rank, idx in enumerate(o):
            points[idx] += k - 1 - rank
    tiers: dict[int, list[int]] = defaultdict(list)
    for i in range(k):
        tiers[points[i]].append(i)
    return [tiers[p] for p in sorted(tiers, reverse=True)]


def tier_pairs(tiers: list[list[int]]) -> list[tuple[int, int]]:
    """``(better, worse)`` for every two responses in different tiers (none inside a tier), by
    the better's tier, then the worse's.

    >>> tier_pairs([[0, 1], [2]])
    [(0, 2), (1, 2)]
    """
    return [(i, j) for a, hi in enumerate(tiers) for lo in tiers[a + 1:] for i in hi for j in lo]


def _label_meta(labels: list[dict]) -> dict:
    return {"annotators": [r["annotator"] for r in labels], "n_annotators": len(labels),
            "labelled_at": [r["created"] for r in labels], "tool": "jprefs label"}


def _unlabelled(rejects: list, item: dict, reason: str, error: str, **extra) -> None:
    rejects.append({"item_id": item["item_id"], "source": item.get("source", ""), "reason": reason, "error": error,
                    **extra})


def _labelled(items, by_item, rejects, why: str):
    """``(item, its labels)`` for each labelled item; an unlabelled one goes to the rejects."""
    for it in items:
        labels = by_item.get(it["item_id"], [])
        if labels:
            yield it, labels
        else:
            _unlabelled(rejects, it, "unlabelled", why)


def export_rank(items, by_item, rejects, per_annotator: bool, exported: set,
                tally: Counter | None = None) -> list[dict]:
    """Rank lists (or, for an item whose combined order has a tie, the pairs between its tiers);
    ``tally`` gets ``tied_pairs_dropped`` and ``items_with_ties``."""
    tally = Counter() if tally is None else tally
    out = []
    for it, labels in _labelled(items, by_item, rejects, "no annotator ranked this item"):
        bad = [r for r in labels if r["value"].get("all_bad")]
        if len(bad) * 2 > len(labels):
            _unlabelled(rejects, it, "all_bad", f"{len(bad)} of {len(labels)} annotators marked every response bad",
                        annotators=[r["annotator"] for r in bad])
            continue
        good = [r for r in labels if not r["value"].get("all_bad")]
        orders = {r["annotator"]: r["value"]["order"] for r in good}
        taus = [kendall_tau(orders[a], orders[b]) for i, a in enumerate(orders) for b in list(orders)[i + 1:]]
        meta = dict(it.get("meta") or {})
        base = {"orders": orders, "aggregation": "borda", "all_bad_votes": len(bad), **_label_meta(good),
                # what the orders' indices name: the item's distinct non-empty responses, not the file's
                "indexed_responses": list(it["responses"])}
        if taus:
            base["kendall_tau_mean"] = round(sum(taus) / len(taus), 4)
            base["disagreement"] = round((1 - sum(taus) / len(taus)) / 2, 4)
        groups = [(a, [o]) for a, o in orders.items()] if per_annotator else [(None, list(orders.values()))]
        rows = []
        for who, os_ in groups:
            tiers = borda(os_)
            rid = f"{it['item_id']}:{who}" if who else it["item_id"]
            lab = {**base, **({"annotator": who} if who else {})}
            common = dict(source="jprefs-label", source_id=it["item_id"], license=it.get("license") or "unknown")
            if all(len(t) == 1 for t in tiers):
                order = [t[0] for t in tiers]
                rows.append(RankList(id=rid, prompt=it["prompt"], responses=[it["responses"][i] for i in order],
                                     meta={**meta, "label": {**lab, "order": order}}, **common).to_dict())
                continue
            dropped = sum(len(t) * (len(t) - 1) // 2 for t in tiers)
            tally["tied_pairs_dropped"] += dropped
            tally["items_with_ties"] += 1
            lab.update(tiers=tiers, tied_pairs_dropped=dropped)
            tier_of = {i: n for n, t in enumerate(tiers) for i in t}
            # no group / chosen_rank meta: those claim a strict order of the whole list
            rows.extend(PreferencePair.create(
                it["prompt"], it["responses"][i], it["responses"][j], id=f"{rid}-{i}-{j}",
                meta={**meta, "label": {**lab, "chosen_index": i, "rejected_index": j,
                                        "chosen_tier": tier_of[i], "rejected_tier": tier_of[j]}},
                **common).to_dict() for i, j in tier_pairs(tiers))
        if not rows:            # every response tied: the labels state no preference at all
            _unlabelled(rejects, it, "tied", f"the {len(orders)} annotators' orders cancel out: every response has "
                        f"the same Borda points", orders=orders)
            continue
        out.extend(rows)
        exported.add(it["item_id"])
    return out


def export_ab(items, by_item, rejects, exported: set) -> list[dict]:
    out = []
    for it, labels in _labelled(items, by_item, rejects, "no annotator judged this pair"):
        prompt = it.get("prompt_text")
        if prompt is None:
            prompt = "\n\n".join(m["content"] for m in it["prompt"])
        for r in labels:
            lab = r["value"]["label"]
            out.append({"item_id": it["item_id"], "prompt": prompt, "left": it["left"], "right": it["right"],
                        "label": "" if lab == "cant_tell" else lab,
                        "comment": r["value"].get("comment") or ("can't tell" if lab == "cant_tell" else ""),
                        "rater": r["annotator"], "labelled_at": r["created"]})
        exported.add(it["item_id"])
    return out


def export_review(items, by_item, rejects, exported: set) -> list[dict]:
    out = []
    for it, labels in _labelled(items, by_item, rejects, "no reviewer looked at this pair"):
        votes = Counter("accept" if r["value"]["verdict"] in ("accept", "correct") else "reject" for r in labels)
        verdicts = {r["annotator"]: r["value"]["verdict"] for r in labels}
        reasons = {r["annotator"]: r["value"].get("reason", "") for r in labels if r["value"]["verdict"] == "reject"}
        if votes["accept"] == votes["reject"]:
            _unlabelled(rejects, it, "no_majority", f"{votes['accept']} accept, {votes['reject']} reject",
                        verdicts=verdicts, reasons=reasons)
            continue
        if votes["reject"] > votes["accept"]:
            _unlabelled(rejects, it, "rejected_in_review", "; ".join(f"{a}: {t}" for a, t in reasons.items()),
                        verdicts=verdicts, reasons=reasons)
            continue
        pair = dict(it["pair"])
        corrections = [r for r in labels if r["value"]["verdict"] == "correct"]
        review = {"verdicts": verdicts, **_label_meta(labels)}
        if corrections:
            fix = corrections[-1]["value"]["corrected"]          # the latest correction
            original = {}
            prompt = [dict(m) for m in pair["prompt"]]
            for k, v in fix.items():
                if k.startswith("prompt."):
                    i = int(k.split(".", 1)[1])
                    original[k], prompt[i]["content"] = prompt[i]["content"], v
                else:
                    original[k], pair[k] = pair[k], v
            pair["prompt"] = prompt
            review.update(corrected_by=corrections[-1]["annotator"], original=original)
        meta = dict(pair.get("meta") or {})
        meta["review"] = {**review, "item_id": it["item_id"]}
        pair["meta"] = meta
        try:
            p = PreferencePair.from_dict(pair)      # a correction must still make a valid pair
        except SchemaError as e:
            _unlabelled(rejects, it, "invalid_correction", f"the corrected pair is not a valid pair: {e}",
                        verdicts=verdicts)
            continue
        out.append(p.to_dict())
        exported.add(it["item_id"])
    return out


def export_reward(items, by_item, rejects, exported: set) -> list[dict]:
    out = []
    for it, labels in _labelled(items, by_item, rejects, "nobody scored this response"):
        exported.add(it["item_id"])
        vals = {r["annotator"]: score_value(r["value"]) for r in labels}
        out.append({"id": it["item_id"], "prompt": it["prompt"], "response": it["response"],
                    "score": sum(vals.values()) / len(vals), "scores": vals, "license": it.get("license", "unknown"),
                    "meta": {"label": _label_meta(labels), **({"run": it["run"]} if "run" in it else {})}})
    return out


def score_value(value: dict) -> float:
    """A human reward label as a number: the 1-5 score, or thumbs up = 1 and down = 0."""
    if "thumb" in value:
        return 1.0 if value["thumb"] == "up" else 0.0
    return float(value["score"])


def export(db: str | Path, output: str | Path, *, per_annotator: bool = False) -> dict[str, Any]:
    from jprefs.label.store import Store

    st = Store(db, create=False)
    mode = st.mode
    if mode is None:
        raise DataError("the database has no labelling job", path=str(db), fix="start it with `jprefs label serve`")
    items = st.items()
    by_item: dict[str, list[dict]] = defaultdict(list)
    for r in st.current_labels():
        by_item[r["item_id"]].append(r)
    rejects: list[dict] = []
    done: set[str] = set()          # the items with a row in the output (by item id: source_id is not unique)
    tally: Counter = Counter()
    fn = {"rank": lambda: export_rank(items, by_item, rejects, per_annotator, done, tally),
          "ab": lambda: export_ab(items, by_item, rejects, done),
          "review": lambda: export_review(items, by_item, rejects, done),
          "reward": lambda: export_reward(items, by_item, rejects, done)}[mode]
    rows = fn()
    out = Path(output)
    rpath = rejects_path_for(out)
    exported_items = len(done)
    rejected = {r["item_id"] for r in rejects}
    if exported_items + len(rejects) != len(items) or done & rejected:   # the counts must add up, before writing
        raise AssertionError(f"export lost items: {exported_items} + {len(rejects)} != {len(items)}")
    if not rows:
        # an empty export is no data set: the next step (train-rm, import-human) would read 0 rows
        why = ", ".join(f"{k} {v}" for k, v in Counter(r["reason"] for r in rejects).items()) or "no items"
        raise DataError(f"nothing to export: none of the {len(items)} items has a usable label ({why}); "
                        f"{out} was not written", path=str(db),
                        fix="label some items first (`jprefs label serve --db ...`), then export again")
    write_jsonl(out, rows)
    write_jsonl(rpath, rejects)
    summary = {"db": str(db), "mode": mode, "items": len(items), "exported_items": exported_items,
               "rows": len(rows), "rejected_items": len(rejects),
               "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)),
               "labels": sum(len(v) for v in by_item.values()), "annotators": st.annotators(),
               "output": str(out), "rejects": str(rpath)}
    if mode in ("rank", "review"):
        # the preference pairs the output holds (a rank list of K: K(K-1)/2)
        summary["pairs"] = sum(len(r["responses"]) * (len(r["responses"]) - 1) // 2 if "responses" in r else 1
                               for r in rows)
    if mode == "rank":
        summary["tied_pairs_dropped"] = tally["tied_pairs_dropped"]
        summary["items_with_ties"] = tally["items_with_ties"]
    atomic_write_json(out.with_name(out.name + ".summary.json"), summary)
    return summary


@holds_output("jprefs label export", folder=False)
def run(args: argparse.Namespace) -> int:
    s = export(args.db, args.output, per_annotator=args.per_annotator)
    print(f"label export: {s['items']} items -> {s['rows']} rows in {s['output']} ({s['exported_items']} items), "
          f"{s['rejected_items']} in {s['rejects']}" +
          (f" ({', '.join(f'{k} {v}' for k, v in s['rejects_by_reason'].items())})" if s["rejects_by_reason"] else ""))
    if "pairs" in s:
        print(f"label export: {s['pairs']} preference pairs" + (
            f"; {s['tied_pairs_dropped']} pairs of tied responses left out ({s['items_with_ties']} items with a tie "
            f"in the combined ranking)" if s.get("tied_pairs_dropped") else ""))
    return 0
