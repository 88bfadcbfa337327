"""Evaluation prompt loading: MT-Bench question files, JSONL, text, and bad input."""

import json
from pathlib import Path

import pytest

from jprefs.errors import DataError
from jprefs.eval.prompts import load_eval_prompts

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_mt_bench_question_file_style(tmp_path):
    f = tmp_path / "question.jsonl"
    rows = [{"question_id": 81, "category": "writing", "turns": ["旅行記を書いて。", "全部Aで始めて。"]},
            {"question_id": 82, "category": "math", "turns": ["1+1は?"]}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    ps = load_eval_prompts(str(f))
    assert [(p.id, p.category, p.text) for p in ps] == [("81", "writing", "旅行記を書いて。"), ("82", "math", "1+1は?")]
    assert ps[0].turns == rows[0]["turns"] and ps[0].chat() == [{"role": "user", "content": "旅行記を書いて。"}]


@pytest.mark.skipif(not (SHARED / "ja_mt_bench" / "question.jsonl").exists(), reason="shared data absent")
def test_the_real_ja_mt_bench_questions():
    ps = load_eval_prompts(str(SHARED / "ja_mt_bench" / "question.jsonl"))
    assert len(ps) == 60 and len({p.category for p in ps}) == 6 and all(p.text.strip() for p in ps)


def test_text_and_jsonl_with_messages(tmp_path):
    t = tmp_path / "open.txt"
    t.write_text("今週末に\n\n今日6時\n帰ったら\n", encoding="utf-8")
    j = tmp_path / "p.jsonl"
    j.write_text(json.dumps({"id": "c1", "prompt": [{"role": "user", "content": "猫は?"},
                                                     {"role": "assistant", "content": "好き"},
                                                     {"role": "user", "content": "犬は?"}]}, ensure_ascii=False)
                 + "\n", encoding="utf-8")
    ps = load_eval_prompts(f"{t},{j}")
    assert [p.text for p in ps[:3]] == ["今週末に", "今日6時", "帰ったら"] and ps[0].id == "open.txt:1"
    assert ps[3].id == "c1" and len(ps[3].chat()) == 3 and ps[3].text.endswith("ユーザー: 犬は?")


@pytest.mark.parametrize("content, match", [
    ("", "no prompts"),
    ('{"prompt": "a"}\n{"prompt": \n', "line 2"),
    ('{"question": "x"}\n', "no 'prompt', 'text' or 'turns'"),
    ('{"prompt": "  "}\n', "empty prompt"),
    ('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n', "appears twice"),
    ('[1, 2]\n', "JSON object"),
])
def test_bad_prompt_files_name_the_file_and_line(tmp_path, content, match):
    f = tmp_path / "bad.jsonl"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        load_eval_prompts(str(f))
    assert "bad.jsonl" in str(e.value) or "no prompts" in str(e.value)


def test_missing_file_and_unknown_builtin(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_eval_prompts(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="unknown built-in"):
        load_eval_prompts("builtin:nope")
