"""`jprefs eval rm`: each metric against hand-computed values, the length-detector acceptance (arrays
and real saved models), the CLI end to end, RewardBench-style files, plain HF classifiers, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jprefs.eval import metrics as M

# ------------------------------------------------------------------ metrics on arrays, by hand


def test_accuracy_ties_and_both_length_baselines_hand_computed():
    # pair 1: right, longer chosen; pair 2: wrong, chosen shorter; pair 3: tie, equal lengths
    m = M.pairwise_metrics([2, 0, 1], [1, 1, 1], [8, 2, 5], [2, 8, 5], groups=["a", "b", "c"])
    assert m["n_pairs"] == 3 and m["n_prompts"] == 3
    assert m["pairwise_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["length_baseline_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["shorter_baseline_accuracy"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert m["length_controlled_accuracy"] == 0.0 and m["length_controlled_n"] == 1
    s = m["length_subsets"]
    assert (s["chosen_longer"]["n"], s["chosen_longer"]["accuracy"]) == (1, 1.0)
    assert (s["equal_length"]["n"], s["equal_length"]["accuracy"], s["equal_length"]["longer_wins"]) == (1, 0.5, 0.5)
    assert s["chosen_shorter"]["longer_wins"] == 0.0          # by construction
    assert m["mean_margin"] == pytest.approx((1 - 1 + 0) / 3)
    lo, hi = m["ci95"]
    assert lo <= m["pairwise_accuracy"] <= hi


def test_length_matched_subset_uses_the_relative_gap_to_the_longer_response():
    lc, lr = [100, 10, 50, 20], [91, 20, 50, 21]       # gaps 0.09, 0.5, 0, 1/21 = 0.048
    assert M.relative_length_gap(lc, lr) == pytest.approx([0.09, 0.5, 0.0, 1 / 21])
    m = M.pairwise_metrics([1, 1, 0, 0], [0, 0, 1, 1], lc, lr)
    assert m["length_matched_n"] == 3 and m["length_matched_accuracy"] == pytest.approx(1 / 3)   # pairs 1, 3, 4
    narrow = M.pairwise_metrics([1, 1, 0, 0], [0, 0, 1, 1], lc, lr, tolerance=0.05)
    assert narrow["length_matched_n"] == 2 and narrow["length_matched_accuracy"] == 0.0          # pairs 3, 4
    assert narrow["length_match_tolerance"] == 0.05


def test_empty_length_subset_reports_none_not_a_number():
    m = M.pairwise_metrics([1, 0], [0, 1], [5, 6], [1, 2])     # the chosen response is always longer
    assert m["length_controlled_accuracy"] is None and m["length_controlled_n"] == 0
    assert m["length_controlled_ci95"] == [None, None]


def test_interval_resamples_prompts_and_matches_bootstrap_ci():
    from jprefs.eval.stats import bootstrap_ci

    rc, rr = [1, 1, 1, 1, 0, 0, 0, 0], [0] * 4 + [1] * 4
    groups = ["p1"] * 4 + ["p2"] * 4                   # all of a prompt's pairs right or all wrong
    m = M.pairwise_metrics(rc, rr, [1] * 8, [2] * 8, groups=groups, seed=3)
    assert m["ci95"] == list(bootstrap_ci(M.wins(rc, rr), groups, seed=3)[1])
    alone = M.pairwise_metrics(rc, rr, [1] * 8, [2] * 8, seed=3)
    # two prompts: the by-prompt interval spans (almost) everything, the pair-level one is narrower
    assert m["ci95"][1] - m["ci95"][0] > alone["ci95"][1] - alone["ci95"][0]
    again = M.pairwise_metrics(rc, rr, [1] * 8, [2] * 8, groups=groups, seed=3)
    assert json.dumps(again) == json.dumps(m)                                       # same seed, same result


def test_correlation_against_the_reference_formula():
    from scipy.stats import pearsonr, spearmanr

    a, b = [1, 2, 2, 3, 7, 7, 7], [3, 1, 4, 1, 5, 9, 2]
    c = M.correlation(a, b)
    assert c["spearman"] == pytest.approx(spearmanr(a, b).statistic)       # ties at their average rank
    assert c["pearson"] == pytest.approx(pearsonr(a, b).statistic)
    assert np.isnan(M.correlation([1, 1, 1], [1, 2, 3])["spearman"])
    m = M.pairwise_metrics([3, 1], [2, 0], [30, 10], [20, 5])
    assert m["reward_length_corr"]["spearman"] == pytest.approx(1.0)        # reward = rank of length here


def test_pair_calibration_hand_computed():
    # margins +1.7346 (p .85, right), -1.7346 (winner's confidence .85, wrong), +2.9444 (.95, right), 0 (tie)
    ece, bins = M.pair_calibration([1.7346, 0, 2.9444, 1], [0, 1.7346, 0, 1])
    assert [b["lo"] for b in bins] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    full = {round(b["lo"], 1): (b["n"], round(b["conf"], 3), b["acc"]) for b in bins if b["n"]}
    assert full == {0.5: (1, 0.5, 0.5), 0.8: (2, 0.85, 0.5), 0.9: (1, 0.95, 1.0)}
    assert ece == pytest.approx((2 * 0.35 + 0.05 + 0.0) / 4, abs=1e-4)
    e2, _ = M.expected_calibration_error([0.8, 0.8, 0.2, 0.2], [1, 0, 0, 0])
    assert e2 == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)


def test_breakdown_and_agreement_hand_computed():
    b = M.breakdown([1, 0, 1, 1], [0, 1, 0, 2], [3, 3, 1, 1], [1, 1, 3, 3], keys=["x", "x", "y", "y"])
    assert list(b) == ["x", "y"]
    assert b["x"]["pairwise_accuracy"] == 0.5 and b["x"]["length_baseline_accuracy"] == 1.0
    assert b["y"]["pairwise_accuracy"] == 0.5 and b["y"]["length_controlled_accuracy"] == 0.5
    a = M.agreement([1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1])        # picks: A = c, c, r; B = c, r, r
    assert a["agreement"] == pytest.approx(2 / 3) and a["n"] == 3
    assert a["accuracy_diff"] == pytest.approx(2 / 3 - 1 / 3)
    assert M.agreement([1], [1], [1], [1])["agreement"] == 1.0            # two ties: the same pick


def test_point_estimates_only_without_bootstrap():
    m = M.accuracy_metrics([1, 0, 1], [0, 1, 0], [3, 1, 1], [1, 3, 3], n_boot=0)
    assert m["pairwise_accuracy"] == pytest.approx(2 / 3) and m["ci95"] == [None, None]
    assert m["length_controlled_accuracy"] == 0.5 and m["length_controlled_ci95"] == [None, None]   # pairs 2, 3


def test_train_rm_evaluation_is_the_same_implementation():
    """train-rm's evaluate_pairs reports the figures of jprefs.eval.metrics on the same arrays."""
    from jprefs.classifiers.evaluate import evaluate_pairs
    from jprefs.data.schema import PreferencePair, prompt_key
    from jprefs.eval.stats import bootstrap_ci

    class Table:
        def score(self, prompts, responses, batch_size=64, show_progress=False):
            return np.array([len(r) % 3 for r in responses], dtype=np.float32)

    pairs = [PreferencePair.create(f"質問{i % 3}", "あ" * (i + 2), "い" * (7 - i)) for i in range(6)]
    m, _ = evaluate_pairs(Table(), pairs, seed=4)
    rc = np.array([len(p.chosen) % 3 for p in pairs])
    rr = np.array([len(p.rejected) % 3 for p in pairs])
    ref = M.pairwise_metrics(rc, rr, [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs])
    for k in ("pairwise_accuracy", "length_baseline_accuracy", "length_controlled_accuracy", "pair_ece",
              "mean_margin"):
        assert m[k] == pytest.approx(ref[k]), k
    assert m["reward_length_corr"] == pytest.approx(ref["reward_length_corr"])
    assert m["length_controlled_pairs"] == ref["length_controlled_n"] == 3
    groups = [prompt_key(p.prompt) for p in pairs]
    assert m["pairwise_accuracy_ci95"] == list(bootstrap_ci(M.wins(rc, rr), groups, seed=4)[1])
    assert evaluate_pairs(Table(), pairs, intervals=False)[0]["pairwise_accuracy_ci95"] is None


