"""``jprefs data rm-pairs``: candidates scored by a reward -> preference pairs.

A hand-written candidates file scored by :func:`toy_reward` (``良`` +1, ``悪`` -1 per character),
so every score, pair, margin and reject below is worked out by hand: the three pairing rules,
ties at the top and bottom, duplicates and empty responses, ``--min-margin``, bad rows, weights
of several rewards, what the reward is given, and the counts adding up. Then the loop end to end
on a tiny policy: ``jprefs rl`` (SFT) -> ``jprefs label candidates`` -> ``jprefs data rm-pairs`` ->
``jprefs rl rl/recipes/dpo-tiny-cpu.yaml data=pairs.jsonl`` (trl's DPOTrainer reads the pairs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jprefs.cli import main
from jprefs.data.rm_pairs import choose_pairs, rank_order

REPO = Path(__file__).resolve().parents[2]
TOY = "tests.data.test_rm_pairs:toy_reward"
SEEN: list = []


def toy_reward(prompts, responses):
    """+1 per 良, -1 per 悪 in the response (the prompt is ignored)."""
    return [float(r.count("良") - r.count("悪")) for r in responses]


def length_reward(prompts, responses):
    return [float(len(r)) for r in responses]


def recording_reward(prompts, responses):
    """toy_reward, remembering the prompts it was given."""
    SEEN.extend(prompts)
    return toy_reward(prompts, responses)


def nan_reward(prompts, responses):
    return [float("nan")] * len(responses)


CAND_META = {"model": "runs/sft", "model_digest": "sha256-sampled:abc", "k": 4, "seeds": [0, 0, 0, 0]}
ROWS = [
    # r0 scores [2, -1, 1, 0]
    {"id": "r0", "prompt": [{"role": "user", "content": "今日は"}], "responses": ["良い良い", "悪い", "良い", "普通"],
     "source": "jprefs-candidates", "license": "cc-by-4.0", "meta": {"category": "c0", "candidates": CAND_META}},
    # r1: "" and a full-width space are empty, responses[3] repeats [0]: scored [0] = 1 and [2] = -2
    {"id": "r1", "prompt": "明日は", "responses": ["良", "", "悪悪", "良", "\u3000"]},
    {"id": "r2", "prompt": "x", "responses": ["普通1", "普通2"]},             # tied_scores
    {"id": "r3", "prompt": "x", "responses": ["良", "普通"]},                 # margin 1
    {"id": "r4", "prompt": "x", "responses": ["良", " "]},                    # fewer_than_2_responses
    {"id": "r5", "prompt": "x", "responses": ["良 い", "良\u3000い", "良  い"]},  # identical after NFKC + spaces
    "not json",                                                            # malformed_json
    {"id": "r7", "prompt": "x"},                                           # missing_field
    {"id": "r8", "prompt": "x", "responses": "良"},                        # bad_responses
    {"id": "r9", "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
     "responses": ["良", "悪"]},                                           # prompt_not_ending_with_user
    # a canonical rank list (its order is ignored: the reward decides): chosen index 1
    {"id": "r10", "prompt": [{"role": "user", "content": "質問"}], "responses": ["悪", "良"], "source": "mine",
     "source_id": "s10", "license": "mit", "meta": {}},
    {"id": "r11", "prompt": "x", "responses": ["良a", "良b", "悪"]},           # tie at the top: chosen 0
    {"id": "r12", "prompt": "x", "responses": ["良", "悪x", "悪y"]},           # tie at the bottom: rejected 1
]
REASONS = {"tied_scores": 1, "fewer_than_2_responses": 1, "identical_responses": 1, "malformed_json": 1,
           "missing_field": 1, "bad_responses": 1, "prompt_not_ending_with_user": 1}


@pytest.fixture
def cands(tmp_path):
    p = tmp_path / "cands.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in ROWS),
                 encoding="utf-8")
    return p


def _run(cands, out, *extra, reward=TOY):
    rewards = [a for r in ([reward] if isinstance(reward, str) else reward) for a in ("--reward", r)]
    return main(["data", "rm-pairs", str(cands), *rewards, "-o", str(out), *extra])


def _jsonl(p):
    return [json.loads(x) for x in Path(p).read_text(encoding="utf-8").splitlines()]


def _pairs(out):
    return {(p["source_id"], p["meta"]["rm_pairs"]["chosen_index"], p["meta"]["rm_pairs"]["rejected_index"]): p
            for p in _jsonl(out)}


# ---------------------------------------------------------------- the rule

def test_choose_pairs_by_hand():
    s = [0.5, 2.0, -1.0, 2.0, -1.0]                     # ties at the top (1, 3) and the bottom (2, 4)
    assert rank_order(s) == [1, 3, 0, 2, 4]
    assert choose_pairs(s, "best-worst") == ([(1, 2)], {"tied": 0, "below_min_margin": 0})
    assert choose_pairs(s, "best-vs-rest") == ([(1, 0), (1, 2), (1, 4)], {"tied": 1, "below_min_margin": 0})
    kept, drop = choose_pairs(s, "all")
    assert kept == [(1, 0), (1, 2), (1, 4), (3, 0), (3, 2), (3, 4), (0, 2), (0, 4)]
    assert drop == {"tied": 2, "below_min_margin": 0} and len(kept) + 2 == 5 * 4 // 2
    assert choose_pairs(s, "all", min_margin=2.0) == ([(1, 2), (1, 4), (3, 2), (3, 4)],
                                                      {"tied": 2, "below_min_margin": 4})
    assert choose_pairs([1.0, 1.0], "best-worst") == ([], {"tied": 1, "below_min_margin": 0})


# ---------------------------------------------------------------- the command on the hand-written file

def test_best_worst_pairs_scores_and_counts(cands, tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert _run(cands, out) == 0
    pairs = _pairs(out)
    assert list(pairs) == [("r0", 0, 1), ("r1", 0, 2), ("r3", 0, 1), ("r10", 1, 0), ("r11", 0, 2), ("r12", 0, 1)]
    by_hand = {"r0": (2, -1), "r1": (1, -2), "r3": (1, 0), "r10": (1, -1), "r11": (1, -1), "r12": (1, -1)}
    for (sid, ci, ri), p in pairs.items():
        c, r = by_hand[sid]
        assert (p["chosen_score"], p["rejected_score"], p["margin"]) == (c, r, c - r)
        assert toy_reward([""], [p["chosen"]]) == [c] and toy_reward([""], [p["rejected"]]) == [r]
        assert p["source"] == "rm-pairs" and p["id"] == f"{sid}-{ci}-{ri}"
    p0 = pairs[("r0", 0, 1)]
    assert (p0["chosen"], p0["rejected"], p0["license"]) == ("良い良い", "悪い", "cc-by-4.0")
    assert p0["prompt"] == [{"role": "user", "content": "今日は"}] and p0["meta"]["category"] == "c0"
    rp = p0["meta"]["rm_pairs"]
    assert rp["scores"] == [2.0, -1.0, 1.0, 0.0] and rp["ranks"] == [0, 3, 1, 2]
    assert rp["candidates"] == CAND_META and "candidates" not in p0["meta"]
    assert rp["reward"] == [{"label": "toy_reward", "kind": "callable", "spec": TOY, "weight": 1.0}]
    assert rp["input_source"] == "jprefs-candidates" and rp["pairs"] == "best-worst"
    r1 = pairs[("r1", 0, 2)]["meta"]["rm_pairs"]
    assert r1["scores"] == [1.0, None, -2.0, None, None] and r1["ranks"] == [0, None, 1, None, None]
    assert r1["duplicate_of"] == [None, None, None, 0, None] and (r1["n_empty"], r1["n_duplicates"]) == (2, 1)
    assert pairs[("r1", 0, 2)]["license"] == "unknown" and pairs[("r10", 1, 0)]["license"] == "mit"

    rejects = _jsonl(tmp_path / "pairs.rejects.jsonl")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "tied_scores"), (5, "fewer_than_2_responses"), (6, "identical_responses"), (7, "malformed_json"),
        (8, "missing_field"), (9, "bad_responses"), (10, "prompt_not_ending_with_user")]
    assert rejects[0]["scores"] == [0.0, 0.0] and rejects[0]["raw"]["id"] == "r2"
    s = json.loads((tmp_path / "pairs.summary.json").read_text(encoding="utf-8"))
    assert s["rows_in"] == len(ROWS) == s["rows_paired"] + s["rows_rejected"] == 6 + 7
    assert s["rejects_by_reason"] == REASONS and s["pairs_out"] == 6
    # responses of the well-formed rows: 4 + 5 + 2 + 2 + 2 + 3 + 2 + 3 + 3; scored: of the rows that can pair
    assert s["responses"] == 26 and s["responses_empty"] == 3 and s["responses_duplicate"] == 1 + 2
    assert s["responses_scored"] == 4 + 2 + 2 + 2 + 2 + 3 + 3
    assert s["margin"]["mean"] == pytest.approx((3 + 3 + 1 + 2 + 2 + 2) / 6)
    # lengths chosen vs rejected: 4>2, 1<2, 1<2, 1=1, 2>1, 1<2
    assert s["length"]["chosen_longer_share"] == pytest.approx(2 / 6)
    assert s["length"]["chosen_shorter_share"] == pytest.approx(3 / 6)
    assert s["length"]["equal_length_share"] == pytest.approx(1 / 6)
    assert s["licenses"] == {"cc-by-4.0": 1, "mit": 1, "unknown": 4}
    assert s["scores"]["n"] == s["responses_scored"] and s["scores"]["max"] == 2.0 and s["scores"]["min"] == -2.0


def test_best_vs_rest_and_all(cands, tmp_path):
    assert _run(cands, tmp_path / "bvr.jsonl", "--pairs", "best-vs-rest") == 0
    assert list(_pairs(tmp_path / "bvr.jsonl")) == [
        ("r0", 0, 2), ("r0", 0, 3), ("r0", 0, 1), ("r1", 0, 2), ("r3", 0, 1), ("r10", 1, 0), ("r11", 0, 2),
        ("r12", 0, 1), ("r12", 0, 2)]
    # dropped: r11's (0, 1) and r2's only pair tie
    assert json.loads((tmp_path / "bvr.summary.json").read_text())["pairs_dropped"] == {"tied": 2, "below_min_margin": 0, "length_balance": 0, "over_max_pairs": 0}
    assert _run(cands, tmp_path / "all.jsonl", "--pairs", "all") == 0
    allp = _pairs(tmp_path / "all.jsonl")
    assert [k for k in allp if k[0] == "r0"] == [("r0", 0, 2), ("r0", 0, 3), ("r0", 0, 1), ("r0", 2, 3), ("r0", 2, 1),
                                                  ("r0", 3, 1)]
    assert len(allp) == 6 + 1 + 1 + 1 + 2 + 2
    assert all(p["margin"] > 0 and p["chosen_score"] - p["rejected_score"] == p["margin"] for p in allp.values())
    s = json.loads((tmp_path / "all.summary.json").read_text())
    assert s["pairs_dropped"] == {"tied": 3, "below_min_margin": 0, "length_balance": 0, "over_max_pairs": 0} and s["rows_paired"] == 6   # r2, r11, r12


def test_min_margin_rejects_and_drops(cands, tmp_path):
    out = tmp_path / "m.jsonl"
    assert _run(cands, out, "--min-margin", "2") == 0
    assert [k[0] for k in _pairs(out)] == ["r0", "r1", "r10", "r11", "r12"]
    rej = {r["raw"]["id"]: r for r in _jsonl(tmp_path / "m.rejects.jsonl") if isinstance(r["raw"], dict) and "id" in r["raw"]}
    assert rej["r3"]["reason"] == "below_min_margin" and rej["r3"]["scores"] == [1.0, 0.0]
    assert _run(cands, out, "--min-margin", "2", "--pairs", "best-vs-rest") == 0
    assert [k for k in _pairs(out) if k[0] == "r0"] == [("r0", 0, 3), ("r0", 0, 1)]      # (0, 2) has margin 1
    s = json.loads((tmp_path / "m.summary.json").read_text())
    assert s["pairs_dropped"] == {"tied": 2, "below_min_margin": 2, "length_balance": 0, "over_max_pairs": 0}      # r2, r11 (0, 1); r0 (0, 2), r3 (0, 1)
    assert s["rows_in"] == s["rows_paired"] + s["rows_rejected"] and s["rejects_by_reason"]["below_min_margin"] == 1


def test_weighted_rewards_and_what_the_reward_sees(cands, tmp_path):
    out = tmp_path / "w.jsonl"
    assert _run(cands, out, "--reward-weight", "1", "--reward-weight", "-0.5",
                reward=[f"toy={TOY}", "len=tests.data.test_rm_pairs:length_reward"]) == 0
    p0 = _pairs(out)[("r0", 0, 1)]        # toy - len/2: [2-2, -1-1, 1-1, 0-1] = [0, -2, 0, -1]
    rp = p0["meta"]["rm_pairs"]
    assert rp["scores"] == [0.0, -2.0, 0.0, -1.0]
    assert rp["scores_by_reward"] == {"toy": [2.0, -1.0, 1.0, 0.0], "len": [4.0, 2.0, 2.0, 2.0]}
    assert [r["weight"] for r in rp["reward"]] == [1.0, -0.5] and p0["margin"] == 2.0
    SEEN.clear()
    assert _run(cands, tmp_path / "a.jsonl", reward="tests.data.test_rm_pairs:recording_reward") == 0
    assert SEEN[:4] == ["今日は"] * 4                       # the prompt text (render_prompt), once per response
    SEEN.clear()
    assert _run(cands, tmp_path / "b.jsonl", "--reward-input", "response",
                reward="tests.data.test_rm_pairs:recording_reward") == 0
    assert SEEN and set(SEEN) == {""}
    a, b = _jsonl(tmp_path / "a.jsonl"), _jsonl(tmp_path / "b.jsonl")          # toy ignores the prompt
    assert [(p["chosen"], p["rejected"], p["margin"]) for p in a] == [(p["chosen"], p["rejected"], p["margin"]) for p in b]
    assert {p["meta"]["rm_pairs"]["reward_input"] for p in b} == {"response"}


def test_output_is_canonical_and_reruns_are_identical(cands, tmp_path, capsys):
    from jprefs.data.io import load_pairs

    out = tmp_path / "p.jsonl"
    assert _run(cands, out, "--pairs", "all", "--batch-size", "3") == 0
    first = out.read_bytes()
    assert _run(cands, out, "--pairs", "all", "--batch-size", "32") == 0       # batching changes nothing
    assert out.read_bytes() == first
    pairs = load_pairs(out)
    assert len(pairs) == 13 and all(p.margin == p.chosen_score - p.rejected_score > 0 for p in pairs)
    capsys.readouterr()
    assert main(["data", "stats", str(out), "--json", "--no-morphemes"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert json.dumps(stats).count("13") >= 1
    err = capsys.readouterr().err
    assert _run(cands, tmp_path / "q.jsonl") == 0
    err = capsys.readouterr().err
    assert "13 prompts = 6 paired (6 pairs, best-worst) + 7 rejected (bad_responses 1, " in err and "chosen longer 33%" in err and "/s)" in err


def test_an_unfinished_candidates_run_is_warned_about(cands, tmp_path, capsys):
    assert _run(cands, tmp_path / "p.jsonl") == 0
    assert json.loads((tmp_path / "p.summary.json").read_text())["candidates_run"] is None
    (tmp_path / "cands.jsonl.meta.json").write_text(json.dumps({"command": "jprefs label candidates ...",
                                                                "status": "interrupted", "counts": {"rows": 13}}))
    capsys.readouterr()
    assert _run(cands, tmp_path / "p.jsonl") == 0
    s = json.loads((tmp_path / "p.summary.json").read_text())
    assert s["candidates_run"]["status"] == "interrupted" and len(s["warnings"]) == 1
    assert "WARNING:" in capsys.readouterr().err and "'interrupted'" in s["warnings"][0]


def test_bad_input_is_one_clear_error(cands, tmp_path, capsys):
    capsys.readouterr()
    assert _run(tmp_path / "missing.jsonl", tmp_path / "o.jsonl") == 2
    assert "input file not found" in capsys.readouterr().err
    assert _run(cands, tmp_path / "o.jsonl", reward="no/such/rm") == 2
    assert "reward not found" in capsys.readouterr().err
    assert _run(cands, tmp_path / "o.jsonl", reward="tests.data.test_rm_pairs:nan_reward") == 2
    assert "non-finite or non-numeric value(s)" in capsys.readouterr().err
    assert _run(cands, tmp_path / "o.jsonl", "--reward-weight", "1", "--reward-weight", "2") == 2
    assert "2 --reward-weight for 1 --reward" in capsys.readouterr().err
    assert _run(cands, tmp_path / "o.parquet") == 2
    assert not (tmp_path / "o.jsonl").exists()
    (tmp_path / "nan.jsonl").write_text('{"id": "n", "prompt": "x", "responses": ["良", "悪"], "meta": {"t": NaN}}\n'
                                        '{"id": "ok", "prompt": "x", "responses": ["良", "悪"]}\n')
    assert _run(tmp_path / "nan.jsonl", tmp_path / "n.jsonl") == 0
    assert [r["reason"] for r in _jsonl(tmp_path / "n.rejects.jsonl")] == ["non_finite_number"]
    assert [p["source_id"] for p in _jsonl(tmp_path / "n.jsonl")] == ["ok"]
    # nothing pairs: the files are written, the exit status says so
    (tmp_path / "tied.jsonl").write_text(json.dumps({"id": "t", "prompt": "x", "responses": ["a", "b"]}) + "\n")
    assert _run(tmp_path / "tied.jsonl", tmp_path / "t.jsonl") == 2
    err = capsys.readouterr().err
    assert "no pairs from 1 rows (tied_scores 1)" in err and "Traceback" not in err
    assert _jsonl(tmp_path / "t.rejects.jsonl")[0]["reason"] == "tied_scores"


# ---------------------------------------------------------------- the loop end to end

def test_candidates_rm_pairs_dpo_end_to_end(tmp_path, one_torch_thread):
    """tiny SFT policy -> `jprefs label candidates` -> `jprefs data rm-pairs` -> `jprefs rl` DPO recipe."""
    pytest.importorskip("trl")
    import torch

    from jprefs.config import load_config
    from jprefs.data.io import load_pairs
    from jprefs.rl.config import RLConfig
    from jprefs.rl.runner import run as rl_run

    torch.set_num_threads(1)
    sft = tmp_path / "sft"
    rl_run(load_config(RLConfig, dict(tiny_n_embd=16, tiny_n_layer=1, tiny_n_head=2, tiny_vocab_size=300,
                                      max_new_tokens=4, eval_samples=1, torch_threads=1, seed=0, algo="sft",
                                      reward_type="none", sft_steps=10, sft_data="builtin:ja-tiny",
                                      sft_batch_size=8, sft_max_texts=40)), sft)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p, "license": "cc0-1.0"}, ensure_ascii=False)
                               + "\n" for i, p in enumerate(["今日は", "この店は", "旅行は", "映画は", "週末は", "先生は"])),
                       encoding="utf-8")
    cands = tmp_path / "cands.jsonl"
    assert main(["label", "candidates", "--model", str(sft), "--prompts", str(prompts), "-k", "4",
                 "--max-new-tokens", "8", "--batch-size", "8", "--seed", "1", "-o", str(cands)]) == 0
    out = tmp_path / "pairs.jsonl"
    # length breaks the lexicon's many ties (a random tiny model rarely writes a lexicon word)
    assert main(["data", "rm-pairs", str(cands), "--reward", "jprefs.rl.rewards:lexicon_sentiment",
                 "--reward", "len=tests.data.test_rm_pairs:length_reward", "--reward-weight", "1",
                 "--reward-weight", "0.01", "--pairs", "best-vs-rest", "-o", str(out)]) == 0
    s = json.loads((tmp_path / "pairs.summary.json").read_text(encoding="utf-8"))
    cand_rows = _jsonl(cands)
    assert s["rows_in"] == 6 == s["rows_paired"] + s["rows_rejected"]
    assert s["candidates_run"]["status"] == "complete" and s["candidates_run"]["counts"]["rows"] == 6
    assert s["candidates_run"]["command"].startswith("jprefs label candidates --model ")
    pairs = load_pairs(out)
    assert len(pairs) == s["pairs_out"] >= 4
    for p in pairs:
        row = next(r for r in cand_rows if r["id"] == p.source_id)
        rp = p.meta["rm_pairs"]
        assert p.chosen == row["responses"][rp["chosen_index"]] and p.rejected == row["responses"][rp["rejected_index"]]
        assert rp["candidates"]["model"] == str(sft) and rp["candidates"]["seeds"] == row["meta"]["candidates"]["seeds"]
        assert p.license == "cc0-1.0" and p.margin > 0
    dpo = tmp_path / "dpo"
    small = [f"data={out}", f"policy={sft / 'policy'}", "sft_steps=0", "total_steps=2", "eval_every=2",
             "eval_samples=1", "max_new_tokens=6", "batch_size=4", f"eval_prompts={prompts}"]
    assert main(["rl", str(REPO / "rl/recipes/dpo-tiny-cpu.yaml"), "-o", str(dpo), *small]) == 0
    summary = json.loads((dpo / "summary.json").read_text(encoding="utf-8"))
    assert summary["algo"] == "dpo" and "DPO" in summary["trainer"] and summary["rows"] == len(pairs)
    rows = [json.loads(x) for x in (dpo / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and "loss" in rows[1]
    assert (dpo / "policy" / "model.safetensors").is_file() and (dpo / "done.json").is_file()


def test_a_jprefs_reward_model_labels_the_pairs(cands, tmp_path, one_torch_thread):
    """A reward model folder as --reward (the `rm` kind): the pair scores are RewardModel.score's."""
    pytest.importorskip("torch")
    from jprefs.classifiers.reward_model import RewardModel
    from tests.classifiers.conftest import train_tiny_rm

    rm_dir = train_tiny_rm(tmp_path / "rm")
    out = tmp_path / "rm-pairs.jsonl"
    assert _run(cands, out, "--pairs", "all", "--batch-size", "4", reward=str(rm_dir)) == 0
    pairs = _jsonl(out)
    assert pairs and {p["meta"]["rm_pairs"]["reward"][0]["kind"] for p in pairs} == {"rm"}
    rm = RewardModel.from_pretrained(str(rm_dir))
    for p in pairs:
        got = rm.score([p["prompt"][0]["content"]] * 2, [p["chosen"], p["rejected"]])
        assert p["chosen_score"] == pytest.approx(float(got[0]), abs=1e-4)
        assert p["rejected_score"] == pytest.approx(float(got[1]), abs=1e-4)
        assert p["margin"] > 0
    # every scored pair of r0 (4 distinct responses, no tie expected from a real model): 6
    assert sum(p["source_id"] == "r0" for p in pairs) == 6


