"""jprefs.classifiers.textfeatures: each feature against values worked out by hand, and a pairwise fit
over them that learns a judge who punishes loops and English while ignoring length."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jprefs.classifiers.textfeatures import FEATURES, answer_features, feature_matrix


def _f(prompt, response):
    return dict(zip(FEATURES, answer_features(prompt, response)))


def test_each_feature_by_hand():
    f = _f("日本の首都はどこですか", "日本の首都は東京です。")
    assert f["log_chars"] == pytest.approx(math.log1p(11))
    assert (f["ja_share"], f["latin_share"], f["ends_clean"], f["polite_share"]) == (1.0, 0.0, 1.0, 1.0)
    # prompt bigrams: 日本 本の の首 首都 都は はど どこ こで です すか; the answer has 日本 .. 都は and です: 6 of 10
    assert f["prompt_coverage"] == pytest.approx(6 / 10)
    assert (f["echoes_prompt"], f["refusal"], f["reasoning_trace"], f["repeated_4grams"]) == (0.0, 0.0, 0.0, 0.0)

    loop = _f("x", "ああああああああああああ")           # 12 characters, 9 four-grams, 1 distinct
    assert loop["repeated_4grams"] == pytest.approx(1 - 1 / 9) and loop["ends_clean"] == 0.0
    eng = _f("日本の首都は?", "I am sorry, I cannot answer that.")
    assert (eng["ja_share"], eng["latin_share"], eng["refusal"]) == (0.0, 1.0, 1.0)
    mixed = _f("q", "東京abc")                            # 2 ideographs of 5 letters
    assert (mixed["ja_share"], mixed["latin_share"]) == (pytest.approx(0.4), pytest.approx(0.6))
    lst = _f("リストを作って", "- 一つ目です。\n- 二つ目です。\n- 二つ目です。\n1. 三つ目")
    assert lst["list_lines"] == 1.0 and lst["repeated_lines"] == pytest.approx(2 / 4)
    assert lst["log_lines"] == pytest.approx(math.log1p(4)) and lst["polite_share"] == pytest.approx(3 / 4)
    echo = _f([{"role": "user", "content": "前の質問"}, {"role": "assistant", "content": "答え"},
               {"role": "user", "content": "日本の首都はどこですか"}], "日本の首都はどこですか。東京です。<think>")
    assert (echo["echoes_prompt"], echo["reasoning_trace"], echo["prompt_coverage"]) == (1.0, 1.0, 1.0)
    empty = _f("", "")
    assert empty["log_chars"] == 0.0 and all(v == 0.0 for v in empty.values())


def test_feature_matrix_shape_and_errors():
    m = feature_matrix(["a", "b"], ["東京です。", "abc"])
    assert m.shape == (2, len(FEATURES)) and m.dtype == np.float64 and np.isfinite(m).all()
    assert feature_matrix([], []).shape == (0, len(FEATURES))
    with pytest.raises(ValueError, match="2 prompts for 1 responses"):
        feature_matrix(["a", "b"], ["x"])


def test_a_pairwise_fit_learns_what_the_judge_punishes_not_length():
    """A judge that prefers fluent Japanese and punishes loops and English, whatever the length: half
    the preferred answers are the shorter ones. The fit on feature differences ranks held-out pairs
    right and puts little weight on length."""
    from jprefs.classifiers.stack import stack_weights

    rng = np.random.default_rng(0)
    good = ["東京は日本の首都です。", "富士山の高さは3,776メートルです。", "水は100度で沸騰します。", "光は秒速約30万キロメートルで進みます。"]
    bad = ["ああああああああああああああああ", "The capital is Tokyo, I think so.", "わかりませんわかりませんわかりません",
           "申し訳ありませんが、お答えできません"]
    pairs = []
    for i in range(200):
        g, b = good[rng.integers(4)], bad[rng.integers(4)]
        pad = "。" * int(rng.integers(0, 30))
        pairs.append((g + pad, b) if i % 2 else (g, b + pad))     # the longer one is chosen half the time
    xc = feature_matrix(["質問"] * len(pairs), [c for c, _ in pairs])
    xr = feature_matrix(["質問"] * len(pairs), [r for _, r in pairs])
    w = stack_weights(xc[:100] - xr[:100])
    acc = float(((xc[100:] @ w) > (xr[100:] @ w)).mean())
    longer = float(np.mean([len(c) > len(r) for c, r in pairs[100:]]))
    assert acc > 0.95 and abs(longer - 0.5) < 0.1
    length_only = stack_weights(xc[:100, :1] - xr[:100, :1])
    assert float(((xc[100:, :1] @ length_only) > (xr[100:, :1] @ length_only)).mean()) < 0.75