# ------------------------------------------------------------------ the acceptance set

# 20 pairs over 10 prompts. The chosen response is longer in 16 (80%), shorter in 4. A quality
# marker (良 good, 悪 bad) sits in the chosen response in 12 of the 16 and in 3 of the 4: a
# judge of quality alone is right on 75% of each subset. Two pairs of each kind are length-matched.
DESIGN = ([("longer", True)] * 12 + [("longer", False)] * 4 + [("shorter", True)] * 3 + [("shorter", False)])


def _lengths(i, kind):
    matched = i in (0, 12, 16)
    long_, short = (21, 20) if matched else (24, 12)
    return (long_, short) if kind == "longer" else (short, long_)


def _design_arrays():
    lc, lr, qc, qr = [], [], [], []
    for i, (kind, good_chosen) in enumerate(DESIGN):
        a, b = _lengths(i, kind)
        lc.append(a), lr.append(b), qc.append(float(good_chosen)), qr.append(float(not good_chosen))
    return np.array(lc), np.array(lr), np.array(qc), np.array(qr)


def test_acceptance_on_arrays_length_detector_and_length_blind_scorer():
    lc, lr, qc, qr = _design_arrays()
    groups = [f"q{i // 2}" for i in range(len(lc))]
    length = M.pairwise_metrics(lc, lr, lc, lr, groups)              # reward = length
    assert length["pairwise_accuracy"] == pytest.approx(0.8) == length["length_baseline_accuracy"]
    assert length["length_controlled_accuracy"] == 0.0 and length["length_controlled_n"] == 4
    assert length["length_subsets"]["chosen_longer"]["accuracy"] == 1.0
    assert length["accuracy_minus_length_baseline"] == 0.0 and length["accuracy_minus_length_baseline_ci95"] == [0, 0]
    quality = M.pairwise_metrics(qc, qr, lc, lr, groups)             # reward = quality marker only
    assert quality["pairwise_accuracy"] == pytest.approx(0.75)
    assert quality["length_controlled_accuracy"] == pytest.approx(0.75)
    assert quality["length_subsets"]["chosen_longer"]["accuracy"] == pytest.approx(0.75)
    from jprefs.eval.stats import paired_bootstrap_ci

    d, ci = paired_bootstrap_ci(M.wins(qc, qr), M.wins(lc, lr), groups)
    assert quality["accuracy_minus_length_baseline"] == pytest.approx(-0.05) == pytest.approx(d)
    assert quality["accuracy_minus_length_baseline_ci95"] == list(ci)