def test_a_length_reward_is_flagged(tmp_path, capsys):
    """A reward that is length: every pair has the longer response chosen, and the summary warns."""
    rows = [{"id": f"q{i}", "prompt": "x", "responses": ["あ" * (i % 3 + 1), "い" * (i % 3 + 5), "う"]}
            for i in range(20)]
    cands = tmp_path / "c.jsonl"
    cands.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    capsys.readouterr()
    assert _run(cands, tmp_path / "long.jsonl", reward="tests.data.test_rm_pairs:length_reward") == 0
    s = json.loads((tmp_path / "long.summary.json").read_text())
    assert s["length"]["chosen_longer_share"] == 1.0 and len(s["warnings"]) == 1 and "100% of 20 pairs" in s["warnings"][0]
    assert "WARNING" in capsys.readouterr().err
    assert _run(cands, tmp_path / "short.jsonl", "--reward-weight", "-1",
                reward="tests.data.test_rm_pairs:length_reward") == 0
    s = json.loads((tmp_path / "short.summary.json").read_text())
    assert s["length"]["chosen_shorter_share"] == 1.0 and s["warnings"] == []
    # -length: the shortest against the longest; where "あ" (index 0) and "う" (2) tie, the first is chosen
    chosen = [p["meta"]["rm_pairs"]["chosen_index"] for p in _jsonl(tmp_path / "short.jsonl")]
    assert chosen == [0 if i % 3 == 0 else 2 for i in range(20)]


