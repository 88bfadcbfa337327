"""Human A/B evaluation: blinded pairs for people to label, and their labels back into figures.

``jprefs eval export-human`` pairs policy A's answer with policy B's for each prompt (sample k
with sample k), shows A on the left or on the right at random (seeded, exactly balanced),
shuffles the order and writes, into ``OUT``:

- ``items.csv`` / ``items.jsonl``: ``item_id, prompt, left, right, label, comment`` for the raters
  (the CSV is UTF-8 with a BOM so that Excel reads Japanese; newlines inside answers are quoted);
- ``key.jsonl``: per item, which policy is left and right, the prompt id and the sample; kept apart
  so raters cannot see it (nothing in ``items.*`` or ``README.md`` names a policy);
- ``export.json``: the settings and counts of the export (names the policies: keep it with the key);
- ``README.md``: instructions for raters, in Japanese and English.

``jprefs eval import-human`` reads one labelled file per rater (CSV or JSONL; a ``rater`` column
overrides the file name), joins it with the key, maps left/right back to A/B and reports win /
tie / loss of A against B with 95% cluster-bootstrap intervals by prompt, a sign test, the "at
least as good" share ("A at least as good as B on 84 of 100 prompts (30 wins, 54 ties)"), per
category, and with several raters the agreement (raw, Cohen's kappa per pair, Fleiss' kappa) and
the majority label per item. Every input row is accounted for: rows = used + unlabelled + invalid,
each invalid row reported with its file, line and reason. The key keeps hashes of each item's
prompt and of the two answers shown: a labelled row whose prompt or answers differ from its item's
is reported (``prompt_mismatch``, with what differs: ``prompt``, ``answers`` or ``answers swapped``),
and when that is more than half of the used rows the import stops (labels of another export, or of
the same prompts re-exported with A and B exchanged, would otherwise be counted for the wrong policy).

Example::

    jprefs eval export-human --samples out/eval-ppo/samples.jsonl --a ppo --b sft -o out/human
    jprefs eval import-human --labels sato.csv --labels suzuki.csv --key out/human/key.jsonl -o out/human-result
"""

from __future__ import annotations

import argparse
import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jprefs.errors import DataError
from jprefs.label.agreement import cohen_kappa, fleiss_kappa
from jprefs.runlock import holds_output

ITEM_COLUMNS = ("item_id", "prompt", "left", "right", "label", "comment")

# label synonyms, matched after NFKC normalisation (full-width letters become ASCII), case folding
# and stripping; anything else is an invalid row, reported with its line
LABEL_SYNONYMS: dict[str, str] = {
    **{s: "left" for s in ("left", "l", "左", "ひだり", "左側")},
    **{s: "right" for s in ("right", "r", "右", "みぎ", "右側")},
    **{s: "tie" for s in ("tie", "t", "draw", "even", "same", "equal", "=", "引き分け", "引分け", "引分",
                          "ひきわけ", "同じ", "同等", "互角", "同点")},
}
# A/B (and 1/2) could mean "the left/right answer" or "policy A/B": accepted only with
# --ab-means-left-right, when the raters were told to write A for the left answer
AB_SYNONYMS: dict[str, str] = {"a": "left", "1": "left", "b": "right", "2": "right"}

EXPORT_EPILOG = """examples:
  jprefs eval export-human --samples out/eval-ppo/samples.jsonl -o out/human
  jprefs eval export-human --samples out/eval-ppo/samples.jsonl --a ppo --b sft --per-prompt 2 --seed 1 -o out/human
  jprefs eval export-human --samples two-systems.jsonl --a mine --b theirs -o out/human

--samples is the samples.jsonl of `jprefs eval policy` (rows prompt_id, prompt, policy, sample, response),
or a JSONL of {prompt_id, prompt, response_a, response_b[, category]} for two systems made elsewhere
(--a / --b then only name them). Give raters items.csv (or items.jsonl) and README.md; keep key.jsonl
and export.json away from them."""

IMPORT_EPILOG = """examples:
  jprefs eval import-human --labels out/human/labels.csv --key out/human/key.jsonl -o out/human-result
  jprefs eval import-human --labels sato.csv --labels suzuki.jsonl --key out/human/key.jsonl -o out/human-result

labels: left, right, tie (also l, r, t, draw, 左, 右, 引き分け, 同じ, full-width letters, any case);
an empty label is 'unlabelled'; anything else is an invalid row, reported by file and line."""


