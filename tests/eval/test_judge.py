"""`jprefs eval judge` against a local OpenAI-compatible judge server (tests/eval/judge_server.py).

The server's judge is deterministic (the longer answer wins, or always "A"), so every figure
below is computed by hand from the constructed pairs and samples.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from jprefs.cli import main
from jprefs.data.io import write_jsonl
from jprefs.data.schema import PreferencePair
from jprefs.eval.judge import Judge, builtin_judge_dir, combine, grade, load_judge_template, pairwise
from jprefs.eval.stats import sign_test
from jprefs.runlock import RunLock
from tests.eval.judge_server import JudgeServer

REPO = Path(__file__).resolve().parents[2]

# (prompt, chosen, rejected): chosen longer in 3, rejected longer in 1, equal lengths in 1;
# the first two share a prompt (one cluster in the bootstrap)
GOOD = [
    ("日本の首都は？", "東京です。日本の首都は東京です。", "大阪"),            # judge: chosen
    ("日本の首都は？", "東京です。", "京都だと思います。"),                    # judge: rejected
    ("りんごは何色？", "赤色や緑色があります。", "赤"),                        # judge: chosen
    ("1+1は？", "2です。", "3です。"),                                        # equal: tie
    ("猫について一言", "猫はかわいい動物です。", "猫。"),                      # judge: chosen
]
BAD = [
    ("質問A", "NOVERDICT を含む回答", "普通の回答"),
    ("質問B", "CONFLICT を含む回答", "普通の回答"),
    ("質問C", "EMPTY を含む回答", "普通の回答"),
    ("質問D", "TRUNC を含む回答", "普通の回答"),
]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("JPREFS_NO_PROGRESS", "1")


def pair_file(path: Path, rows) -> list[PreferencePair]:
    pairs = [PreferencePair.create(q, c, r, source="test") for q, c, r in rows]
    write_jsonl(path, pairs)
    return pairs


def judge_cli(server_url: str, out: Path, *extra: str) -> int:
    return main(["eval", "judge", "--judge", "judge-model", "--judge-base-url", server_url,
                 "--max-retries", "0", "-o", str(out), *extra])


def read(out: Path):
    s = json.loads((out / "judge.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text(encoding="utf-8").splitlines()]
    return s, rows


# ---------------------------------------------------------------- templates and parsing

def test_builtin_templates_and_parsing():
    p, g = load_judge_template("builtin:pairwise-ja"), load_judge_template("builtin:grade-ja")
    assert (p.mode, g.mode) == ("pairwise", "grade")
    assert p.parse("理由。\n[[B]]") == ("b", None)
    assert p.parse("[[C]]") == ("tie", None)
    assert p.parse("[[ A ]]") == ("a", None)
    assert p.parse("[[A]] と [[A]]") == ("a", None)          # the same verdict twice is one verdict
    assert p.parse("[[D]]") == (None, "unknown_verdict")
    assert p.parse("Aが良い", "length") == (None, "truncated")
    assert p.parse("   ") == (None, "empty")
    assert g.parse("[[10]]") == (10.0, None) and g.parse("[[1]]") == (1.0, None)
    assert g.parse("[[0]]") == (None, "score_out_of_range")
    assert g.parse("[[7]] ... [[8]]") == (None, "conflicting_verdicts")
    # the last line with a marker decides: a restated format first, then the verdict, is read right
    assert p.parse("「[[A]]」「[[B]]」「[[C]]」で答えます。\n理由: Aが正確。\n[[A]]") == ("a", None)
    assert p.parse("最初は[[A]]と思ったが、\n再考して[[B]]") == ("b", None)
    assert p.parse("[[B]]\n補足: 形式は[[D]]ではない") == ("b", None)   # an unknown marker after it is ignored
    assert g.parse("例えば[[5]]のように書きます。\n[[8]]") == (8.0, None)
    assert g.parse("[[3]]\n[[11]]") == (None, "score_out_of_range")
    assert g.parse("[[良い]]") == (None, "unknown_verdict")
    assert g.parse("8点です") == (None, "no_verdict")
    # the two orders: agreeing verdicts stand, any disagreement is a tie
    assert combine("b", "b") == ("b", True) and combine("b", "tie") == ("tie", False)
    # filling placeholders in one pass: an answer quoting a placeholder is not expanded
    msgs = p.render("Q", answer_a="{answer_b}", answer_b="本物のB")
    assert msgs[0]["role"] == "system" and "{answer_b}\n[アシスタントAの回答の終わり]" in msgs[1]["content"]
    # eval/judge/ in the repository is the package data (a relative symlink)
    link = REPO / "eval" / "judge"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert (link / "pairwise-ja.yaml").read_bytes() == (builtin_judge_dir() / "pairwise-ja.yaml").read_bytes()


def test_bad_template_is_one_clear_error(tmp_path):
    t = tmp_path / "t.yaml"
    t.write_text("mode: pairwise\nuser: '{question} {answer_a}'\n", encoding="utf-8")
    with pytest.raises(Exception, match="missing \\{answer_b\\}"):
        load_judge_template(t)
    # an internal error, a template whose every score was out of range, keys that could never match
    for extra, msg in (("verdicts: [A, B, C]\n", "must map markers"),
                       ("verdicts: {'[[A]]': a, '[[B]]': b, '[[C]]': tie}\n", "can never match")):
        t.write_text("mode: pairwise\nuser: '{question} {answer_a} {answer_b}'\n" + extra, encoding="utf-8")
        with pytest.raises(Exception, match=msg):
            load_judge_template(t)
    t.write_text("mode: grade\nuser: '{question} {answer}'\nscore_min: 5\nscore_max: 1\n", encoding="utf-8")
    with pytest.raises(Exception, match="must be below score_max"):
        load_judge_template(t)


@pytest.mark.parametrize("text,finish,want", [
    ("最終判定: [[B]]\n（注: [[A]]は回答Aを表す記号です）", "stop", ("b", None)),     # a later note names A
    ("Verdict: [[A]]\nNote: [[B]] would mean the second answer.", "stop", ("a", None)),
    ("回答Aは正確で、もし「[[A]]」と書くなら…一方で回答Bは", "length", (None, "truncated")),
    ("Bの方が詳しい。\n[[B]]", "length", ("b", None)),                               # cut after its verdict
    ("Aの方が正確です。\n[[A]]", "stop", ("a", None)),
])
def test_the_stated_verdict_wins_over_a_note_and_a_cut_answer_has_none(text, finish, want):
    assert load_judge_template("builtin:pairwise-ja").parse(text, finish) == want


# ---------------------------------------------------------------- the Python API

def test_api_position_bias_cancels_and_grades():
    with JudgeServer("always_a") as s:
        with Judge("judge-model", s.base_url, show_progress=False, max_retries=0) as j:
            vs = pairwise(j, ["質問1", [{"role": "user", "content": "質問2"}]], ["短い", "とても長い回答"],
                          ["とても長い回答", "短い"])
            # "A" in both orders = a then b: the swap turns a pure position bias into ties
            assert [(v.first, v.second, v.winner, v.consistent) for v in vs] == [("a", "b", "tie", False)] * 2
            assert s.completions == 4
            gs = grade(j, ["質問"] * 3, ["あ", "あいうえお", "あ" * 30])
            assert [x.score for x in gs] == [1.0, 5.0, 10.0] and all(x.reason is None for x in gs)
            # the same requests again: answered from the judge's memory, nothing sent
            pairwise(j, ["質問1"], ["短い"], ["とても長い回答"])
            assert s.completions == 7 and j.cache_hits == 2
    with JudgeServer("longer") as s, Judge("judge-model", s.base_url, show_progress=False) as j:
        v = pairwise(j, ["質問"], ["短い"], ["とても長い回答"])[0]
        assert (v.first, v.second, v.winner, v.consistent) == ("b", "b", "b", True)


# ---------------------------------------------------------------- --pairs

def test_pairs_agreement_with_labels_and_length_baseline(tmp_path, capsys):
    pairs = pair_file(tmp_path / "pairs.jsonl", GOOD)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 10                                # 5 pairs x 2 orders
    summ, rows = read(out)
    assert summ["n_pairs"] == 5 and summ["n_judged"] == 5 and summ["n_unparseable_pairs"] == 0
    assert summ["agreement"] == pytest.approx(3 / 5)
    assert summ["tie_rate"] == pytest.approx(1 / 5) and summ["prefers_rejected"] == pytest.approx(1 / 5)
    assert summ["agreement_ties_half"] == pytest.approx(3.5 / 5)
    assert summ["agreement_decisive"] == pytest.approx(3 / 4) and summ["n_decisive"] == 4
    assert summ["length_baseline_accuracy"] == pytest.approx(3.5 / 5)   # equal lengths count 1/2
    assert summ["position_consistency"] == 1.0 and summ["first_position_rate"] == 0.5
    assert summ["sign_test_p"] == pytest.approx(sign_test(3, 1))
    lo, hi = summ["agreement_ci95"]
    assert lo <= 0.6 <= hi and lo < hi                               # 4 prompts: a real interval
    assert summ["template"]["name"] == "pairwise-ja" and summ["template"]["hash"] == \
        load_judge_template("builtin:pairwise-ja").hash
    assert summ["judge"]["model"] == "judge-model" and summ["judge"]["sampling"]["temperature"] == 0.0
    assert set(summ["unparseable"].values()) == {0}
    # one row per pair, ids to join a reward model's choices on, both raw verdicts kept
    assert [r["pair_id"] for r in rows] == [p.id for p in pairs]
    assert [r["verdict"] for r in rows] == ["chosen", "rejected", "chosen", "tie", "chosen"]
    assert rows[1]["chosen_first"] == rows[1]["rejected_first"] == "rejected"
    assert rows[0]["prompt_id"] == rows[1]["prompt_id"] != rows[2]["prompt_id"]
    assert "[[A]]" in rows[0]["explanation_chosen_first"] and "[[B]]" in rows[0]["explanation_rejected_first"]
    assert "agreement with the labels 0.600" in capsys.readouterr().out
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "longer-wins baseline" in md and "0.700" in md
    assert (out / "report.html").is_file()


def test_position_biased_judge_gives_all_ties(tmp_path):
    pair_file(tmp_path / "pairs.jsonl", GOOD)
    out = tmp_path / "out"
    with JudgeServer("always_a") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
    summ, rows = read(out)
    assert summ["agreement"] == 0.0 and summ["tie_rate"] == 1.0 and summ["agreement_ties_half"] == 0.5
    assert summ["position_consistency"] == 0.0 and summ["first_position_rate"] == 1.0
    assert summ["agreement_decisive"] is None and summ["n_decisive"] == 0
    assert all(r["chosen_first"] == "chosen" and r["rejected_first"] == "rejected" for r in rows)


def test_malformed_answers_are_counted_not_fatal(tmp_path):
    pair_file(tmp_path / "pairs.jsonl", GOOD + BAD)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        sent = s.completions
        # an empty answer is not cached: the rerun (same server: the cache is per server) asks those two again
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions - sent == 2
    summ, rows = read(out)
    # every malformed pair fails in both orders: two answers each, by reason
    assert summ["unparseable"] == {"empty": 2, "truncated": 2, "no_verdict": 2, "unknown_verdict": 0,
                                   "conflicting_verdicts": 2, "score_out_of_range": 0}
    assert summ["n_pairs"] == 9 and summ["n_judged"] == 5 and summ["n_unparseable_pairs"] == 4
    assert summ["agreement"] == pytest.approx(3 / 5)                # excluded from the rates
    assert summ["length_baseline_accuracy"] == pytest.approx(3.5 / 5)   # on the same 5 pairs
    assert summ["length_baseline_accuracy_all_pairs"] == pytest.approx((3.5 + 4) / 9)  # BAD: chosen longer
    assert [r["verdict"] for r in rows[5:]] == [None] * 4 and rows[8]["unparseable"] == ["truncated"] * 2
    assert "could not be read" in (out / "report.md").read_text(encoding="utf-8")


def test_unreadable_input_rows_are_counted_and_listed(tmp_path):
    f = tmp_path / "pairs.jsonl"
    pair_file(f, GOOD)
    f.write_text(f.read_text(encoding="utf-8") + '{"prompt": "q", "chosen": \n', encoding="utf-8")
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(f)) == 0
    summ, rows = read(out)
    assert summ["input_rows_rejected"] == 1 and summ["n_pairs"] == 5 and "_rejects" not in summ
    rej = [json.loads(x) for x in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rej) == 1 and rej[0]["line"] == 6 and rej[0]["reason"] == "malformed_json"
    assert "could not be read as preference pairs" in (out / "report.md").read_text(encoding="utf-8")


def test_grade_pairs_score_out_of_range(tmp_path):
    pair_file(tmp_path / "pairs.jsonl", GOOD + [("質問E", "SCORE11 の回答", "普通")])
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"), "--mode", "grade") == 0
        assert s.completions == 12
    summ, rows = read(out)
    assert summ["unparseable"]["score_out_of_range"] == 1 and summ["n_judged"] == 5
    # scores are min(10, characters): chosen 10, 5, 10, 4, 10; rejected 2, 9, 1, 4, 2
    assert summ["mean_score_chosen"] == pytest.approx(39 / 5) and summ["mean_score_rejected"] == pytest.approx(18 / 5)
    assert summ["agreement"] == pytest.approx(3 / 5) and summ["tie_rate"] == pytest.approx(1 / 5)
    assert rows[5]["score_chosen"] is None and rows[5]["score_rejected"] == 2.0
    assert summ["template"]["name"] == "grade-ja"


def test_cache_rerun_and_resume_send_nothing_twice(tmp_path):
    pair_file(tmp_path / "pairs.jsonl", GOOD)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        # an interrupted run: only the first 2 pairs were judged
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"), "--limit", "2") == 0
        assert s.completions == 4
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 10                                # only the 3 missing pairs x 2
        first, rows1 = read(out)
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 10                                # the rerun sent no request
    again, rows2 = read(out)
    assert again["requests_sent"] == 0 and again["cache_hits"] == 10 and rows1 == rows2
    assert {k: v for k, v in again.items() if k not in ("requests_sent", "cache_hits")} == \
        {k: v for k, v in first.items() if k not in ("requests_sent", "cache_hits")}
    # another template (another hash) is another cache key: asked again
    custom = tmp_path / "mine.yaml"
    custom.write_text((builtin_judge_dir() / "pairwise-ja.yaml").read_text(encoding="utf-8")
                      .replace("公平で厳正な審査員", "厳しい審査員"), encoding="utf-8")
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"), "--template", str(custom)) == 0
        assert s.completions == 10
    mine, _ = read(out)
    assert mine["template"]["hash"] != first["template"]["hash"] and mine["template"]["path"] == str(custom)


def test_interrupted_by_a_dying_server_resumes(tmp_path, capsys):
    # 70 pairs = 140 requests: the first engine call (64 requests) is answered and cached, then the
    # server fails every request; the run stops with one error, and the rerun sends only the rest
    rows = [(f"質問{i}", "長い回答" * (1 + i % 3), "短") for i in range(70)]
    pair_file(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        s.fail_after = 64
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 2
        assert s.completions == 64
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "HTTP 500" in err and "rerun the same command" in err
        assert not (out / "judge.json").exists()
        s.fail_after = None                                       # the server is back
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 140
    summ, _ = read(out)
    assert summ["requests_sent"] == 76 and summ["cache_hits"] == 64 and summ["agreement"] == 1.0


def test_a_server_that_dies_inside_a_chunk_keeps_the_answers_it_gave(tmp_path, capsys):
    """The answers of the chunk that failed were dropped: a server dying after request 100 of 140 cost a
    rerun 76 requests, not 40 (paid twice against a hosted API)."""
    rows = [(f"質問{i}", "長い回答" * (1 + i % 3), "短") for i in range(70)]
    pair_file(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        s.fail_after, s.fail_status = 100, 401
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 2
        assert s.completions == 100
        capsys.readouterr()
        s.fail_after = None
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 140
    summ, _ = read(out)
    assert summ["cache_hits"] == 100 and summ["agreement"] == 1.0


def test_pairs_from_another_source(tmp_path):
    # any layout the data layer reads: the hh-rlhf sample shipped with jprefs (multi-turn prompts)
    from jprefs.data.adapters import convert
    from jprefs.data.schema import expand_pairs

    src = REPO / "jprefs" / "resources" / "samples" / "hh-rlhf.jsonl"
    want = list(expand_pairs(convert(src, source="hh-rlhf", strict=False).records))[:3]
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(src), "--source", "hh-rlhf", "--limit", "3") == 0
        assert s.completions == 6
    summ, rows = read(out)
    assert summ["n_pairs"] == 3 and summ["source"] == "hh-rlhf"
    assert [r["pair_id"] for r in rows] == [p.id for p in want]
    longer = [len(p.chosen) > len(p.rejected) for p in want]
    assert [r["verdict"] == "chosen" for r in rows] == longer


# ---------------------------------------------------------------- --samples

SAMPLES = [  # (prompt_id, sample, {policy: response}); policies in file order ppo, dpo, sft
    ("p1", 0, {"ppo": "長い回答です。詳しく説明します。", "dpo": "中くらい", "sft": "短い"}),   # ppo wins
    ("p2", 0, {"ppo": "あいうえ", "dpo": "か", "sft": "かきくけ"}),                           # tie
    ("p3", 0, {"ppo": "短", "dpo": "かなり長めの回答", "sft": "こちらが長い回答"}),             # ppo loses
    ("p4", 0, {"ppo": "とても長い回答になります", "dpo": "ふつう", "sft": "短い回答"}),          # ppo wins
    ("p4", 1, {"ppo": "長めの回答です", "dpo": "ふつうの", "sft": "ん"}),                      # ppo wins
]


def samples_file(path: Path) -> Path:
    rows = []
    for pid, k, answers in SAMPLES:
        for pol, resp in answers.items():
            rows.append({"prompt_id": pid, "prompt": f"質問{pid}", "category": "writing", "policy": pol,
                         "sample": k, "seed": k, "response": resp, "reward": None})
    write_jsonl(path, rows)
    return path


def test_samples_win_tie_loss_first_vs_last(tmp_path, capsys):
    f = samples_file(tmp_path / "samples.jsonl")
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--samples", str(f)) == 0
        assert s.completions == 10
    summ, rows = read(out)
    assert (summ["a"], summ["b"]) == ("ppo", "sft")              # default: first policy vs the last
    w = summ["win_tie_loss"]
    assert (w["wins"], w["ties"], w["losses"]) == (3, 1, 1)
    assert w["win"] == pytest.approx(0.6) and w["at_least_as_good"] == pytest.approx(0.8)
    assert w["sign_test_p"] == pytest.approx(sign_test(3, 1)) == pytest.approx(0.625)
    assert w["win_ci95"][0] <= 0.6 <= w["win_ci95"][1]
    assert [(r["prompt_id"], r["sample"], r["winner"], r["outcome"]) for r in rows] == [
        ("p1", 0, "ppo", 1), ("p2", 0, "tie", 0), ("p3", 0, "sft", -1), ("p4", 0, "ppo", 1), ("p4", 1, "ppo", 1)]
    assert "ppo vs sft: win 0.600" in capsys.readouterr().out
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--samples", str(f), "--a", "dpo", "--b", "ppo") == 0
    summ, _ = read(out)
    # dpo vs ppo: p1 loses (4 < 16), p2 loses, p3 wins, p4/0 loses, p4/1 loses (4 < 7)
    assert (summ["win_tie_loss"]["wins"], summ["win_tie_loss"]["losses"]) == (1, 4)


def test_samples_default_b_is_the_baseline(tmp_path):
    f = samples_file(tmp_path / "samples.jsonl")
    rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r["baseline"] = r["policy"] == "dpo"        # the row flag `jprefs eval policy` writes
    write_jsonl(f, rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--samples", str(f), "--limit", "2") == 0
        assert s.completions == 4                   # --limit 2: the first two prompts
    summ, _ = read(out)
    # ppo vs dpo on p1 (16 > 4 characters) and p2 (4 > 1): two wins
    assert (summ["a"], summ["b"], summ["n_prompts"]) == ("ppo", "dpo", 2)
    assert summ["win_tie_loss"]["wins"] == 2 and summ["position_consistency"] == 1.0


def test_samples_grade_every_policy(tmp_path):
    f = samples_file(tmp_path / "samples.jsonl")
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--samples", str(f), "--mode", "grade") == 0
        assert s.completions == 15
    summ, rows = read(out)
    pol = summ["policies"]
    assert list(pol) == ["ppo", "dpo", "sft"]
    # min(10, characters): ppo 10, 4, 1, 10, 7; dpo 4, 1, 8, 3, 4; sft 2, 4, 8, 4, 1
    assert pol["ppo"]["mean_score"] == pytest.approx(32 / 5)
    assert pol["dpo"]["mean_score"] == pytest.approx(20 / 5)
    assert pol["sft"]["mean_score"] == pytest.approx(19 / 5)
    assert pol["ppo"]["n_graded"] == 5 and pol["ppo"]["n_unparseable"] == 0
    assert len(rows) == 15 and rows[0]["policy"] == "ppo" and rows[0]["score"] == 10.0


# ---------------------------------------------------------------- secrets, bad input

def test_api_key_never_in_outputs(tmp_path, monkeypatch, capsys):
    key = "sk-jprefs-test-7f3a9c21"
    monkeypatch.setenv("JUDGE_TEST_KEY", key)
    pair_file(tmp_path / "pairs.jsonl", GOOD + BAD[:1])
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"),
                         "--api-key-env", "JUDGE_TEST_KEY") == 0
        assert s.auth and set(s.auth) == {f"Bearer {key}"}          # the key was used ...
    captured = capsys.readouterr()
    assert key not in captured.out + captured.err                    # ... and never shown
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    assert json.loads((out / "judge.json").read_text())["judge"]["api_key_env"] == "JUDGE_TEST_KEY"
    # a credential in the URL (user:password@host) goes out as basic auth and is masked everywhere
    password = "pw-url-secret-91d2"
    out2 = tmp_path / "out2"
    with JudgeServer("longer") as s:
        url = s.base_url.replace("http://", f"http://judge:{password}@")
        assert judge_cli(url, out2, "--pairs", str(tmp_path / "pairs.jsonl"), "--limit", "2") == 0
        assert s.auth[0].startswith("Basic ")
    captured = capsys.readouterr()
    assert password not in captured.out + captured.err
    for p in (x for x in out2.rglob("*") if x.is_file()):
        assert password.encode() not in p.read_bytes(), p
    assert "judge:***@" in json.loads((out2 / "judge.json").read_text())["judge"]["base_url"]


def test_bad_input_is_one_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert judge_cli("http://127.0.0.1:9/v1", out, "--pairs", str(tmp_path / "nope.jsonl")) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "nope.jsonl" in err and "Traceback" not in err
    assert not out.exists()                                          # nothing written for a bad input
    pair_file(tmp_path / "pairs.jsonl", GOOD)
    assert judge_cli("http://127.0.0.1:9/v1", out, "--pairs", str(tmp_path / "pairs.jsonl"),
                     "--samples", str(tmp_path / "pairs.jsonl")) == 2
    assert "exactly one of" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    assert judge_cli("http://127.0.0.1:9/v1", out, "--samples", str(tmp_path / "empty.jsonl")) == 2
    assert "empty" in capsys.readouterr().err
    f = samples_file(tmp_path / "samples.jsonl")
    assert judge_cli("http://127.0.0.1:9/v1", out, "--samples", str(f), "--a", "nobody") == 2
    assert "ppo, dpo, sft" in capsys.readouterr().err
    assert not out.exists()
    lines = f.read_text(encoding="utf-8").splitlines()
    (tmp_path / "dup.jsonl").write_text("\n".join(lines + lines[:1]) + "\n", encoding="utf-8")
    assert judge_cli("http://127.0.0.1:9/v1", out, "--samples", str(tmp_path / "dup.jsonl")) == 2
    assert f"line {len(lines) + 1}" in capsys.readouterr().err
    # the server is down: refused in seconds, before any request, one error line
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.monotonic()
    assert judge_cli(f"http://127.0.0.1:{port}/v1", out, "--pairs", str(tmp_path / "pairs.jsonl")) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 10
    assert err.count("error:") == 1 and "connection refused" in err and "Traceback" not in err


def test_one_writer_per_output_folder(tmp_path, capsys):
    pair_file(tmp_path / "pairs.jsonl", GOOD)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        with RunLock(out, "jprefs eval judge"):
            import threading

            rc = []
            t = threading.Thread(target=lambda: rc.append(judge_cli(s.base_url, out, "--pairs",
                                                                    str(tmp_path / "pairs.jsonl"))))
            t.start()
            t.join()
        assert rc == [2] and s.completions == 0
    assert "writing to" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "judge", "--help"])
    text = capsys.readouterr().out
    assert "vllm serve Qwen/Qwen2.5-7B-Instruct" in text and "--samples" in text and "examples:" in text


# ---------------------------------------------------------------- strict verdicts, cache identity, counts

@pytest.mark.parametrize("mode,text,want", [
    # a score is digits, nothing else: float() read these as 10, 10, 8, 8
    ("grade", "理由\n[[1_0]]", (None, "unknown_verdict")),
    ("grade", "[[1e1]]", (None, "unknown_verdict")),
    ("grade", "[[٨]]", (None, "unknown_verdict")),                  # Arabic-Indic eight
    ("grade", "[[+8]]", (None, "unknown_verdict")),
    ("grade", "[[nan]]", (None, "unknown_verdict")),
    ("grade", "[[８]]", (8.0, None)),                               # full-width digits are digits
    ("grade", "評価: [[7]]と[[x]]", (None, "unknown_verdict")),       # a stray marker on the verdict line
    # a malformed verdict line never falls back to a marker quoted earlier
    ("grade", "点数は[[5]]のように書きます。\n評価: [[1_0]]", (None, "unknown_verdict")),
    ("pairwise", "形式は[[A]]です。\n判定: [[A B]]", (None, "unknown_verdict")),
    ("pairwise", "[[A]]か[[D]]", (None, "unknown_verdict")),
    ("pairwise", "[[10]]", (None, "unknown_verdict")),
    ("pairwise", "[[A B]]", (None, "unknown_verdict")),
    ("pairwise", "理由。\n[[Ｂ]]", ("b", None)),
])
def test_a_malformed_verdict_token_is_unreadable_never_a_verdict(mode, text, want):
    assert load_judge_template(f"builtin:{mode}-ja").parse(text) == want


def test_decimal_scores_are_read_as_fastchat_reads_them():
    g = load_judge_template("builtin:grade-ja")
    assert g.parse("[[7.5]]") == (7.5, None) and g.parse("評価: [[1.0]]") == (1.0, None)
    assert g.parse("[[.5]]") == (None, "unknown_verdict") and g.parse("[[7.]]") == (None, "unknown_verdict")
    assert g.parse("[[10.5]]") == (None, "score_out_of_range")


def test_malformed_verdicts_from_the_server_are_counted(tmp_path):
    pair_file(tmp_path / "pairs.jsonl", GOOD + [("質問M", "MALFORMED を含む回答", "普通")])
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        summ, rows = read(out)
        assert rows[5]["verdict"] is None and summ["unparseable"]["unknown_verdict"] == 2
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"), "--mode", "grade") == 0
        summ, rows = read(out)
        assert rows[5]["score_chosen"] is None and summ["unparseable"]["unknown_verdict"] == 1
        assert summ["n_judged"] == 5 and summ["n_unparseable_pairs"] == 1


def test_the_cache_is_per_server_model_and_sampling(tmp_path):
    from jprefs.eval.judge import endpoint_identity

    cache = tmp_path / "cache"
    q, a, b = ["質問"], ["短い"], ["とても長い回答"]
    with JudgeServer("longer") as s1, JudgeServer("always_a") as s2:
        with Judge("judge-model", s1.base_url, cache_dir=cache, show_progress=False, max_retries=0) as j:
            assert pairwise(j, q, a, b)[0].winner == "b" and s1.completions == 2
        # the same model name on another server: its own answers, not the first server's
        with Judge("judge-model", s2.base_url, cache_dir=cache, show_progress=False, max_retries=0) as j:
            assert pairwise(j, q, a, b)[0].winner == "tie" and s2.completions == 2 and j.cache_hits == 0
        # the first server again (its URL written another way): answered from the cache
        with Judge("judge-model", s1.base_url + "/", cache_dir=cache, show_progress=False) as j:
            assert pairwise(j, q, a, b)[0].winner == "b" and j.cache_hits == 2 and s1.completions == 2
        # anything that changes the answer is another key
        for kw in ({"max_tokens": 99}, {"temperature": 0.7}, {"seed": 1}):
            with Judge("judge-model", s1.base_url, cache_dir=cache, show_progress=False, **kw) as j:
                pairwise(j, q, a, b)
                assert j.cache_hits == 0, kw
        with Judge("other-model", s1.base_url, cache_dir=cache, show_progress=False) as j:
            pairwise(j, q, a, b)
            assert j.cache_hits == 0
        # a request asked twice in one call is sent once; the other counts as answered without a request
        with Judge("judge-model", s1.base_url, show_progress=False) as j:
            pairwise(j, q * 2, a * 2, b * 2)
            assert (j.requests_sent, j.cache_hits) == (2, 2)
    # a credential is never part of the key; the same server with another password is the same server
    assert endpoint_identity("http://u:pw-1@127.0.0.1:8000/v1") == endpoint_identity("http://127.0.0.1:8000/v1/")
    assert "KEY" not in endpoint_identity("https://api.example/v1?api_key=KEY")
    # an old cache (keys without the server) loads and simply misses
    (cache / "chunk-judge-999999-1.jsonl").write_text(json.dumps({"k": "0" * 32, "t": "[[A]]", "f": "stop"}) + "\n",
                                                      encoding="utf-8")
    with JudgeServer("longer") as s, Judge("judge-model", s.base_url, cache_dir=cache, show_progress=False) as j:
        assert pairwise(j, q, a, b)[0].winner == "b" and j.cache_hits == 0 and s.completions == 2


def test_first_position_rate_counts_only_judged_comparisons(tmp_path):
    from jprefs.eval.judge import Verdict, pairwise_summary

    # a comparison whose other order is unreadable adds its lone "A" to nothing
    v = [Verdict("tie", "a", "b", False, [], "", ""), Verdict(None, "a", None, None, ["no_verdict"], "", "")]
    s = pairwise_summary(v, ["p", "q"])
    assert s["first_position_rate"] == 1.0 and s["first_position_n"] == 2 and s["n_judged"] == 1
    # end to end: the longer-wins judge has no position bias (0.5 over the 4 decisive judged pairs x 2
    # orders); the FIRSTBAD pair's readable order picked the answer shown second and must not count
    pair_file(tmp_path / "pairs.jsonl", GOOD + [("質問F", "FIRSTBAD を含むとても長い回答", "短")])
    out = tmp_path / "out"
    with JudgeServer("longer") as srv:
        assert judge_cli(srv.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
    summ, rows = read(out)
    assert rows[5]["chosen_first"] is None and rows[5]["rejected_first"] == "chosen"
    assert summ["first_position_rate"] == 0.5 and summ["first_position_n"] == 8 == 2 * summ["n_decisive"]
    assert summ["first_position_n"] <= 2 * summ["n_judged"]
    assert "(n = 8)" in (out / "report.md").read_text(encoding="utf-8")


def test_a_refused_request_is_that_items_failure(tmp_path, monkeypatch, capsys):
    key = "sk-judge-refused-5e1b"
    monkeypatch.setenv("JUDGE_TEST_KEY", key)
    pair_file(tmp_path / "pairs.jsonl", GOOD + [("質問L", "TOOLONG な回答", "普通"), ("質問E", "EMPTY", "普通")])
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"),
                         "--api-key-env", "JUDGE_TEST_KEY") == 0
        assert s.completions == 12                                 # the other 6 pairs x 2 orders
        err = capsys.readouterr().err
        assert "WARNING: 2 of 14 judge requests (14%) failed" in err and "maximum context length" in err
        summ, rows = read(out)
        # every pair is judged, unreadable or failed, and the failures are listed with the server's message
        assert (summ["n_judged"], summ["n_unparseable_pairs"], summ["n_failed_pairs"]) == (5, 1, 1)
        assert summ["n_judged"] + summ["n_unparseable_pairs"] + summ["n_failed_pairs"] == summ["n_pairs"]
        assert summ["requests_failed"] == 2 and summ["unparseable"]["empty"] == 2
        assert summ["requests_sent"] + summ["cache_hits"] == summ["requests"] == 14
        assert summ["agreement"] == pytest.approx(3 / 5) and summ["warnings"]
        assert rows[5]["verdict"] is None and set(rows[5]["failed"]) == {"chosen_first", "rejected_first"}
        rej = [json.loads(x) for x in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [(r["pair_id"], r["reason"]) for r in rej] == [(rows[5]["pair_id"], "judge_request_failed")] * 2
        assert rej[0]["error"].startswith("HTTP 400:") and "maximum context length" in rej[0]["error"]
        assert "refused" in (out / "report.md").read_text(encoding="utf-8")
        for p in (x for x in out.rglob("*") if x.is_file()):
            assert key.encode() not in p.read_bytes(), p
        assert key not in err
        # a refused request is not cached: the rerun asks it (and the empty ones) again, nothing else
        sent = s.completions
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions - sent == 2 and read(out)[0]["requests_failed"] == 2
        # grade mode and --samples count them the same way
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"), "--mode", "grade") == 0
        summ, rows = read(out)
        assert (summ["n_judged"], summ["n_unparseable_pairs"], summ["n_failed_pairs"]) == (5, 1, 1)
        assert rows[5]["failed"] == {"chosen": rows[5]["failed"]["chosen"]} and summ["requests_failed"] == 1
        # every request refused: the outputs are written, then one clear error and a non-zero exit
        pair_file(tmp_path / "long.jsonl", [("質問", "TOOLONG 1", "TOOLONG 2")])
        capsys.readouterr()
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "long.jsonl")) == 2
    err = capsys.readouterr().err
    assert "all 2 judge requests failed" in err and "Traceback" not in err and err.count("error:") == 1
    summ, _ = read(out)
    assert summ["n_failed_pairs"] == 1 and summ["requests_failed"] == 2


def test_refused_requests_in_samples_and_the_policy_judge(tmp_path):
    from jprefs.eval.policy import llm_judge_metrics

    f = samples_file(tmp_path / "samples.jsonl")
    rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
    rows[0]["response"] = "TOOLONG " + rows[0]["response"]            # ppo on p1
    write_jsonl(f, rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--samples", str(f)) == 0
        summ, jrows = read(out)
        assert (summ["n_judged"], summ["n_unparseable_comparisons"], summ["n_failed_comparisons"]) == (4, 0, 1)
        assert jrows[0]["winner"] is None and set(jrows[0]["failed"]) == {"a_first", "b_first"}
        assert judge_cli(s.base_url, out, "--samples", str(f), "--mode", "grade") == 0
        summ, jrows = read(out)
        assert summ["policies"]["ppo"]["n_failed"] == 1 and summ["policies"]["ppo"]["n_graded"] == 4
        assert jrows[0]["failed"].startswith("HTTP 400") and summ["requests_failed"] == 1
        # the judge of `jprefs eval policy`: the same counts, the failure on the row
        by: dict[str, list[dict]] = {}
        for r in rows:
            by.setdefault(r["policy"], []).append(dict(r))
        with Judge("judge-model", s.base_url, show_progress=False, max_retries=0) as j:
            m = llm_judge_metrics(j, "pairwise", by, "sft")
        ppo = m["policies"]["ppo"]
        assert (ppo["n_judged"], ppo["n_unparseable"], ppo["n_failed"]) == (4, 0, 1) and m["requests_failed"] == 2
        assert by["ppo"][0]["llm_judge"]["winner"] is None and by["ppo"][0]["llm_judge"]["failed"]


# ---------------------------------------------------------------- a refusal of the run's setup stops early

def test_a_setup_refusal_stops_after_the_first_requests_and_the_rerun_continues(tmp_path, capsys):
    """A sampling value the server rejects refuses every request: the judge sent all 80 before saying so
    (thousands against a paid API). It stops after the first SETUP_PROBE, names the status, the message and
    the fix; ids and numbers in the message do not make refusals look different."""
    from jprefs.eval.judge import SETUP_PROBE

    rows = [(f"質問{i}", "長い回答" * (1 + i % 3), "短") for i in range(40)]
    pair_file(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        s.reject = (400, "Invalid value for 'temperature' at request {n} (request id req_{id})")
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 2
        assert s.refused == SETUP_PROBE == 8                      # of 80
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "Traceback" not in err
        assert f"first {SETUP_PROBE} requests" in err and "HTTP 400" in err and "temperature" in err
        assert "fix: a sampling value the server accepts" in err and "rerun the same command" in err
        assert not (out / "judge.json").exists() and s.completions == 0
        s.reject = None                                           # the setup fixed: the rerun judges everything
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 80
    summ, _ = read(out)
    assert summ["requests_failed"] == 0 and summ["requests_sent"] == 80 and summ["agreement"] == 1.0


def test_a_setup_refusal_keeps_the_cache_and_the_rerun_asks_only_the_rest(tmp_path, capsys):
    """Answers of an earlier run are kept and not asked again; the stopped run sent only the first 8 of the
    30 missing requests; the rerun after the fix asks exactly the 30 (cache and counts agree)."""
    rows = [(f"質問{i}", "長い回答" * (1 + i % 3), "短") for i in range(20)]
    pair_file(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl"), "--limit", "5") == 0
        assert s.completions == 10
        s.reject = (422, "The model `judge-modle` does not exist.")
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 2
        err = capsys.readouterr().err
        assert "HTTP 422" in err and "does not exist" in err and "--judge MODEL" in err
        assert "8 sent, 8 refused" in err and s.refused == 8 and s.completions == 10
        s.reject = None
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 40
    summ, _ = read(out)
    assert summ["cache_hits"] == 10 and summ["requests_sent"] == 30 and summ["requests_failed"] == 0


def test_refusals_among_answers_stay_per_item(tmp_path):
    """Over-long prompts here and there, 28 requests in all, beside answered ones among the 8 the setup check
    asks first: each refusal is its item's failure and the run goes on (the 8 must all be refused alike)."""
    rows = ([(f"長{i}", "TOOLONG な回答", "普通") for i in range(7)] + [("質問", "長い回答です", "短")]
            + [(f"長{i}", "TOOLONG な回答", "普通") for i in range(7, 14)]
            + [(f"q{i}", "長い回答", "短") for i in range(3)])
    pair_file(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 8
    summ, _ = read(out)
    assert summ["requests_failed"] == 28 and summ["n_failed_pairs"] == 14 and summ["n_judged"] == 4


def test_over_long_prompts_first_in_the_file_do_not_stop_the_run(tmp_path):
    """The setup check asks the shortest requests first: a file whose first 8 pairs are over-long prompts
    (refused alike: context length) is judged, those pairs counted as failed, not stopped as a bad setup."""
    rows = ([(f"長い質問{i}" * 40, "TOOLONG な回答" * 20, "普通") for i in range(8)]
            + [(f"q{i}", "長い回答です", "短") for i in range(8)])
    pair_file(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    with JudgeServer("longer") as s:
        assert judge_cli(s.base_url, out, "--pairs", str(tmp_path / "pairs.jsonl")) == 0
        assert s.completions == 16
    summ, _ = read(out)
    assert summ["requests_failed"] == 16 and summ["n_failed_pairs"] == 8 and summ["n_judged"] == 8


def test_setup_refusal_in_the_api_and_its_signature():
    from jprefs.eval.judge import refusal_signature
    from jprefs.translate.engines import EngineError

    same = [refusal_signature(f"HTTP 400: {{\"error\": \"max_tokens {n} too large, request 9f{n}a3c41d7e\"}}")
            for n in (1, 4096)]
    assert same[0] == same[1] and refusal_signature("HTTP 422: max_tokens 1 too large") != \
        refusal_signature("HTTP 400: max_tokens 1 too large")
    with JudgeServer("longer") as s:
        s.reject = (400, "max_tokens must be at most 4096, got 99999")
        with Judge("judge-model", s.base_url, show_progress=False, max_retries=0) as j:
            with pytest.raises(EngineError, match="--max-tokens") as e:
                grade(j, [f"質問{i}" for i in range(30)], ["回答"] * 30)
            assert j.requests_sent == j.requests_failed == s.refused == 8 and "99999" in str(e.value)
        # setup_probe=0: every request is sent and is its item's failure, as before
        s.refused = 0
        with Judge("judge-model", s.base_url, show_progress=False, max_retries=0, setup_probe=0) as j:
            gs = grade(j, [f"問{i}" for i in range(30)], ["回答"] * 30)
        assert s.refused == 30 and all(g.failed for g in gs)


def test_the_policy_judge_refuses_rows_that_do_not_pair_with_the_baseline(tmp_path):
    """A policy row with no baseline row was silently left out of the judge's figures. One `jprefs eval
    policy` run cannot make one (see _check_paired), so a caller that does gets an error, before any request."""
    from jprefs.eval.policy import llm_judge_metrics

    f = samples_file(tmp_path / "samples.jsonl")
    by: dict[str, list[dict]] = {}
    for r in (json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()):
        by.setdefault(r["policy"], []).append(r)
    by["sft"] = [r for r in by["sft"] if r["prompt_id"] != "p3"]         # the baseline lacks (p3, 0)
    with Judge("judge-model", "http://127.0.0.1:9/v1", show_progress=False, max_retries=0) as j:
        with pytest.raises(ValueError, match=r"1 ppo rows have no baseline row.*\('p3', 0\)"):
            llm_judge_metrics(j, "pairwise", by, "sft")
        by["sft"].append(dict(by["sft"][0]))                                 # and a duplicate
        with pytest.raises(ValueError, match="1 duplicate keys"):
            llm_judge_metrics(j, "pairwise", by, "sft")
        assert j.requests_sent == 0