# ---------------------------------------------------------------- --scores: the grades the rows carry

GRADED = [
    # g0 grades [9, 8, 1, 7, null, 5], lengths [8, 29, 31, 7, -, 9]: margin >= 3 keeps (0,2) 8, (0,5) 4,
    # (1,2) 7, (1,5) 3, (3,2) 6, (5,2) 4 (responses[4] is ungraded); only (1,5) has the longer answer chosen
    {"id": "g0", "prompt": "富士山の高さは?",
     "responses": ["3776mです。", "富士山は日本一高い山で、標高はおよそ3776メートルです。", "わかりません。" + "長い" * 12,
                   "3,776 m", "採点なし", "およそ四千メートル"],
     "scores": [9, 8, 1, 7, None, 5], "meta": {"models": ["a", "b", "c", "d", "e", "f"]}},
    {"id": "g1", "prompt": "x", "responses": ["a", "bb"], "scores": [1, None]},       # fewer_than_2_responses
    {"id": "g2", "prompt": "x", "responses": ["a", "bb"], "scores": [1, "high"]},     # bad_scores
    {"id": "g3", "prompt": "x", "responses": ["a", "bb"], "scores": [1]},             # bad_scores (length)
    {"id": "g4", "prompt": "x", "responses": ["a", "bb"], "scores": [1, True]},       # bad_scores (a bool)
    {"id": "g5", "prompt": "x", "responses": ["a", "bb"]},                            # missing_field
    # g6: the longer answer always wins -> no pair with the shorter chosen under --length-balance
    {"id": "g6", "prompt": "y", "responses": ["ccc", "b", "dd"], "scores": [9, 1, 5]},
    # g7: responses[1] holds a NUL: that response is left out, the row still pairs (0 > 2)
    {"id": "g7", "prompt": "z", "responses": ["良い答え", "壊れた\u0000答え", "悪い"], "scores": [5, 5, 1]},
]