# ------------------------------------------------------------------ tiny real models (hand-set weights)

H = 32


def _directions():
    import torch

    alt = torch.tensor([1.0, -1.0] * 8) * 2 ** 0.5           # zero mean, unit variance over 32 dims
    pair = torch.tensor([1.0, 1.0, -1.0, -1.0] * 4) * 2 ** 0.5
    a, b, c = torch.zeros(H), torch.zeros(H), torch.zeros(H)
    a[:16], b[16:], c[16:] = alt, alt, pair                   # a: [CLS]; b: every other token; c: 良
    return a, b, c                                            # pairwise orthogonal


def _engineered_rm(kind: str):
    """A one-layer BERT whose reward is a chosen function of its input, from hand-set weights.

    Embeddings are zero-mean unit-variance vectors, so every LayerNorm is the identity on them;
    the feed-forward block is zero. ``length``: queries and keys are 0, so [CLS] attends uniformly
    to the L tokens and its output, a + (a + (L-1) b) / L normalised, has a b-component that grows
    with L; the head reads that component: the reward rises with the token count (one token per
    character here). ``quality``: [CLS] attends almost only to 良 (a large query-key product) and the
    values keep only 良's direction c; the head reads c: the reward is one constant when 良 is in the
    input and another when it is not, whatever the length.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    from ..classifiers.conftest import make_tokenizer

    tok = make_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=H, num_hidden_layers=1, num_attention_heads=1,
                     intermediate_size=4, max_position_embeddings=64, num_labels=1, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, pad_token_id=tok.pad_token_id)
    model = BertForSequenceClassification(cfg).eval()
    a, b, c = _directions()
    good = tok.convert_tokens_to_ids("良")
    sd = model.state_dict()
    with torch.no_grad():
        for v in sd.values():
            v.zero_()
        for k in sd:
            if "LayerNorm.weight" in k:
                sd[k].fill_(1.0)
        emb = sd["bert.embeddings.word_embeddings.weight"]
        emb[:] = b
        emb[tok.cls_token_id] = a
        att = "bert.encoder.layer.0.attention."
        sd[att + "output.dense.weight"].copy_(torch.eye(H))
        sd["bert.pooler.dense.weight"].copy_(torch.eye(H))
        if kind == "length":
            sd[att + "self.value.weight"].copy_(torch.eye(H))
            sd["classifier.weight"][0].copy_(b / b.norm())
        else:
            emb[good] = c
            e0 = torch.zeros(H)
            e0[0] = 3.0
            sd[att + "self.query.weight"].copy_(torch.outer(e0, a / a.norm()))     # q(CLS) = 3|a| e0
            sd[att + "self.key.weight"].copy_(torch.outer(e0, c / c.norm()))       # k(良) = 3|c| e0, others 0
            sd[att + "self.value.weight"].copy_(torch.outer(c / c.norm(), c / c.norm()))
            sd["classifier.weight"][0].copy_(c / c.norm())
    model.load_state_dict(sd)
    return RewardModel(model, tok, RewardConfig(objective="pairwise", chosen_index=0, max_length=64))


def _design_rows():
    rows = []
    for i, (kind, good_chosen) in enumerate(DESIGN):
        a, b = _lengths(i, kind)
        mark_c, mark_r = ("良", "悪") if good_chosen else ("悪", "良")
        rows.append({"prompt": [{"role": "user", "content": "しつもん" + "あいうえおかきくけこ"[i // 2]}],
                     "chosen": mark_c + "か" * (a - 1), "rejected": mark_r + "さ" * (b - 1),
                     "source": "toy", "license": "cc0-1.0"})
    return rows


def _write_jsonl(path, rows, extra_lines=()):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return str(path)


def save_engineered(d) -> dict:
    """The two engineered models and the design pairs saved in ``d``: their paths by name."""
    _engineered_rm("length").save_pretrained(d / "length-rm")
    _engineered_rm("quality").save_pretrained(d / "quality-rm")
    return {"dir": d, "length": str(d / "length-rm"), "quality": str(d / "quality-rm"),
            "design": _write_jsonl(d / "design.jsonl", _design_rows())}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("evalrm")
    base = save_engineered(d)
    # RewardBench layout: id, prompt (a string), chosen, rejected, subset, model columns; one broken line
    rb = [{"id": i, "prompt": "しつもん" + "たちつてと"[i % 5], "chosen": ("良" if i % 4 else "悪") + "な" * (5 + i),
           "rejected": ("悪" if i % 4 else "良") + "に" * (10 - i % 3), "subset": "chat" if i < 6 else "safety",
           "chosen_model": "x", "rejected_model": "y", "language": "jpn_Jpan"} for i in range(10)]
    rbench = _write_jsonl(d / "m-rewardbench-ja.jsonl", rb, extra_lines=['{"prompt": "壊れた行",'])
    return {**base, "rb": rbench, "rb_rows": rb}


def test_engineered_models_score_as_designed(saved):
    from jprefs.classifiers.reward_model import RewardModel

    length, quality = RewardModel.from_pretrained(saved["length"], device="cpu"), \
        RewardModel.from_pretrained(saved["quality"], device="cpu")
    r = length.score(["しつもん"] * 3, ["あ", "ああああ", "あああああああああ"])
    assert r[0] < r[1] < r[2]
    q = quality.score(["しつもん"] * 4, ["良あ", "良あああああああああああ", "悪あ", "悪ああああああああああ"])
    assert q[0] == pytest.approx(q[1], abs=1e-5) and q[2] == pytest.approx(q[3], abs=1e-5) and q[0] > q[2] + 0.1


def _run(argv, capsys):
    from jprefs.cli import main

    rc = main(["eval", "rm", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_two_models_two_data_sets_end_to_end(saved, tmp_path, capsys):
    out = tmp_path / "lb"
    rc, stdout, err = _run(["--model", saved["length"], "--model", saved["quality"], "--data", saved["design"],
                            "--data", saved["rb"], "-o", str(out), "--seed", "1"], capsys)
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    res = m["results"]
    assert set(res) == {"length-rm", "quality-rm"} and set(res["length-rm"]) == {"design", "m-rewardbench-ja"}
    for model in res.values():
        for r in model.values():
            for k in ("n_pairs", "pairwise_accuracy", "ci95", "length_baseline_accuracy",
                      "length_controlled_accuracy", "length_matched_accuracy", "shorter_baseline_accuracy",
                      "reward_length_corr", "pair_ece", "reliability", "breakdown", "plots"):
                assert k in r, k
            assert len(r["ci95"]) == 2 and r["ci95"][0] <= r["pairwise_accuracy"] <= r["ci95"][1]
    # ACCEPTANCE with real models: the length detector is the longer-wins baseline, the quality model ignores length
    ld, q = res["length-rm"]["design"], res["quality-rm"]["design"]
    assert ld["n_pairs"] == 20 and ld["pairwise_accuracy"] == pytest.approx(0.8)
    assert ld["length_baseline_accuracy"] == pytest.approx(0.8) and ld["length_controlled_accuracy"] == 0.0
    assert q["pairwise_accuracy"] == pytest.approx(0.75) and q["length_controlled_accuracy"] == pytest.approx(0.75)
    assert q["length_subsets"]["chosen_longer"]["accuracy"] == pytest.approx(0.75)
    assert ld["length_matched_n"] == 3 and ld["length_matched_accuracy"] == pytest.approx(2 / 3)
    assert ld["reward_length_corr"]["spearman"] > 0.9 and abs(q["reward_length_corr"]["spearman"]) < 0.5
    # the leaderboard is sorted; the agreement is the share of the same picks (hand count: 13 of 20)
    lb = m["leaderboard"]["design"]
    assert [r["model"] for r in lb] == ["length-rm", "quality-rm"]
    ag = m["agreement"]["design"][0]
    lc, lr, qc, qr = _design_arrays()
    assert ag["agreement"] == pytest.approx(float(np.mean(np.sign(lc - lr) == np.sign(qc - qr))))
    assert ag["accuracy_diff"] == pytest.approx(0.05)
    # the RewardBench file: 11 lines, one broken (counted, written to rejects), subset kept for the breakdown
    d = m["data"]["m-rewardbench-ja"]
    assert (d["rows_in"], d["records"], d["rows_rejected"], d["n_pairs"]) == (11, 10, 1, 10)
    assert d["layout"] == "rewardbench" and d["breakdown_keys"] == ["subset"]
    by = res["quality-rm"]["m-rewardbench-ja"]["breakdown"]["subset"]
    assert {k: v["n_pairs"] for k, v in by.items()} == {"chat": 6, "safety": 4}
    want = {s: np.mean([bool(r["id"] % 4) for r in saved["rb_rows"] if r["subset"] == s]) for s in ("chat", "safety")}
    assert {k: v["pairwise_accuracy"] for k, v in by.items()} == pytest.approx(want)
    rej = [json.loads(x) for x in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rej) == 1 and rej[0]["line"] == 11 and rej[0]["data"] == "m-rewardbench-ja"
    # scores.jsonl lets anyone recompute the figures
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * (20 + 10)
    mine = [r for r in rows if r["model"] == "quality-rm" and r["data"] == "design"]
    assert np.mean(M.wins([r["r_chosen"] for r in mine], [r["r_rejected"] for r in mine])) == pytest.approx(0.75)
    assert {"pair", "id", "r_chosen", "r_rejected"} <= set(rows[0])
    # report and plots
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Leaderboard: design" in md and "0.800 [" in md and "longer wins" in md
    assert "| 1 | length-rm | 0.800 [" in md and "| 0.000 [0.000, 0.000] |" in md       # paired: = longer wins
    assert "Agreement between models" in md and "By subset:" in md
    assert "length-rm on design: below chance on the 4 pairs whose chosen answer is the shorter one" in md
    assert "prefers shorter answers" not in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2 + 2 * 2 * 3
    for f in ("leaderboard_design.png", "leaderboard_m-rewardbench-ja.png", "length-rm__design_reliability.png",
              "quality-rm__m-rewardbench-ja_rewards.png", "length-rm__design_reward_length.png"):
        assert (out / f).stat().st_size > 1000, f
    assert "length-rm: pairwise_accuracy=0.8000" in stdout
    # the same command and seed give the same figures
    rc2, _, _ = _run(["--model", saved["length"], "--model", saved["quality"], "--data", saved["design"],
                      "--data", saved["rb"], "-o", str(tmp_path / "again"), "--seed", "1", "--no-plots"], capsys)
    again = json.loads((tmp_path / "again" / "metrics.json").read_text(encoding="utf-8"))
    assert rc2 == 0 and again["leaderboard"] == m["leaderboard"] and again["agreement"] == m["agreement"]


def test_rewardbench_parquet_and_names(saved, tmp_path, capsys):
    import pandas as pd

    pq = tmp_path / "mrb.parquet"
    pd.DataFrame(saved["rb_rows"]).to_parquet(pq)
    rc, _, err = _run(["--model", f"q={saved['quality']}", "--data", f"mrb={pq}", "-o", str(tmp_path / "o"),
                       "--no-plots"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    r = m["results"]["q"]["mrb"]
    assert r["n_pairs"] == 10 and set(r["breakdown"]["subset"]) == {"chat", "safety"}
    assert r["pairwise_accuracy"] == pytest.approx(np.mean([bool(x["id"] % 4) for x in saved["rb_rows"]]))
    assert "mrb" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    assert not (tmp_path / "o" / "rejects.jsonl").exists()


def test_plain_hf_sequence_classifiers(saved, tmp_path, capsys):
    from ..classifiers.conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    two = make_model(2)
    two.config.id2label, two.config.label2id = {0: "bad", 1: "good"}, {"bad": 0, "good": 1}
    two.save_pretrained(tmp_path / "clf2")
    tok.save_pretrained(tmp_path / "clf2")
    one = make_model(1, seed=1)
    one.save_pretrained(tmp_path / "clf1")
    tok.save_pretrained(tmp_path / "clf1")
    assert not (tmp_path / "clf2" / "jprefs_reward.json").exists()
    rc, _, err = _run(["--model", str(tmp_path / "clf2"), "--model", str(tmp_path / "clf1"), "--label", "bad",
                       "--data", saved["design"], "-o", str(tmp_path / "o"), "--no-plots"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    assert m["models"]["clf2"]["chosen_index"] == 0 and m["models"]["clf2"]["num_labels"] == 2
    assert m["models"]["clf1"]["num_labels"] == 1 and "--label ignored" in err
    # the figures are those of the model's own scores
    from jprefs.classifiers.reward_model import RewardModel

    rm = RewardModel.from_pretrained(tmp_path / "clf2", device="cpu", label="bad")
    rows = _design_rows()
    r = rm.score([x["prompt"] for x in rows] * 2, [x["chosen"] for x in rows] + [x["rejected"] for x in rows])
    assert m["results"]["clf2"]["design"]["pairwise_accuracy"] == pytest.approx(float(np.mean(M.wins(r[:20], r[20:]))))


def test_source_adapter_data(saved, tmp_path, capsys):
    hh = tmp_path / "hh.jsonl"
    good = {"chosen": "\n\nHuman: しつもん\n\nAssistant: 良いです", "rejected": "\n\nHuman: しつもん\n\nAssistant: 悪いです"}
    _write_jsonl(hh, [good, {"chosen": "no markers", "rejected": "x"}])
    rc, _, err = _run(["--model", saved["quality"], "--data", str(hh), "--source", "hh-rlhf", "-o",
                       str(tmp_path / "o"), "--no-plots"], capsys)
    assert rc == 0, err
    d = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))["data"]["hh"]
    assert (d["rows_in"], d["n_pairs"], d["rows_rejected"]) == (2, 1, 1)       # rows read = scored + rejected


@pytest.mark.parametrize("case", ["missing_model", "not_a_model", "missing_data", "empty_data", "no_pairs",
                                  "binary_data", "hh_without_source"])
def test_bad_input_is_one_clear_error(saved, tmp_path, capsys, case):
    model, data = saved["quality"], saved["design"]
    if case == "missing_model":
        model, named = str(tmp_path / "nowhere" / "rm"), "nowhere"
    elif case == "not_a_model":
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / "notes.txt").write_text("x")
        model, named = str(tmp_path / "folder"), "not a jprefs model folder"
    elif case == "missing_data":
        data, named = str(tmp_path / "missing.jsonl"), "missing.jsonl"
    elif case == "empty_data":
        (tmp_path / "empty.jsonl").write_text("")
        data, named = str(tmp_path / "empty.jsonl"), "empty.jsonl"
    elif case == "no_pairs":
        data = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "しつもん", "chosen": "同じ", "rejected": "同じ"}],
                            extra_lines=["{oops"])
        named = "no usable preference pairs out of 2 rows (first reject, line 1"
    elif case == "binary_data":
        data = _write_jsonl(tmp_path / "bin.jsonl", [{"response": "良い", "label": 1}])
        named = "missing field"
    else:
        data = _write_jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: a\n\nAssistant: b",
                                                     "rejected": "\n\nHuman: a\n\nAssistant: c"}])
        named = "add --source hh-rlhf"
    rc, _, err = _run(["--model", model, "--data", data, "-o", str(tmp_path / "o")], capsys)
    assert rc == 2
    assert err.startswith("jprefs eval: error:") and named in err and "Traceback" not in err
    assert "fix:" in err and not (tmp_path / "o" / "metrics.json").exists()


def test_help_has_examples_and_module_is_light():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "jprefs eval rm --model" in out.stdout and "--length-tolerance" in out.stdout
    code = ("import sys, jprefs.eval.rm, jprefs.eval.metrics, jprefs.eval.plots, jprefs.eval.rm_report; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'numpy', 'datasets') "
            "if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_pairs_of_one_prompt_get_no_interval_and_no_confident_warning(saved, tmp_path, capsys):
    """All pairs on one prompt: every interval was zero-width, and the report said the model 'is below the
    longer-wins baseline' as a finding. Now the intervals are null and the report says nothing is shown."""
    rows = [dict(r, prompt="ひとつの質問") for r in _design_rows()]
    one = _write_jsonl(tmp_path / "one.jsonl", rows)
    rc, _, err = _run(["--model", saved["quality"], "--data", one, "-o", str(tmp_path / "o"), "--no-plots"], capsys)
    assert rc == 0, err
    r = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))["results"]["quality-rm"]["one"]
    assert r["pairwise_accuracy"] == pytest.approx(0.75) and r["ci95"] == [None, None]
    assert r["accuracy_minus_length_baseline_ci95"] == [None, None]
    md = (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    assert "is below the longer-wins baseline" not in md and "has no interval" in md