def _norm_label(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip().casefold()


def parse_label(raw: Any, *, ab_means_left_right: bool = False) -> tuple[str | None, str | None]:
    """``(label, None)`` with label in left/right/tie, ``(None, None)`` for an empty cell, or
    ``(None, reason)`` for a label that is not understood.

    >>> parse_label(" 左 "), parse_label("ＴＩＥ"), parse_label(""), parse_label("A")[1][:9]
    (('left', None), ('tie', None), (None, None), 'ambiguous')
    """
    if raw is None:
        return None, None
    s = _norm_label(str(raw))
    if not s:
        return None, None
    if s in LABEL_SYNONYMS:
        return LABEL_SYNONYMS[s], None
    if s in AB_SYNONYMS:
        if ab_means_left_right:
            return AB_SYNONYMS[s], None
        return None, (f"ambiguous label {str(raw).strip()!r}: it could mean the left/right answer or policy A/B; "
                      f"write left, right or tie (or pass --ab-means-left-right if raters wrote A/1 for the "
                      f"left answer and B/2 for the right)")
    return None, f"unknown label {str(raw).strip()!r}: use left, right or tie (左, 右, 引き分け)"


def _norm_text(s: str) -> str:
    """Text as compared between the key and a labelled file: NFKC, whitespace collapsed, the CSV's
    formula guard (a leading ') removed, so a spreadsheet's re-save does not count as a change."""
    s = unicodedata.normalize("NFKC", s or "")
    s = s[1:] if s.startswith("'") else s          # the guard first: "'" + a tab-led cell is still the same text
    return " ".join(s.split())


def _text_sha(s: str) -> str:
    return hashlib.sha256(_norm_text(s).encode("utf-8")).hexdigest()[:16]


# ================================================================ export

@dataclass
class _Pair:
    prompt_id: str
    prompt: str
    category: str
    sample: int
    a: str   # A's answer
    b: str   # B's answer


def configure_export_human(p: argparse.ArgumentParser) -> None:
    p.epilog = EXPORT_EPILOG
    p.add_argument("--samples", required=True, metavar="FILE",
                   help="samples.jsonl of `jprefs eval policy`, or a JSONL of {prompt_id, prompt, response_a, "
                        "response_b}")
    p.add_argument("--a", metavar="NAME", help="policy A (default: the first policy in the file that is not B)")
    p.add_argument("--b", metavar="NAME", help="policy B (default: the baseline `jprefs eval policy` marked, else "
                                               "the other policy, when the file has two)")
    p.add_argument("--per-prompt", type=int, default=1, metavar="N",
                   help="items per prompt: samples 0..N-1 of A paired with the same samples of B "
                        "(default 1; 0 = every sample both have)")
    p.add_argument("--seed", type=int, default=0, help="seed of the left/right sides and the order (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in OUT (labels made on its items would no longer match)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")


def _str_field(data: dict, key: str, path: Path, line: int | None, *, required: bool = True) -> str:
    v = data.get(key)
    if v is None:
        if required:
            raise DataError(f"row has no {key!r} (keys: {sorted(data)})", path=str(path), line=line,
                            fix="each row needs prompt_id, prompt, policy, sample and response (the samples.jsonl "
                                "`jprefs eval policy` writes), or prompt_id, prompt, response_a and response_b")
        return ""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise DataError(f"{key!r} must be a string, got {type(v).__name__}", path=str(path), line=line)
    return str(v)


def read_pairs(path: str | Path, a: str | None = None, b: str | None = None
               ) -> tuple[list[_Pair], str, str, str, list[dict]]:
    """The comparable (A, B) answers of a samples file: ``(pairs, a, b, format, skipped)``.

    ``format`` is ``samples`` (rows per policy and sample) or ``pairs`` (``response_a`` /
    ``response_b`` per row); ``skipped`` lists the prompts that have no answer of one side."""
    from jprefs.data.io import check_input, iter_table

    p = check_input(path)
    rows: list[tuple[int | None, dict]] = []
    for row in iter_table(p):
        if row.error:
            raise DataError(row.error, path=str(p), line=row.locator if row.unit == "line" else None,
                            fix="fix or remove the row (one JSON object per line)")
        rows.append((row.locator if row.unit == "line" else None, row.data))
    if not rows:
        raise DataError("no rows in the samples file", path=str(p),
                        fix="give the samples.jsonl that `jprefs eval policy` wrote")
    if "response_a" in rows[0][1] or "response_b" in rows[0][1]:
        return _read_two_system_rows(p, rows, a or "A", b or "B")

    by_prompt: dict[str, dict[str, Any]] = {}   # prompt_id -> {prompt, category, answers: {policy: {k: text}}}
    policies: list[str] = []
    baselines: list[str] = []                   # rows `jprefs eval policy` marks "baseline": true
    for line, d in rows:
        pid = _str_field(d, "prompt_id", p, line)
        pol = _str_field(d, "policy", p, line)
        resp = d.get("response")
        if not isinstance(resp, str):
            raise DataError(f"'response' must be a string, got {type(resp).__name__}", path=str(p), line=line,
                            fix="each row needs the generated answer as 'response'")
        k = d.get("sample", 0)
        if isinstance(k, str) and k.strip().isdigit():   # a CSV's cells are strings
            k = int(k)
        if isinstance(k, bool) or not isinstance(k, int):
            raise DataError(f"'sample' must be an integer, got {k!r}", path=str(p), line=line)
        if pol not in policies:
            policies.append(pol)
        if d.get("baseline") is True and pol not in baselines:
            baselines.append(pol)
        ent = by_prompt.setdefault(pid, {"prompt": _str_field(d, "prompt", p, line),
                                         "category": _str_field(d, "category", p, line, required=False),
                                         "answers": {}})
        ans = ent["answers"].setdefault(pol, {})
        if k in ans:
            raise DataError(f"prompt {pid!r}, policy {pol!r}, sample {k} appears twice", path=str(p), line=line,
                            fix="each (prompt_id, policy, sample) once: was the file appended to twice?")
        ans[k] = resp
    if len(baselines) == 1 and b is None and a != baselines[0]:
        b = baselines[0]                        # A is the policy under test, B the baseline
    a, b = _choose_policies(policies, a, b, p)
    out: list[_Pair] = []
    skipped: list[dict] = []
    for pid, ent in by_prompt.items():
        sa, sb = ent["answers"].get(a, {}), ent["answers"].get(b, {})
        common = sorted(set(sa) & set(sb))
        if not common:
            missing = [n for n, s in ((a, sa), (b, sb)) if not s]
            reason = (f"no sample of {' or '.join(missing)}" if missing else
                      f"no sample index in common (A: {sorted(sa)}, B: {sorted(sb)})")
            skipped.append({"prompt_id": pid, "reason": reason})
            continue
        out += [_Pair(pid, ent["prompt"], ent["category"], k, sa[k], sb[k]) for k in common]
    return out, a, b, "samples", skipped


def _choose_policies(policies: list[str], a: str | None, b: str | None, path: Path) -> tuple[str, str]:
    have = ", ".join(policies)
    for flag, name in (("--a", a), ("--b", b)):
        if name is not None and name not in policies:
            raise DataError(f"{flag} {name!r}: no such policy in the samples file (it has: {have})", path=str(path),
                            fix=f"{flag} one of: {have}")
    if a is None or b is None:
        rest = [x for x in policies if x not in (a, b)]
        if len(policies) < 2:
            raise DataError(f"the samples file holds one policy only ({have}); A/B needs two", path=str(path),
                            fix="run `jprefs eval policy` with --baseline so both are in one file")
        if len(rest) != (a is None) + (b is None):
            raise DataError(f"the samples file holds {len(policies)} policies ({have}): say which two to compare",
                            path=str(path), fix="pass --a NAME --b NAME")
        if a is None:
            a = rest.pop(0)
        if b is None:
            b = rest.pop(0)
    if a == b:
        raise DataError(f"--a and --b are the same policy ({a!r})", path=str(path), fix="compare two policies")
    return a, b


def _read_two_system_rows(p: Path, rows: list[tuple[int | None, dict]], a: str, b: str):
    if a == b:
        raise DataError(f"--a and --b name both systems {a!r}", fix="give the two systems different names")
    out: list[_Pair] = []
    seen: dict[str, int] = {}
    for line, d in rows:
        pid = _str_field(d, "prompt_id", p, line, required=False) or _str_field(d, "id", p, line, required=False) \
            or f"{p.name}:{line if line is not None else len(out) + 1}"
        texts = []
        for key in ("response_a", "response_b"):
            v = d.get(key)
            if not isinstance(v, str):
                raise DataError(f"{key!r} must be a string, got {type(v).__name__}", path=str(p), line=line,
                                fix="each row needs prompt_id, prompt, response_a and response_b")
            texts.append(v)
        k = seen.get(pid, 0)   # a prompt given on several rows: samples 0, 1, ...
        seen[pid] = k + 1
        out.append(_Pair(pid, _str_field(d, "prompt", p, line), _str_field(d, "category", p, line, required=False),
                         k, texts[0], texts[1]))
    return out, a, b, "pairs", []


def _csv_cell(s: str) -> str:
    """Guard against spreadsheet formulas: a cell starting with = + - @ would be evaluated by
    Excel (a Markdown list "- item" shows as #NAME?); a leading ' makes it text (Excel hides it).
    A CR inside a cell shows in Excel as a stray character: line breaks in cells are LF."""
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t") else s


def csv_text(rows: list[dict], columns: tuple[str, ...] = ITEM_COLUMNS) -> str:
    """CSV for spreadsheets: a BOM, CRLF between records, fields with newlines or quotes quoted."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_cell(str(r.get(c, ""))) for c in columns])
    return "\ufeff" + buf.getvalue()


def make_items(pairs: list[_Pair], a: str, b: str, seed: int) -> tuple[list[dict], list[dict]]:
    """Blinded items and their key rows, in the shuffled order.

    Exactly half of the items (one more for an odd count, on a random side) show A on the left;
    which ones, and the order, follow ``seed``. Item ids are numbers in the shuffled order, so they
    tell nothing about the policy or the prompt."""
    import random

    rng = random.Random(seed)
    n = len(pairs)
    a_left = [True] * (n // 2) + [False] * (n // 2)
    if n % 2:
        a_left.append(rng.random() < 0.5)
    rng.shuffle(a_left)
    order = list(range(n))
    rng.shuffle(order)
    width = max(3, len(str(n)))
    items, key = [], []
    for pos, i in enumerate(order, start=1):
        pr, al = pairs[i], a_left[i]
        iid = f"item-{pos:0{width}d}"
        left, right = (pr.a, pr.b) if al else (pr.b, pr.a)
        items.append({"item_id": iid, "prompt": pr.prompt, "left": left, "right": right, "label": "", "comment": ""})
        key.append({"item_id": iid, "prompt_id": pr.prompt_id, "category": pr.category, "sample": pr.sample,
                    "left": a if al else b, "right": b if al else a, "a": a, "b": b,
                    "a_side": "left" if al else "right", "prompt_sha": _text_sha(pr.prompt),
                    # the answers shown, so labels of another export (other answers, or A and B swapped)
                    # cannot land on this key's policies
                    "left_sha": _text_sha(left), "right_sha": _text_sha(right)})
    return items, key


def _rater_readme(n: int, n_prompts: int) -> str:
    return f"""# 人手評価のお願い / Instructions for raters

## 日本語

このフォルダーには {n} 件の比較項目があります（プロンプト {n_prompts} 件）。各項目には、ある依頼文（`prompt`）と、それに対する二つの回答（`left` = 左の回答、`right` = 右の回答）があります。二つの回答は別々のシステムが書いたもので、どちらがどのシステムかは伏せてあり、左右も項目の順番もランダムです。

1. `items.csv` を表計算ソフト（Excel、Google スプレッドシート、LibreOffice など）で開きます（または `items.jsonl` をラベル付けツールで開きます）。
2. 各項目の依頼文と二つの回答を読み、よりよい方を `label` 列に書きます。
   - `left`（左の回答がよい）、`right`（右の回答がよい）、`tie`（同じくらい・優劣なし）
   - 「左」「右」「引き分け」と書いても構いません。
3. 判断の基準: 依頼に正しく、役に立つ形で答えているか。内容は正確か。日本語は自然か。危険・有害な依頼には断るのが正しい回答です。長い方がよいとは限りません。
4. 気づいたことがあれば `comment` 列に自由に書いてください（任意）。
5. `item_id` と他の列は変えないでください。行の並べ替えは構いません。空欄のままの項目は「未回答」として数えられます。
6. 保存するときは **CSV UTF-8（コンマ区切り）** 形式を選び、ファイル名をあなたの名前にします（例: `labels-sato.csv`）。ファイル名が評価者名として使われます。

回答が `=` `+` `-` `@` で始まる場合、表計算ソフトが数式として扱わないよう、CSV では先頭に `'` を付けてあります（`items.jsonl` は元のままです）。

## English

This folder holds {n} comparison items ({n_prompts} prompts). Each item has a request (`prompt`)
and two answers to it (`left` and `right`), written by two different systems. Which system wrote
which answer is hidden; the sides and the order of the items are random.

1. Open `items.csv` in a spreadsheet (Excel, Google Sheets, LibreOffice), or `items.jsonl` in a
   labelling tool.
2. Read the request and both answers, and write the better one in the `label` column:
   `left`, `right`, or `tie` (equally good or equally bad). 左 / 右 / 引き分け also work.
3. Judge whether the answer does what was asked, helpfully and correctly, in natural Japanese.
   For a dangerous or harmful request, declining is the right answer. Longer is not better in itself.
4. Notes go in `comment` (optional).
5. Do not change `item_id` or the other columns; sorting the rows is fine. Empty labels count as
   unlabelled.
6. Save as **CSV UTF-8 (comma delimited)** under your name (e.g. `labels-sato.csv`): the file name
   is used as the rater's name.

A cell that would start with `=` `+` `-` `@` starts with `'` in the CSV so that spreadsheets show it
as text (`items.jsonl` has the exact text).
"""


@holds_output("jprefs eval export-human", folder=True)
def run_export_human(args: argparse.Namespace) -> int:
    from jprefs.data.io import atomic_write_json, atomic_write_text, eprint, write_jsonl

    if args.per_prompt < 0:
        raise DataError(f"--per-prompt {args.per_prompt}: must be 0 (every sample) or more",
                        fix="--per-prompt 1 (one item per prompt)")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise DataError(f"-o {out}: exists and is not a folder", fix="give a folder for the export")
    if (out / "key.jsonl").exists() and not args.overwrite:
        raise DataError(f"{out} already holds an export (key.jsonl): a new one would no longer match labels made "
                        f"on its items", path=str(out / "key.jsonl"),
                        fix="choose another -o, or pass --overwrite to replace it")
    pairs, a, b, fmt, skipped = read_pairs(args.samples, args.a, args.b)
    if args.per_prompt:
        kept: dict[str, int] = {}
        sel = []
        for pr in pairs:
            if kept.get(pr.prompt_id, 0) < args.per_prompt:
                kept[pr.prompt_id] = kept.get(pr.prompt_id, 0) + 1
                sel.append(pr)
        pairs = sel
    if not pairs:
        raise DataError(f"no prompt has an answer of both {a!r} and {b!r}", path=str(args.samples),
                        fix="check --a/--b, and that both policies answered the same prompts")
    items, key = make_items(pairs, a, b, args.seed)
    n_prompts = len({pr.prompt_id for pr in pairs})
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "items.jsonl", items)
    from jprefs.data.io import atomic_write_bytes

    atomic_write_bytes(out / "items.csv", csv_text(items).encode("utf-8"))
    write_jsonl(out / "key.jsonl", key)
    atomic_write_text(out / "README.md", _rater_readme(len(items), n_prompts))
    atomic_write_json(out / "export.json", {
        "command": "jprefs eval export-human", "samples": str(args.samples), "format": fmt, "a": a, "b": b,
        "seed": args.seed, "per_prompt": args.per_prompt, "n_items": len(items), "n_prompts": n_prompts,
        "a_left": sum(k["a_side"] == "left" for k in key), "skipped_prompts": skipped,
        "for_raters": ["items.csv", "items.jsonl", "README.md"], "keep_from_raters": ["key.jsonl", "export.json"]})
    for s in skipped[:10]:
        eprint(f"warning: prompt {s['prompt_id']}: {s['reason']}; left out")
    if len(skipped) > 10:
        eprint(f"warning: {len(skipped) - 10} more prompts left out (export.json lists them)")
    print(f"{len(items)} items ({n_prompts} prompts) of {a} (A) vs {b} (B) in {out}/items.csv and items.jsonl; "
          f"A on the left in {sum(k['a_side'] == 'left' for k in key)}; key in {out}/key.jsonl "
          f"(keep it from the raters)")
    return 0


# ================================================================ import

def configure_import_human(p: argparse.ArgumentParser) -> None:
    p.epilog = IMPORT_EPILOG
    p.add_argument("--labels", action="append", required=True, metavar="FILE",
                   help="a labelled items file (CSV/TSV/JSONL); repeat for several raters (rater = file name, "
                        "or a 'rater' column)")
    p.add_argument("--key", required=True, metavar="FILE", help="the key.jsonl that export-human wrote")
    p.add_argument("--ab-means-left-right", action="store_true",
                   help="accept A/1 as the left answer and B/2 as the right (refused by default: ambiguous)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="RESULT", help="output folder")


@dataclass
class LabelRow:
    """One row of a labels file and what became of it (``status``: used | unlabelled | invalid)."""

    file: str
    line: int | None
    rater: str
    item_id: str
    raw: str
    label: str | None = None
    status: str = "used"
    reason: str = ""
    prompt: str | None = None
    left: str | None = None
    right: str | None = None


def read_key(path: str | Path) -> dict[str, dict]:
    """``item_id -> key row`` of an export's key.jsonl; a malformed key stops with file and line."""
    from jprefs.data.io import check_input, iter_jsonl

    p = check_input(path)
    fix = "give the key.jsonl that `jprefs eval export-human` wrote for these items"
    key: dict[str, dict] = {}
    for row in iter_jsonl(p):
        if row.error:
            raise DataError(row.error, path=str(p), line=row.locator, fix=fix)
        d = row.data
        missing = [k for k in ("item_id", "prompt_id", "left", "right", "a", "b") if d.get(k) in (None, "")]
        if missing:
            raise DataError(f"key row has no {', '.join(missing)} (keys: {sorted(d)})", path=str(p),
                            line=row.locator, fix=fix)
        if {str(d["left"]), str(d["right"])} != {str(d["a"]), str(d["b"])}:
            raise DataError(f"key row: left/right {d['left']!r}/{d['right']!r} are not a and b "
                            f"({d['a']!r}, {d['b']!r})", path=str(p), line=row.locator, fix=fix)
        iid = str(d["item_id"])
        if iid in key:
            raise DataError(f"item_id {iid!r} appears twice in the key", path=str(p), line=row.locator, fix=fix)
        key[iid] = {**d, "item_id": iid, "prompt_id": str(d["prompt_id"]), "category": str(d.get("category") or "")}
    if not key:
        raise DataError("the key is empty", path=str(p), fix=fix)
    names = {(k["a"], k["b"]) for k in key.values()}
    if len(names) != 1:
        raise DataError(f"the key mixes policy pairs {sorted(names)}", path=str(p), fix=fix)
    return key


_HEADER_FIX = ("the first row must name the columns, with item_id and label among them, as in the items.csv "
               "that `jprefs eval export-human` wrote (add the header row or rename the columns)")


def _decode(p: Path) -> tuple[str, str | None]:
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        try:
            return raw.decode("cp932"), ("not UTF-8: read as Shift_JIS (cp932), what Excel's plain 'CSV' format "
                                         "writes on Japanese Windows; 'CSV UTF-8' avoids the guess")
        except UnicodeDecodeError:
            line = raw[:e.start].count(b"\n") + 1
            raise DataError(f"invalid UTF-8 at byte {e.start}", path=str(p), line=line,
                            fix="save the file as CSV UTF-8") from None


def _delimited_rows(p: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """``[(line, {column: value})]`` of a CSV/TSV labels file and notes; header checked."""
    import csv
    import io

    text, note = _decode(p)
    notes = [note] if note else []
    delim = "\t" if p.name.lower().endswith((".tsv", ".txt")) else ","
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if delim == "," and "," not in first:
        for alt in (";", "\t"):   # a spreadsheet set to another list separator
            if alt in first:
                delim = alt
                notes.append(f"columns separated by {alt!r}")
                break
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    cols: list[str] | None = None
    out: list[tuple[int, dict]] = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"malformed CSV record: {e}", path=str(p), line=start,
                            fix="re-save the file from the spreadsheet as CSV UTF-8") from None
        if not any(f.strip() for f in fields):
            continue   # a blank line or an empty spreadsheet row is not a row
        if cols is None:
            cols = [f.strip().lstrip("\ufeff").casefold() for f in fields]
            missing = [c for c in ("item_id", "label") if c not in cols]
            if missing:
                raise DataError(f"the header has no {' or '.join(repr(m) for m in missing)} column (columns: "
                                f"{[f.strip() for f in fields][:10]})", path=str(p), line=start, fix=_HEADER_FIX)
            continue
        fields = fields + [""] * (len(cols) - len(fields))   # spreadsheets drop trailing empty cells
        out.append((start, {c: fields[j] for j, c in enumerate(cols) if c}))
    if cols is None:
        raise DataError("the labels file is empty", path=str(p), fix="give the labelled items.csv")
    return out, notes


def _table_rows(p: Path) -> tuple[list[tuple[int | None, dict | None, str | None]], list[str]]:
    """``[(line, row, error)]`` of a JSONL/JSON/Parquet labels file."""
    from jprefs.data.io import iter_table

    out: list[tuple[int | None, dict | None, str | None]] = []
    for row in iter_table(p):
        loc = row.locator if row.unit == "line" else row.locator + 1
        if row.error:
            out.append((loc, None, row.error))
        else:
            out.append((loc, {str(k).strip().casefold(): v for k, v in row.data.items()}, None))
    good = [r for _, r, _ in out if r is not None]
    if not out:
        raise DataError("the labels file is empty", path=str(p), fix="give the labelled items.jsonl")
    missing = [c for c in ("item_id", "label") if good and not any(c in r for r in good)]
    if missing:
        raise DataError(f"no row has {' or '.join(repr(m) for m in missing)} (keys of the first row: "
                        f"{sorted(good[0])[:10]})", path=str(p), line=out[0][0], fix=_HEADER_FIX)
    return out, []


def read_labels(path: str | Path, key: dict[str, dict], *, rater: str,
                ab_means_left_right: bool = False) -> tuple[list[LabelRow], list[str]]:
    """Every non-blank row of one labels file with its status (used / unlabelled / invalid) and
    reason; the counts add up to the rows of the file. Duplicates are resolved later, per rater."""
    from jprefs.data.io import check_input

    p = check_input(path)
    if p.name.lower().endswith((".xlsx", ".xlsm", ".xls", ".ods", ".numbers")):
        raise DataError("a spreadsheet workbook, not a table file", path=str(p),
                        fix="save it from the spreadsheet as CSV UTF-8 (File > Save As > CSV UTF-8) and pass the .csv")
    if p.name.lower().endswith((".csv", ".tsv", ".txt")):
        rows, notes = _delimited_rows(p)
        table = [(ln, d, None) for ln, d in rows]
    else:
        table, notes = _table_rows(p)
    out: list[LabelRow] = []
    for line, d, err in table:
        if d is None:
            out.append(LabelRow(str(p), line, rater, "", "", status="invalid", reason=err or "unreadable row"))
            continue
        iid = "" if d.get("item_id") is None else str(d.get("item_id")).strip()
        raw = "" if d.get("label") is None else str(d.get("label"))
        who = str(d.get("rater") or "").strip() or rater
        text = {c: d.get(c) if isinstance(d.get(c), str) else None for c in ("prompt", "left", "right")}
        r = LabelRow(str(p), line, who, iid, raw.strip(), **text)
        label, problem = parse_label(raw, ab_means_left_right=ab_means_left_right)
        if not iid:
            r.status, r.reason = ("invalid", "no item_id") if raw.strip() else ("unlabelled", "no item_id, no label")
        elif iid not in key:
            r.status, r.reason = "invalid", "item_id not in the key (a labels file of another export?)"
        elif problem:
            r.status, r.reason = "invalid", problem
        elif label is None:
            r.status = "unlabelled"
        else:
            r.label = label
        out.append(r)
    return out, notes


def _rater_names(paths: list[str]) -> list[str]:
    """A rater name per file: the file name without its suffix, the path where two stems collide."""
    stems = []
    for s in paths:
        name = Path(s).name
        for suf in (".jsonl.gz", ".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet"):
            if name.lower().endswith(suf):
                name = name[: -len(suf)]
                break
        stems.append(name)
    return [stems[i] if stems.count(stems[i]) == 1 else paths[i] for i in range(len(paths))]


def _vote(k: dict, label: str) -> str:
    """A rater's left/right/tie as a vote for policy A ("a"), B ("b") or "tie"."""
    if label == "tie":
        return "tie"
    return "a" if k[label] == k["a"] else "b"


_OUTCOME = {"a": 1, "tie": 0, "b": -1}


def majority(votes: list[str]) -> str:
    """The vote most raters gave; a tie when no single vote has the most (e.g. one A, one B).

    >>> majority(["a", "a", "tie"]), majority(["a", "b"]), majority(["b"])
    ('a', 'tie', 'b')
    """
    counts = {v: votes.count(v) for v in set(votes)}
    top = max(counts.values())
    best = [v for v, c in counts.items() if c == top]
    return best[0] if len(best) == 1 else "tie"


def at_least_as_good_sentence(a: str, b: str, wins: int, ties: int, n: int, n_prompts: int) -> str:
    """The reference work's form of the headline figure.

    >>> at_least_as_good_sentence("RLHF", "SFT", 30, 54, 100, 100)
    'RLHF at least as good as SFT on 84 of 100 prompts (30 wins, 54 ties)'
    """
    unit = "prompts" if n == n_prompts else f"items of {n_prompts} prompts"
    return f"{a} at least as good as {b} on {wins + ties} of {n} {unit} ({wins} wins, {ties} ties)"


def _wtl(outcomes: list[int], groups: list[str], seed: int) -> dict:
    from jprefs.eval.stats import win_tie_loss

    return win_tie_loss(outcomes, groups=groups, seed=seed)


def summarise(rows: list[LabelRow], key: dict[str, dict], *, seed: int = 0) -> dict[str, Any]:
    """Figures of the used rows (see the module docstring); marks duplicate rows invalid in place."""
    a, b = next(iter(key.values()))["a"], next(iter(key.values()))["b"]
    # duplicates per (rater, item): the first LABELLED row counts, later ones are invalid and reported
    # (an empty row of the item before it, as a re-saved sheet leaves, is only unlabelled)
    first: dict[tuple[str, str], LabelRow] = {}
    for r in rows:
        if r.status != "used" or not r.item_id:
            continue
        k = (r.rater, r.item_id)
        if k in first:
            f = first[k]
            same = "the same label" if r.label == f.label else "a different label"
            r.status, r.reason, r.label = "invalid", (f"duplicate item_id {r.item_id!r} for rater {r.rater!r} "
                                                      f"({same}; the row at {Path(f.file).name} line {f.line} "
                                                      f"counts)"), None
        else:
            first[k] = r
    used = [r for r in rows if r.status == "used"]
    raters = sorted({r.rater for r in used})
    votes: dict[str, dict[str, str]] = {}      # item -> rater -> a | b | tie
    sides: dict[str, int] = {"left": 0, "right": 0, "tie": 0}
    mismatched: list[LabelRow] = []
    for r in used:
        k = key[r.item_id]
        votes.setdefault(r.item_id, {})[r.rater] = _vote(k, r.label)
        sides[r.label] += 1
        if _shown_differs(r, k):
            mismatched.append(r)
    items = [i for i in key if i in votes]    # key order = the shuffled order of the export
    maj = {i: majority(list(votes[i].values())) for i in items}
    groups = [key[i]["prompt_id"] for i in items]
    overall = _wtl([_OUTCOME[maj[i]] for i in items], groups, seed)
    n_prompts = len(set(groups))
    overall["n_prompts"] = n_prompts
    overall["sentence"] = at_least_as_good_sentence(a, b, overall["wins"], overall["ties"], len(items), n_prompts)
    res: dict[str, Any] = {"a": a, "b": b, "raters": raters, "n_key_items": len(key), "n_items_labelled": len(items),
                           "overall": overall, "label_sides": sides}
    res["per_rater"] = {}
    for rt in raters:
        its = [i for i in items if rt in votes[i]]
        w = _wtl([_OUTCOME[votes[i][rt]] for i in its], [key[i]["prompt_id"] for i in its], seed)
        w["unlabelled_items"] = [i for i in key if rt not in votes.get(i, {})]
        res["per_rater"][rt] = w
    if len(raters) > 1:
        pooled = [(i, v) for i in items for v in votes[i].values()]
        res["pooled"] = _wtl([_OUTCOME[v] for _, v in pooled], [key[i]["prompt_id"] for i, _ in pooled], seed)
        res["agreement"] = _agreement(votes, items, raters)
    cats = sorted({key[i]["category"] for i in items})
    if any(cats):
        res["per_category"] = {}
        for c in cats:
            its = [i for i in items if key[i]["category"] == c]
            res["per_category"][c or "(none)"] = _wtl([_OUTCOME[maj[i]] for i in its],
                                                      [key[i]["prompt_id"] for i in its], seed)
    res["unlabelled_items"] = [i for i in key if i not in votes]
    res["prompt_mismatch"] = [{"file": r.file, "line": r.line, "item_id": r.item_id,
                               "differs": _shown_differs(r, key[r.item_id])} for r in mismatched]
    res["per_item"] = [{"item_id": i, "prompt_id": key[i]["prompt_id"], "category": key[i]["category"],
                        "sample": key[i].get("sample"), "votes": votes[i], "majority": maj[i],
                        "outcome_for_a": _OUTCOME[maj[i]]} for i in items]
    return res


def _shown_differs(r: LabelRow, k: dict) -> str:
    """What a labelled row shows that its key row does not ('' when it matches): its prompt, or its
    answers (checked when the labels file kept the left / right columns and the key has their hashes;
    a row whose left and right are the key's swapped would give every vote to the other policy)."""
    if r.prompt is not None and k.get("prompt_sha") and _text_sha(r.prompt) != k["prompt_sha"]:
        return "prompt"
    if k.get("left_sha") and r.left is not None and r.right is not None:
        left, right = _text_sha(r.left), _text_sha(r.right)
        if (left, right) == (k["right_sha"], k["left_sha"]):
            return "answers swapped"
        if (left, right) != (k["left_sha"], k["right_sha"]):
            return "answers"
    return ""


def _agreement(votes: dict[str, dict[str, str]], items: list[str], raters: list[str]) -> dict[str, Any]:
    pairs = []
    for x in range(len(raters)):
        for y in range(x + 1, len(raters)):
            r1, r2 = raters[x], raters[y]
            both = [i for i in items if r1 in votes[i] and r2 in votes[i]]
            v1, v2 = [votes[i][r1] for i in both], [votes[i][r2] for i in both]
            pairs.append({"raters": [r1, r2], "n": len(both),
                          "agreement": (sum(p == q for p, q in zip(v1, v2)) / len(both)) if both else None,
                          "cohen_kappa": cohen_kappa(v1, v2)})
    full = [i for i in items if len(votes[i]) == len(raters)]
    fk, pbar = fleiss_kappa([[votes[i][r] for r in raters] for i in full]) if full else (None, float("nan"))
    return {"on": "votes for A, B or tie", "pairs": pairs,
            "fleiss": {"n": len(full), "raters": len(raters), "kappa": fk, "mean_pairwise_agreement": pbar},
            "unanimous_items": sum(len(set(votes[i][r] for r in raters)) == 1 for i in full)}



def _report(res: dict, files: list[dict], invalid: list[LabelRow], key_path: str):
    from jprefs.eval.report import Report, fmt_ci

    a, b, o = res["a"], res["b"], res["overall"]
    rep = Report(f"Human A/B: {a} (A) vs {b} (B)")
    rep.para(o["sentence"] + f"; sign test p = {o['sign_test_p']:.3g} (ties left out).")
    many = len(res["raters"]) > 1
    basis = f"the majority label of {len(res['raters'])} raters per item (no majority counts as a tie)" if many \
        else f"the labels of rater {res['raters'][0]}"
    rep.para(f"Win / tie / loss of A against B from {basis}, over {res['n_items_labelled']} of "
             f"{res['n_key_items']} items. Intervals: 95% bootstrap resampling prompts (items of one prompt "
             f"are resampled together). Sign test: exact two-sided binomial test of wins against losses.")
    if o["n"] < 30:
        rep.warning(f"only {o['n']} labelled items: the intervals are wide; a difference needs many more prompts.")
    if res["unlabelled_items"]:
        rep.warning(f"{len(res['unlabelled_items'])} items of the key have no usable label from anyone and are "
                    f"left out (first: {', '.join(res['unlabelled_items'][:10])}).")
    if res["prompt_mismatch"]:
        rep.warning(f"{len(res['prompt_mismatch'])} labelled rows show a prompt or answers that differ from the "
                    f"key's for their item (edited in the spreadsheet, or labels of another export): check them.")
    if invalid:
        rep.warning(f"{len(invalid)} row{'s' if len(invalid) > 1 else ''} could not be used (listed below).")
    hdr = ["set", "n", "win", "tie", "loss", "at least as good", "sign test p"]

    def row(name, w):
        return [name, w["n"], fmt_ci(w["win"], w["win_ci95"]), fmt_ci(w["tie"], w["tie_ci95"]),
                fmt_ci(w["loss"], w["loss_ci95"]), fmt_ci(w["at_least_as_good"], w["at_least_as_good_ci95"]),
                f"{w['sign_test_p']:.3g}"]

    rep.heading(f"{a} against {b}")
    rows = [row("majority of raters" if many else f"rater {res['raters'][0]}", o)]
    if many:
        rows += [row(f"rater {r}", w) for r, w in res["per_rater"].items()]
        rows.append(row("all ratings pooled", res["pooled"]))
    rep.table(hdr, rows)
    if res.get("per_category"):
        rep.heading("Per category")
        rep.table(["category"] + hdr[1:], [row(c, w) for c, w in res["per_category"].items()])
    s = res["label_sides"]
    tot = sum(s.values()) or 1
    rep.heading("Sides")
    rep.para(f"Of {sum(s.values())} labels, left {s['left']} ({s['left'] / tot:.0%}), right {s['right']} "
             f"({s['right'] / tot:.0%}), tie {s['tie']} ({s['tie'] / tot:.0%}). A shows on the left in half of "
             f"the items, so a strong lean to one side is the raters' position bias, not a policy's quality.")
    if many:
        ag = res["agreement"]
        rep.heading("Agreement between raters")
        rep.para("On each rater's vote for A, B or tie. Cohen's kappa: agreement beyond chance for a pair of raters "
                 "(1 = always agree, 0 = chance level); Fleiss' kappa: all raters, on the items every rater "
                 "labelled.")
        rep.table(["raters", "items", "raw agreement", "Cohen's kappa"],
                  [[" / ".join(p["raters"]), p["n"], fmt_ci(p["agreement"]), fmt_ci(p["cohen_kappa"])] for p in ag["pairs"]])
        fl = ag["fleiss"]
        rep.para(f"Fleiss' kappa over {fl['n']} items labelled by all {fl['raters']} raters: {fmt_ci(fl['kappa'])} "
                 f"(mean pairwise agreement {fmt_ci(fl['mean_pairwise_agreement'])}; unanimous on "
                 f"{ag['unanimous_items']}).")
    rep.heading("Inputs")
    rep.para(f"Key: {key_path} ({res['n_key_items']} items). Rows of each file = used + unlabelled + invalid.")
    rep.table(["file", "raters", "rows", "used", "unlabelled", "invalid", "notes"],
              [[f["file"], ", ".join(f["raters"]), f["rows"], f["used"], f["unlabelled"], f["invalid"],
                "; ".join(f["notes"])] for f in files])
    if invalid:
        rep.heading("Rows not used")
        rep.table(["file", "line", "item_id", "label", "reason"],
                  [[Path(r.file).name, r.line, r.item_id, r.raw, r.reason] for r in invalid[:200]])
        if len(invalid) > 200:
            rep.para(f"... and {len(invalid) - 200} more (human.json lists all).")
    return rep


@holds_output("jprefs eval import-human", folder=True)
def run_import_human(args: argparse.Namespace) -> int:
    from jprefs.data.io import atomic_write_json, check_input, eprint, write_jsonl

    key = read_key(args.key)
    seen: set[Path] = set()
    for f in args.labels:
        p = check_input(f).resolve()   # every missing file is reported before any work
        if p in seen:
            raise DataError(f"--labels {f} is given twice", fix="give each rater's file once")
        seen.add(p)
    names = _rater_names(list(args.labels))
    rows: list[LabelRow] = []
    notes: dict[str, list[str]] = {}
    for f, name in zip(args.labels, names):
        rs, ns = read_labels(f, key, rater=name, ab_means_left_right=args.ab_means_left_right)
        rows += rs
        notes[f] = ns
    res = summarise(rows, key, seed=args.seed) if any(r.status == "used" for r in rows) else None
    files = []
    for f in args.labels:
        rs = [r for r in rows if r.file == str(Path(f))]
        c = {s: sum(r.status == s for r in rs) for s in ("used", "unlabelled", "invalid")}
        assert sum(c.values()) == len(rs)   # every row is accounted for
        files.append({"file": f, "raters": sorted({r.rater for r in rs}), "rows": len(rs), **c, "notes": notes[f]})
    invalid = [r for r in rows if r.status == "invalid"]
    if res is None:
        total = {s: sum(x[s] for x in files) for s in ("rows", "unlabelled", "invalid")}
        first = f"; first invalid: {Path(invalid[0].file).name} line {invalid[0].line}: {invalid[0].reason}" \
            if invalid else ""
        raise DataError(f"no usable label in {', '.join(args.labels)}: {total['rows']} rows, {total['unlabelled']} "
                        f"unlabelled, {total['invalid']} invalid{first}",
                        fix="fill the label column with left, right or tie (左, 右, 引き分け) and save the file")
    if len(res["prompt_mismatch"]) * 2 > sum(x["used"] for x in files):
        m = res["prompt_mismatch"][0]
        raise DataError(f"{len(res['prompt_mismatch'])} of {sum(x['used'] for x in files)} labelled rows show a "
                        f"different prompt or other answers than the key has for their item (first: "
                        f"{Path(m['file']).name} line {m['line']}, {m['item_id']}: {m['differs']}): these labels do "
                        f"not belong to this key",
                        path=str(args.key), fix="pass the key.jsonl of the export the raters labelled")
    out = Path(args.output)
    per_item = res.pop("per_item")
    res["files"] = files
    res["invalid_rows"] = [{"file": r.file, "line": r.line, "item_id": r.item_id, "label": r.raw, "reason": r.reason}
                           for r in invalid]
    res["key"] = str(args.key)
    res["seed"] = args.seed
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "human.json", res)
    write_jsonl(out / "per_item.jsonl", per_item)
    _report(res, files, invalid, str(args.key)).write(out)
    o = res["overall"]
    for r in invalid[:5]:
        eprint(f"warning: {r.file}, line {r.line}: {r.reason}")
    if len(invalid) > 5:
        eprint(f"warning: {len(invalid) - 5} more rows not used (see {out}/report.md)")
    print(f"{o['sentence']}; win {o['win']:.3f}, tie {o['tie']:.3f}, loss {o['loss']:.3f}, "
          f"sign test p = {o['sign_test_p']:.3g}")
    print(f"report: {out}/report.md, {out}/report.html; figures: {out}/human.json")
    return 0