@pytest.fixture
def graded(tmp_path):
    p = tmp_path / "graded.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in GRADED), encoding="utf-8")
    return p


def _scores(inp, out, *extra):
    return main(["data", "rm-pairs", str(inp), "--scores", "scores", "-o", str(out), *extra])


def test_given_scores_by_hand(graded, tmp_path):
    assert _scores(graded, tmp_path / "p.jsonl", "--pairs", "all", "--min-margin", "3") == 0
    got = _pairs(tmp_path / "p.jsonl")
    assert sorted(got) == [("g0", 0, 2), ("g0", 0, 5), ("g0", 1, 2), ("g0", 1, 5), ("g0", 3, 2), ("g0", 5, 2),
                           ("g6", 0, 1), ("g6", 0, 2), ("g6", 2, 1), ("g7", 0, 2)]
    p = got[("g0", 0, 5)]
    assert (p["chosen_score"], p["rejected_score"], p["margin"]) == (9.0, 5.0, 4.0)
    info = p["meta"]["rm_pairs"]
    assert info["reward"] == [{"label": "scores", "kind": "given", "spec": "scores", "weight": 1.0}]
    assert info["reward_input"] is None and info["scores"] == [9.0, 8.0, 1.0, 7.0, None, 5.0]
    assert p["meta"]["models"] == ["a", "b", "c", "d", "e", "f"]
    assert got[("g7", 0, 2)]["meta"]["rm_pairs"]["invalid"] == {"1": "nul_in_responses"}
    s = json.loads((tmp_path / "p.summary.json").read_text())
    rej = _jsonl(tmp_path / "p.rejects.jsonl")
    assert [r["raw"]["id"] for r in rej] == ["g1", "g2", "g3", "g4", "g5"]
    assert s["rejects_by_reason"] == {"bad_scores": 3, "fewer_than_2_responses": 1, "missing_field": 1}
    assert "finite number" in rej[1]["error"] and "list of 2 scores" in rej[2]["error"]
    assert s["rows_in"] == s["rows_paired"] + s["rows_rejected"] == 8
    assert (s["responses_unscored"], s["responses_invalid"], s["scores_field"]) == (2, 1, "scores")


