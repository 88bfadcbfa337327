"""Agreement of `jprefs label` labels: coefficients against hand-computed and published values."""

import doctest
import json
import random
import re

import pytest

import jprefs.label.agreement as agreement_module
from jprefs.errors import DataError
from jprefs.label.agreement import (Label, agreement, agreement_text, cohen_kappa, fleiss_kappa, kendall_tau,
                                    krippendorff_alpha)

# The reliability data of Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability"
# (https://repository.upenn.edu/asc_papers/43), 4 observers x 12 units with missing values (None). Copied
# from the tests and docstring of the `krippendorff` PyPI package (github.com/pln-fing-udelar/fast-krippendorff,
# tests/test_krippendorff.py::test_ordinal_metric and src/krippendorff/krippendorff.py, which cite the paper,
# page 8); the same matrix is the "C" example of R DescTools::KrippAlpha (irr::kripp.alpha). Published:
# nominal 0.743, ordinal 0.815, interval 0.849.
PAPER = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
         [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
# Wikipedia's computational example (3 coders x 15 units), with the same package's values to 6 places
# (tests/test_krippendorff.py: nominal 0.691358, interval 0.810845).
WIKI = [[None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
        [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
        [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4]]


def _units(matrix):
    return {f"u{j}": [row[j] for row in matrix] for j in range(len(matrix[0]))}


def test_doctests():
    res = doctest.testmod(agreement_module)
    assert res.attempted >= 10 and res.failed == 0


def test_alpha_published_examples():
    u = _units(PAPER)
    assert round(krippendorff_alpha(u, "nominal"), 3) == 0.743
    assert round(krippendorff_alpha(u, "ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(u, "interval"), 3) == 0.849
    w = _units(WIKI)
    assert round(krippendorff_alpha(w, "nominal"), 6) == 0.691358
    assert round(krippendorff_alpha(w, "interval"), 6) == 0.810845
    # units given as their values only (no None placeholders) are the same data
    assert krippendorff_alpha({k: [x for x in v if x is not None] for k, v in u.items()}) == \
        pytest.approx(krippendorff_alpha(u))


def test_alpha_small_case_by_hand_differs_from_kappa():
    # o = [[2, 1], [1, 4]], n_a = 3, n_b = 5, n = 8: alpha = 1 - 7 * 2 / (2 * 3 * 5) = 8/15.
    # Cohen's / Fleiss' kappa of the same data is 0.4667: alpha's small-sample correction is there.
    units = {"u1": ["a", "a"], "u2": ["a", "b"], "u3": ["b", "b"], "u4": ["b", "b"]}
    assert krippendorff_alpha(units) == pytest.approx(8 / 15)
    assert fleiss_kappa(list(units.values()))[0] == pytest.approx(0.4666667, abs=1e-6)


def test_alpha_missing_data_by_hand():
    # u1 has 3 values (weights 1/(m-1) = 1/2): o_aa = 1, o_ab = o_ba = 1, o_bb = 0; u2 adds o_bb = 2;
    # u3 (one value) is not pairable. n_a = 2, n_b = 3, n = 5: alpha = 1 - 4 * 2 / (2 * 2 * 3) = 1/3.
    units = {"u1": ["a", "a", "b"], "u2": ["b", "b"], "u3": ["a"]}
    assert krippendorff_alpha(units) == pytest.approx(1 / 3)
    assert krippendorff_alpha({"u1": ["a", "a", "b"], "u2": ["b", "b"]}) == pytest.approx(1 / 3)
    # a None/NaN is a missing value, not a category
    assert krippendorff_alpha({"u1": ["a", "a", "b", None], "u2": ["b", float("nan"), "b"], "u3": ["a", None]}) \
        == pytest.approx(1 / 3)
    # complete cases only (u2 alone) would have no variation: None, not 1/3
    assert krippendorff_alpha({"u2": ["b", "b"]}) is None


def test_alpha_levels_differ_by_hand():
    # o: o_12 = o_21 = 1, o_23 = o_32 = 1, o_11 = 2, o_33 = 4; n_1 = 3, n_2 = 2, n_3 = 5, n = 10.
    # nominal: 1 - 9 * 4 / (2 * (6 + 15 + 10)) = 13/31
    # interval: d2 = 1, 1, 4 -> 1 - 9 * 4 / (2 * (6 + 10 + 60)) = 29/38
    # ordinal: d2_12 = ((3 + 2) / 2)^2 = 6.25, d2_23 = ((2 + 5) / 2)^2 = 12.25, d2_13 = (10 - 4)^2 = 36
    #          -> 1 - 9 * 37 / (2 * (37.5 + 122.5 + 540)) = 1067/1400
    units = {"u1": [1, 2], "u2": [2, 3], "u3": [1, 1], "u4": [3, 3], "u5": [3, 3]}
    assert krippendorff_alpha(units, "nominal") == pytest.approx(13 / 31)
    assert krippendorff_alpha(units, "interval") == pytest.approx(29 / 38)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(1067 / 1400)
    # ordinal depends on the order only: relabelling 1, 2, 3 as 10, 20, 300 keeps it, interval does not
    relab = {k: [{1: 10, 2: 20, 3: 300}[x] for x in v] for k, v in units.items()}
    assert krippendorff_alpha(relab, "ordinal") == pytest.approx(1067 / 1400)
    assert krippendorff_alpha(relab, "interval") != pytest.approx(29 / 38)


def test_alpha_edges():
    perfect = {"u1": [1, 1, 1], "u2": [2, 2], "u3": [5, 5, 5, 5]}
    for level in ("nominal", "ordinal", "interval"):
        assert krippendorff_alpha(perfect, level) == 1.0
    assert krippendorff_alpha({"u1": [2, 2], "u2": [2, 2, 2]}, "interval") is None    # no variation
    assert krippendorff_alpha({"u1": [1], "u2": [2]}) is None                         # nothing pairable
    assert krippendorff_alpha({}) is None
    assert krippendorff_alpha({"u1": ["a", "b"], "u2": ["b", "a"]}) == pytest.approx(-0.5)   # 1 - 3 * 4 / 8
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(perfect, "ratio-ish")
    with pytest.raises(ValueError, match="numbers"):
        krippendorff_alpha({"u1": ["a", "b"]}, "interval")


def _alpha_by_definition(units, level):
    """alpha = 1 - D_o / D_e from all pairs of values (no coincidence matrix): D_o within units
    (weighted 1 / (m_u - 1)), D_e over every pair of pairable values."""
    units = [v for v in units.values() if len(v) >= 2]
    values = [x for v in units for x in v]
    n = len(values)
    freq = {c: values.count(c) for c in set(values)}
    srt = sorted(freq)

    def d2(c, k):
        if c == k:
            return 0.0
        if level == "nominal":
            return 1.0
        if level == "interval":
            return (c - k) ** 2
        lo, hi = sorted((c, k))
        return (sum(freq[g] for g in srt if lo <= g <= hi) - (freq[c] + freq[k]) / 2) ** 2

    d_o = sum(d2(v[i], v[j]) / (len(v) - 1) for v in units for i in range(len(v)) for j in range(len(v)) if i != j) / n
    d_e = sum(d2(values[i], values[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return 1 - d_o / d_e


def test_alpha_matches_its_definition_on_random_data():
    rng = random.Random(0)
    for _ in range(20):
        units = {f"u{i}": [rng.randint(1, 5) for _ in range(rng.randint(1, 4))] for i in range(rng.randint(3, 12))}
        for level in ("nominal", "ordinal", "interval"):
            a = krippendorff_alpha(units, level)
            if a is not None:
                assert a == pytest.approx(_alpha_by_definition(units, level)), (units, level)


def test_cohen_kappa_uses_each_raters_own_shares():
    # p_o = 1/2; p_e = 3/4 * 1/4 + 1/4 * 3/4 = 3/8 -> kappa = (1/2 - 3/8) / (5/8) = 0.2.
    # Pooled shares (Scott's pi) would give p_e = 1/2 and 0.
    assert cohen_kappa(["a", "a", "a", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.2)
    assert cohen_kappa([], []) is None


def test_eval_human_uses_the_same_functions():
    import jprefs.eval.human as human

    assert human.cohen_kappa is cohen_kappa and human.fleiss_kappa is fleiss_kappa


def test_kendall_tau_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    for _ in range(20):
        k = rng.randint(2, 6)
        a, b = list(range(k)), list(range(k))
        rng.shuffle(a)
        rng.shuffle(b)
        pa, pb = [a.index(i) for i in range(k)], [b.index(i) for i in range(k)]
        assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(pa, pb).statistic)
    assert kendall_tau([0, 1, 2, 3], [3, 1]) == -1.0          # only the common responses count
    assert kendall_tau([0, 1], [2, 3]) is None


def _labels(mode, table):
    return [Label(item, ann, mode, value) for (item, ann), value in table.items()]


AB = {("i1", "A"): "left", ("i2", "A"): "left", ("i3", "A"): "right", ("i4", "A"): "tie", ("i5", "A"): "left",
      ("i6", "A"): "right",
      ("i1", "B"): "left", ("i2", "B"): "right", ("i3", "B"): "right", ("i4", "B"): "tie", ("i5", "B"): "cant_tell",
      ("i1", "C"): "left", ("i2", "C"): "right", ("i3", "C"): "left", ("i5", "C"): "left"}


def test_ab_report_by_hand():
    rep = agreement(_labels("ab", {k: {"label": v} for k, v in AB.items()}))
    assert list(rep) == ["ab"]
    r = rep["ab"]
    assert (r["n_items"], r["n_labels"], r["annotators"]) == (6, 15, ["A", "B", "C"])
    assert r["missing"] == {"cant_tell": 1} and r["items_one_annotator"] == 1 and r["n_invalid"] == 0
    pairs = {tuple(p["annotators"]): p for p in r["pairs"]}
    # A/B on i1-i4 (B can't tell i5): L L R T vs L R R T; p_e = (2*1 + 1*2 + 1*1) / 16 -> 7/11
    assert pairs["A", "B"]["n"] == 4 and pairs["A", "B"]["agreement"] == 0.75
    assert pairs["A", "B"]["cohen_kappa"] == pytest.approx(7 / 11)
    # A/C on i1, i2, i3, i5: L L R L vs L R L L; p_e = 10/16 -> (8/16 - 10/16) / (6/16) = -1/3
    assert pairs["A", "C"]["n"] == 4 and pairs["A", "C"]["cohen_kappa"] == pytest.approx(-1 / 3)
    # B/C on i1-i3: L R R vs L R L; p_e = 4/9 -> 2/5
    assert pairs["B", "C"]["agreement"] == pytest.approx(2 / 3) and pairs["B", "C"]["cohen_kappa"] == pytest.approx(0.4)
    # Fleiss on the 3 items with 3 usable labels (i1-i3; i4, i5 have 2): P = 5/9, P_e = 41/81 -> 0.1
    f = r["fleiss"]
    assert (f["n_items"], f["raters"], f["of_items"]) == (3, 3, 5) and f["kappa"] == pytest.approx(0.1)
    assert f["mean_pairwise_agreement"] == pytest.approx(5 / 9) and "3 usable labels" in f["on"]
    # alpha over i1-i5: o_LL = 5, o_LR = o_RL = 2, o_RR = 2, o_TT = 2; n = 13 -> 1 - 12 * 4 / 100 = 0.52
    k = r["krippendorff"]
    assert k["alpha"] == pytest.approx(0.52) and (k["n_units"], k["level"]) == (5, "nominal")
    items = r["items"]
    assert [i["item_id"] for i in items] == ["i2", "i3", "i1", "i4", "i5"]
    assert [i["disagreement"] for i in items] == pytest.approx([2 / 3, 2 / 3, 0, 0, 0])
    assert items[-1]["n"] == 2 and items[-1]["labels"] == {"A": "left", "B": "cant_tell", "C": "left"}
    json.dumps(rep, allow_nan=False)


RANK = {("r1", "A"): [0, 1, 2], ("r1", "B"): [0, 2, 1],
        ("r2", "A"): [2, 1, 0], ("r2", "B"): [0, 1, 2],
        ("r3", "A"): None, ("r3", "B"): [1, 0, 2]}


def test_rank_report_by_hand():
    labels = [Label(i, a, "rank", {"order": o or [], "all_bad": o is None}) for (i, a), o in RANK.items()]
    r = agreement(labels)["rank"]
    assert r["missing"] == {"all_bad": 1} and r["n_units"] == 9   # r3's 3 pairs have B's labels only
    (p,) = r["pairs"]
    # 6 common units (r1, r2): agree on r1's (0,1), (0,2) only; A: i>j x3, j>i x3; B: i>j x5, j>i x1
    # p_e = (3*5 + 3*1) / 36 = 1/2 -> (1/3 - 1/2) / (1/2) = -1/3
    assert (p["n"], p["n_items"]) == (6, 2) and p["agreement"] == pytest.approx(1 / 3)
    assert p["cohen_kappa"] == pytest.approx(-1 / 3)
    # alpha: o_ii = 4, o_ij = o_ji = 4, n_i = 8, n_j = 4, n = 12 -> 1 - 11 * 8 / 64 = -0.375
    assert r["krippendorff"]["alpha"] == pytest.approx(-0.375) and r["krippendorff"]["n_units"] == 6
    items = r["items"]   # r3 has one order only
    assert [i["item_id"] for i in items] == ["r2", "r1"]
    assert items[0]["mean_kendall_tau"] == -1.0 and items[0]["disagreement"] == 1.0
    assert items[1]["mean_kendall_tau"] == pytest.approx(1 / 3) and items[1]["disagreement"] == pytest.approx(1 / 3)
    # the all_bad flag: F F T vs F F F -> kappa 0 (p_o = p_e = 2/3); alpha: n_F = 5, n_T = 1 -> 1 - 5 * 2 / 10 = 0
    ab = r["all_bad"]
    assert ab["n_labels"] == 1 and ab["pairs"][0]["cohen_kappa"] == pytest.approx(0.0)
    assert ab["krippendorff"]["alpha"] == pytest.approx(0.0)
    assert ab["items"][0]["item_id"] == "r3" and ab["items"][0]["disagreement"] == 1.0
    json.dumps(r, allow_nan=False)


def test_rank_mean_tau_over_three_annotators():
    orders = {"A": [0, 1, 2, 3], "B": [0, 1, 3, 2], "C": [3, 2, 1, 0]}
    r = agreement([Label("x", a, "rank", {"order": o}) for a, o in orders.items()])["rank"]
    # taus: A/B 4/6, A/C -1, B/C -4/6 -> mean -1/3, disagreement 2/3
    (item,) = r["items"]
    assert item["n"] == 3 and item["mean_kendall_tau"] == pytest.approx(-1 / 3)
    assert item["disagreement"] == pytest.approx(2 / 3)
    assert r["fleiss"]["raters"] == 3 and r["fleiss"]["n_items"] == 6


def test_reward_scores_are_ordinal():
    a, b = [1, 2, 1, 3, 3], [2, 3, 1, 3, 3]
    labels = [Label(f"u{i}", ann, "reward", {"score": s}) for ann, ss in (("A", a), ("B", b))
              for i, s in enumerate(ss)]
    r = agreement(labels)["reward"]
    assert (r["variable"], r["level"]) == ("score", "ordinal") and "thumb" not in r
    assert r["krippendorff"]["alpha"] == pytest.approx(1067 / 1400)   # not 13/31 (nominal)
    (p,) = r["pairs"]
    # Cohen (nominal): p_o = 3/5, p_e = (2*1 + 1*1 + 2*3) / 25 = 9/25 -> 6/16
    assert p["cohen_kappa"] == pytest.approx(0.375) and p["krippendorff_alpha"] == pytest.approx(1067 / 1400)
    assert r["items"][0]["spread"] == 1 and r["items"][-1]["spread"] == 0


def test_reward_thumbs_and_both_kinds():
    th = {("t1", "A"): "up", ("t1", "B"): "up", ("t2", "A"): "down", ("t2", "B"): "up"}
    r = agreement(_labels("reward", {k: {"thumb": v} for k, v in th.items()}))["reward"]
    assert (r["variable"], r["level"]) == ("thumb", "nominal")
    # p_o = 1/2, A: up 1/2, B: up 1 -> p_e = 1/2 -> 0; alpha: o_uu = 2, o_ud = o_du = 1, n_u = 3, n_d = 1, n = 4
    # -> 1 - 3 * 2 / (2 * 3 * 1) = 0
    assert r["pairs"][0]["cohen_kappa"] == pytest.approx(0.0) and r["krippendorff"]["alpha"] == pytest.approx(0.0)
    assert [i["disagreement"] for i in r["items"]] == [1.0, 0.0]
    mixed = _labels("reward", {k: {"thumb": v} for k, v in th.items()}) + \
        [Label("s1", "A", "reward", {"score": 4}), Label("s1", "B", "reward", {"score": 5})]
    r = agreement(mixed)["reward"]
    # the scores: one unit (4, 5): o_45 = o_54 = 1, n = 2 -> 1 - 1 * 2 / 2 = 0
    assert r["variable"] == "score" and r["krippendorff"]["alpha"] == pytest.approx(0.0)
    assert r["thumb"]["krippendorff"]["alpha"] == pytest.approx(0.0) and "both scores and thumbs" in r["thumb"]["note"]
    assert r["thumb"]["items"][0]["item_id"] == "t2" and r["items"][0]["item_id"] == "s1"


def test_one_annotator_single_items_and_empty_modes():
    labels = [Label("t1", "sato", "review", {"verdict": "accept", "reason": ""}),
              Label("t2", "sato", "review", {"verdict": "reject", "reason": "訳抜け"})]
    rep = agreement(labels, modes=["review", "ab"])
    assert list(rep) == ["ab", "review"]
    r = rep["review"]
    assert r["pairs"] == [] and r["krippendorff"]["alpha"] is None and r["fleiss"]["kappa"] is None
    assert r["krippendorff"]["reason"] == "one annotator only" and "one annotator only" in r["note"]
    assert r["items"] == [] and r["items_one_annotator"] == 2
    e = rep["ab"]
    assert (e["n_labels"], e["n_items"], e["note"]) == (0, 0, "no labels yet") and e["krippendorff"]["alpha"] is None
    # two annotators on different items: nothing in common
    r = agreement([Label("t1", "sato", "review", {"verdict": "accept"}),
                   Label("t2", "kato", "review", {"verdict": "reject"})])["review"]
    assert r["pairs"][0]["n"] == 0 and r["pairs"][0]["cohen_kappa"] is None and "no items" in r["pairs"][0]["reason"]
    assert "overlap" in r["note"] and r["krippendorff"]["reason"].startswith("no item has")
    assert agreement([]) == {}
    for rp in (rep, agreement([])):
        json.dumps(rp, allow_nan=False)


def test_bad_labels_are_counted_not_fatal():
    labels = [Label("i1", "A", "ab", {"label": "left"}), Label("i1", "B", "ab", {"label": "LEFT!"}),
              Label("i2", "A", "rank", {"order": [0, 0]}), Label("i2", "B", "rank", {"order": [1, 0]}),
              Label("i3", "A", "reward", {"score": 7}), Label("i3", "B", "reward", {"score": True})]
    rep = agreement(labels)
    assert rep["ab"]["n_invalid"] == 1 and "LEFT!" in rep["ab"]["invalid"][0]["reason"]
    assert rep["rank"]["n_invalid"] == 1 and "twice" in rep["rank"]["invalid"][0]["reason"]
    assert rep["reward"]["n_invalid"] == 2
    with pytest.raises(DataError, match="two ab labels"):
        agreement([Label("i1", "A", "ab", {"label": "left"}), Label("i1", "A", "ab", {"label": "tie"})])
    with pytest.raises(DataError, match="mode 'vote'"):
        agreement([Label("i1", "A", "vote", {})])


def test_agreement_text():
    txt = agreement_text(agreement(_labels("ab", {k: {"label": v} for k, v in AB.items()})))
    assert txt.startswith("== ab: 6 items, 15 labels, 3 annotators (A, B, C)")
    assert "missing (left out, not a category): cant_tell 1" in txt
    assert "A / B" in txt and "0.636" in txt and "-0.333" in txt       # 7/11 and -1/3
    assert "Fleiss' kappa: 0.100 on the 3 items with 3 usable labels" in txt
    assert "Krippendorff's alpha (nominal): 0.520 over 5 items" in txt
    assert re.search(r"^  i2 +3 +0\.667 +A=left B=right C=right$", txt, re.M)
    # top 10 of 12 disagreed items, a pair kappa that is undefined shown with its reason
    labels = [Label(f"x{i:02d}", a, "ab", {"label": lab}) for i in range(12) for a, lab in (("A", "left"),
                                                                                          ("B", "right"))]
    txt = agreement_text(agreement(labels))
    assert "top 10 of 12" in txt and "x09" in txt and "x10" not in txt
    assert re.search(r"^  A / B +12 +0\.000 +0\.000$", txt, re.M)      # never agree, p_e = 0: kappa 0
    txt = agreement_text(agreement([Label(f"x{i}", a, "ab", {"label": "tie"}) for i in range(3) for a in "AB"]))
    assert "1.000  n/a (both gave one and the same label to every common item: chance agreement is 1)" in txt
    assert "Krippendorff's alpha (nominal): n/a (no variation" in txt
    assert agreement_text({}) == "no labels yet: nothing to compare\n"
    rank = agreement([Label(i, a, "rank", {"order": o or [], "all_bad": o is None}) for (i, a), o in RANK.items()])
    txt = agreement_text(rank)
    assert "9 response pairs" in txt and "'all bad' flag" in txt and "A=2>1>0 B=0>1>2" in txt
