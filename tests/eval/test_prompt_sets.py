"""The built-in Japanese prompt sets: counts per category, ids, Japanese text, references, packaging."""

import json
import re
import statistics
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from jprefs.eval.prompts import BUILTIN_SETS, builtin_prompts_dir, load_eval_prompts
from jprefs.text import japanese_ratio

REPO = Path(__file__).resolve().parents[2]
INSTRUCTION_COUNTS = {"writing": 11, "roleplay": 11, "reasoning": 11, "math": 12, "coding": 11, "extraction": 11,
                      "stem": 11, "humanities": 11, "harmful": 11}
CHECKABLE = ("math", "reasoning", "extraction")


def test_instruction_set_counts_ids_and_references():
    ps = load_eval_prompts("builtin:ja-instructions")
    assert len(ps) == 100
    assert Counter(p.category for p in ps) == INSTRUCTION_COUNTS
    assert len({p.id for p in ps}) == len(ps)
    for p in ps:  # stable ids: CATEGORY-NN, numbered from 01 within the category
        assert re.fullmatch(rf"{p.category}-\d\d", p.id), p.id
    for cat, n in INSTRUCTION_COUNTS.items():
        assert sorted(p.id for p in ps if p.category == cat) == [f"{cat}-{i:02d}" for i in range(1, n + 1)]
    for p in ps:
        assert p.text.strip() and p.text == p.text.strip(), p.id
        if p.category in CHECKABLE:
            assert p.reference.strip(), f"{p.id} has no reference"
        else:
            assert not p.reference, f"{p.id}: open-ended prompts carry no reference"
    by_id = {p.id: p for p in ps}
    # a few references recomputed here, so a typo in the file fails
    assert by_id["math-01"].reference == "19/12"                            # 9/12 + 10/12
    assert by_id["math-03"].reference == str(sum(range(1, 101)))
    assert by_id["math-05"].reference == f"{2400 * 75 // 100}円"
    assert by_id["math-12"].reference == str(45 * 100 // 30)
    assert by_id["reasoning-11"].reference == f"{(5 - 1) * 3}分"
    assert json.loads(by_id["extraction-07"].reference) == [{"名前": "佐藤", "年齢": 28, "出身": "福岡"},
                                                           {"名前": "鈴木", "年齢": 35, "出身": "仙台"}]


def test_reasoning_weekday_reference():
    # today is Wednesday (index 2 with Monday = 0); 100 days later
    days = ["月", "火", "水", "木", "金", "土", "日"]
    ref = {p.id: p.reference for p in load_eval_prompts("builtin:ja-instructions")}["reasoning-03"]
    assert ref == days[(2 + 100) % 7] + "曜日"


def test_prompts_are_japanese():
    ps = load_eval_prompts("builtin:ja-instructions")
    ratios = {p.id: japanese_ratio(p.text) for p in ps}
    # code and SQL column names bring Latin letters into the coding prompts; nothing falls below half
    assert min(ratios.values()) >= 0.5, min(ratios.items(), key=lambda kv: kv[1])
    assert all(r >= 0.7 for i, r in ratios.items() if not i.startswith("coding-")), \
        sorted((r, i) for i, r in ratios.items())[:5]
    assert statistics.median(ratios.values()) >= 0.95


def test_continuation_set():
    ps = load_eval_prompts("builtin:ja-continuations")
    assert len(ps) == 30 and {p.category for p in ps} == {"continuation"}
    assert [p.id for p in ps] == [f"continuation-{i:02d}" for i in range(1, 31)]
    texts = [p.text for p in ps]
    assert len(set(texts)) == 30 and {"今週末に", "今日6時", "帰ったら"} <= set(texts)
    assert all(0 < len(t) <= 10 and japanese_ratio(t) == 1.0 for t in texts)
    assert not any(p.reference for p in ps)


def test_both_sets_load_together():
    ps = load_eval_prompts("builtin:ja-instructions,builtin:ja-continuations")
    assert len(ps) == 130 and len({p.id for p in ps}) == 130


def test_the_package_ships_them_and_the_repo_links_them():
    root = resources.files("jprefs") / "resources" / "eval" / "prompts"
    for name in BUILTIN_SETS:
        f = root / f"{name}.jsonl"
        assert f.is_file(), name
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert rows and all(set(r) <= {"id", "category", "prompt", "reference"} for r in rows)
    assert (root / "README.md").is_file()
    assert Path(str(root)).resolve() == builtin_prompts_dir().resolve()
    # eval/prompts in the repository is a relative symlink to the packaged folder
    link = REPO / "eval" / "prompts"
    if link.exists():
        assert link.is_symlink() and not Path(link.readlink()).is_absolute()
        assert link.resolve() == (REPO / "jprefs" / "resources" / "eval" / "prompts").resolve()
    # the package-data glob of pyproject.toml covers them
    py = (REPO / "pyproject.toml")
    if py.exists():
        assert '"resources/**/*"' in py.read_text(encoding="utf-8")
        pkg = REPO / "jprefs"
        shipped = {p.relative_to(pkg).as_posix() for p in pkg.glob("resources/**/*") if p.is_file()}
        assert {f"resources/eval/prompts/{n}.jsonl" for n in BUILTIN_SETS} <= shipped


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_readme_counts_match_the_files(name):
    readme = (builtin_prompts_dir() / "README.md").read_text(encoding="utf-8")
    n = len(load_eval_prompts(f"builtin:{name}"))
    assert re.search(rf"`builtin:{name}` \| {n} \|", readme), f"README.md does not say {name} has {n} prompts"
    if name == "ja-instructions":
        for cat, k in INSTRUCTION_COUNTS.items():
            assert re.search(rf"\| `{cat}` \| {k} \|", readme), cat