def test_length_balance_and_max_pairs(graded, tmp_path):
    assert _scores(graded, tmp_path / "b.jsonl", "--pairs", "all", "--min-margin", "3", "--length-balance") == 0
    got = _pairs(tmp_path / "b.jsonl")
    g0 = [p for k, p in got.items() if k[0] == "g0"]
    # g0: chosen longer only in (1, 5), chosen shorter in the other five: one of each side is kept
    assert len(g0) == 2 and sum(len(p["chosen"]) > len(p["rejected"]) for p in g0) == 1
    assert ("g0", 1, 5) in got
    s = json.loads((tmp_path / "b.summary.json").read_text())
    assert s["length"]["chosen_longer_share"] == 0.5 == s["length"]["chosen_shorter_share"]
    assert s["rejects_by_reason"]["no_length_balanced_pair"] == 2          # g6 (longer always wins), g7 (one pair)
    assert s["pairs_dropped"]["length_balance"] == 4 + 3 + 1                # g0, g6, g7
    assert s["rows_in"] == s["rows_paired"] + s["rows_rejected"]
    # the same seed draws the same pairs; --max-pairs caps each row
    assert _scores(graded, tmp_path / "b2.jsonl", "--pairs", "all", "--min-margin", "3", "--length-balance") == 0
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "b2.jsonl").read_bytes()
    drawn = set()
    for seed in range(8):
        assert _scores(graded, tmp_path / f"m{seed}.jsonl", "--pairs", "all", "--min-margin", "3", "--max-pairs", "2",
                       "--seed", str(seed)) == 0
        rows = _jsonl(tmp_path / f"m{seed}.jsonl")
        assert sum(p["source_id"] == "g0" for p in rows) == 2
        drawn |= {p["id"] for p in rows if p["source_id"] == "g0"}
        ms = json.loads((tmp_path / f"m{seed}.summary.json").read_text())
        assert ms["pairs_dropped"]["over_max_pairs"] == 4 + 1                   # g0 6 -> 2, g6 3 -> 2
    assert len(drawn) > 2                                                      # the seed changes the draw


def test_given_scores_bad_options(graded, tmp_path, capsys):
    capsys.readouterr()
    assert main(["data", "rm-pairs", str(graded), "--scores", "scores", "--reward", TOY, "-o",
                 str(tmp_path / "x.jsonl")]) == 2
    assert "--scores and --reward together" in capsys.readouterr().err
    assert _scores(graded, tmp_path / "x.jsonl", "--length-balance", "--max-pairs", "1") == 2
    assert "--max-pairs 1" in capsys.readouterr().err
    assert main(["data", "rm-pairs", str(graded), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "fix: --scores FIELD" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_length_balanced_judge_pairs_stop_paying_length(tmp_path):
    """A judge that grades by length alone: its natural pairs choose the longer answer every time; the
    balanced pairs choose it exactly half the time, and train-rm's reader takes them."""
    from jprefs.classifiers.data import load_rm_data

    rows = []
    for q in range(6):
        resp = [f"答え{q}-{k}" + "。" * (3 * k + (k * 7 + q) % 5) for k in range(8)]
        grade = [len(r) + (6 if k in (0, 1) else 0) for k, r in enumerate(resp)]      # mostly length
        rows.append({"id": f"q{q}", "prompt": f"質問{q}", "responses": resp, "scores": grade})
    inp = tmp_path / "len.jsonl"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert _scores(inp, tmp_path / "nat.jsonl", "--pairs", "all", "--min-margin", "1") == 0
    assert _scores(inp, tmp_path / "bal.jsonl", "--pairs", "all", "--min-margin", "1", "--length-balance") == 0
    nat = json.loads((tmp_path / "nat.summary.json").read_text())["length"]["chosen_longer_share"]
    bal = json.loads((tmp_path / "bal.summary.json").read_text())["length"]["chosen_longer_share"]
    assert nat > 0.8 and bal == 0.5
    data = load_rm_data(tmp_path / "bal.jsonl")
    assert len(data.records) == len(_jsonl(tmp_path / "bal.jsonl")) > 0


def test_a_wide_graded_row_does_not_copy_its_lists_into_every_pair(tmp_path):
    """169 models graded on one question: each pair carries its two models and ranks, not 169-long lists."""
    k = 40
    row = {"id": "w", "prompt": "質問", "responses": [f"答え{i}" + "。" * i for i in range(k)],
           "scores": [float(i % 10) for i in range(k)], "meta": {"models": [f"m{i}" for i in range(k)], "bench": "b"}}
    inp = tmp_path / "wide.jsonl"
    inp.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert _scores(inp, tmp_path / "w.jsonl", "--pairs", "all", "--min-margin", "5", "--max-pairs", "6") == 0
    pairs = _jsonl(tmp_path / "w.jsonl")
    assert len(pairs) == 6
    for p in pairs:
        info = p["meta"]["rm_pairs"]
        ci, ri = info["chosen_index"], info["rejected_index"]
        assert p["meta"]["models"] == [f"m{ci}", f"m{ri}"] and p["meta"]["bench"] == "b"
        assert "scores" not in info and "ranks" not in info and info["n_responses"] == k
        assert info["chosen_rank"] < info["rejected_rank"] and p["chosen_score"] == float(ci % 10)
        assert len(json.dumps(p)) < 2000
