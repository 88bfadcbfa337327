"""`jprefs eval rm --probe-train`: the probe baseline end to end on a tiny model folder, a tiny backbone and
a few pairs (metrics.json, report.md, probe.json, probe_scores.jsonl recomputed by hand), and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jprefs.eval import metrics as M

from .test_eval_rm import _run, _write_jsonl, save_engineered

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train_rows():
    """36 training pairs on 12 prompts none of which is in the design set: 良 chosen, 悪 rejected;
    the chosen answer is the shorter one in a third of them."""
    rows = []
    for i in range(36):
        a, b = (6 + i % 4, 14 + i % 3) if i % 3 == 0 else (14 + i % 3, 6 + i % 4)
        rows.append({"prompt": "くんれん" + "なにぬねのはひふへほまみ"[i % 12], "chosen": "良" + "か" * a,
                     "rejected": "悪" + "さ" * b, "source": "toy", "license": "cc0-1.0"})
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from ..classifiers.conftest import make_backbone_dir

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("rmprobe")
    return {**save_engineered(d), "train": _write_jsonl(d / "train.jsonl", _train_rows()),
            "backbone": make_backbone_dir(d / "tiny-backbone", seed=1)}


def _probe_args(s, train=None):
    return ["--probe-train", train or s["train"], "--probe-backbone", s["backbone"], "--probe-prefix", "",
            "--probe-max-length", "64", "--probe-max-prompt-length", "16"]


def test_probe_baseline_end_to_end(setup, tmp_path, capsys):
    out = tmp_path / "o"
    rc, stdout, err = _run(["--model", setup["quality"], "--model", setup["length"], "--data", setup["design"],
                            "-o", str(out), "--seed", "2", *_probe_args(setup)], capsys)
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    pb = m["data"]["design"]["probe_baseline"]
    for k in ("accuracy", "ci95", "length_controlled_accuracy", "length_controlled_ci95", "length_controlled_n",
              "length_matched_accuracy", "accuracy_minus_length_baseline", "models", "l2", "cv_accuracy",
              "length_weight"):
        assert k in pb, k
    # the figures are those of the probe's own scores, recomputed here from probe_scores.jsonl
    rows = [json.loads(x) for x in (out / "probe_scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 20 and [r["pair"] for r in rows] == list(range(20))
    sc, sr = np.array([r["s_chosen"] for r in rows]), np.array([r["s_rejected"] for r in rows])
    lc, lr = [r["len_chosen"] for r in rows], [r["len_rejected"] for r in rows]
    groups = [r["prompt_key"] for r in rows]
    ref = M.accuracy_metrics(sc, sr, lc, lr, groups, seed=2)
    assert pb["accuracy"] == pytest.approx(ref["pairwise_accuracy"]) and pb["ci95"] == ref["ci95"]
    assert pb["length_controlled_accuracy"] == pytest.approx(ref["length_controlled_accuracy"])
    assert pb["length_controlled_n"] == 4
    # the paired difference model - probe, for every model, with the shared bootstrap
    from jprefs.eval.stats import paired_bootstrap_ci

    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    for model in ("quality-rm", "length-rm"):
        mine = [r for r in scores if r["model"] == model]
        won = M.wins([r["r_chosen"] for r in mine], [r["r_rejected"] for r in mine])
        d, ci = paired_bootstrap_ci(won, M.wins(sc, sr), groups, seed=2)
        assert pb["models"][model]["accuracy_minus_probe"] == pytest.approx(d)
        assert pb["models"][model]["ci95"] == list(ci)
        assert m["results"][model]["design"]["accuracy_minus_probe"] == pytest.approx(d)
        lb = next(r for r in m["leaderboard"]["design"] if r["model"] == model)
        assert lb["accuracy_minus_probe_ci95"] == list(ci)
    assert pb["models"]["quality-rm"]["accuracy_minus_probe"] == pytest.approx(0.75 - pb["accuracy"])
    # the fitted probe: JSON, reloadable, and it reproduces the scores
    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.probe import Embedder, LengthProbe, probe_pair_scores

    probe = LengthProbe.from_dict(json.loads((out / "probe.json").read_text(encoding="utf-8")))
    assert probe.n_train_pairs == 36 and probe.n_train_prompts == 12 and probe.l2 == pb["l2"]
    emb = Embedder(setup["backbone"], input_prefix="", max_length=64, max_prompt_length=16, device="cpu")
    s2c, s2r = probe_pair_scores(probe, load_rm_data(setup["design"]).pairs(), emb)
    assert s2c == pytest.approx(sc, abs=1e-5) and s2r == pytest.approx(sr, abs=1e-5)
    run = m["probe"]
    assert run["n_train_pairs"] == 36 and run["l2"] == probe.l2 and run["length_weight"] == probe.length_weight
    assert "--probe-train" in m["command"] and "--probe-max-length 64" in m["command"]
    # the report: the probe section, the probe beside longer wins in the leaderboard, a row per model table
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Probe baseline" in md and "| probe | accuracy - probe (paired) |" in md
    assert "| - | probe (frozen embeddings + log length) | " in md and "| - | longer wins (baseline) | " in md
    assert "| probe baseline (frozen embeddings + log length) |" in md
    assert f"{pb['accuracy']:.3f} [" in md
    for model in ("quality-rm", "length-rm"):
        lo = pb["models"][model]["ci95"][0]
        warned = f"{model} on design: not shown to beat the probe baseline" in md
        assert warned == (lo <= 0), (model, lo)
    assert f"probe {pb['accuracy']:.3f}" in stdout
    assert "Probe baseline" in (out / "report.html").read_text(encoding="utf-8")
    assert "dash-dot: probe" in md and (out / "leaderboard_design.png").stat().st_size > 1000


def test_report_warns_only_when_a_model_is_not_above_the_probe(setup, tmp_path, capsys):
    from jprefs.eval.rm_report import build_report

    rc, _, err = _run(["--model", setup["quality"], "--data", setup["design"], "-o", str(tmp_path / "o"),
                       "--no-plots", *_probe_args(setup)], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    r = m["results"]["quality-rm"]["design"]
    r["accuracy_minus_probe"], r["accuracy_minus_probe_ci95"] = 0.2, [0.05, 0.3]
    assert "not shown to beat the probe" not in build_report(m).markdown(tmp_path / "o")
    r["accuracy_minus_probe"], r["accuracy_minus_probe_ci95"] = -0.2, [-0.3, -0.1]
    assert "not shown to beat the probe baseline (frozen embeddings + log length): paired difference " \
           "-0.200 [-0.300, -0.100] is below 0." in build_report(m).markdown(tmp_path / "o")


def test_without_probe_train_nothing_changes(setup, tmp_path, capsys):
    rc, _, err = _run(["--model", setup["quality"], "--data", setup["design"], "-o", str(tmp_path / "o"),
                       "--no-plots"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    assert "probe" not in m and "probe_baseline" not in m["data"]["design"]
    assert "accuracy_minus_probe" not in m["results"]["quality-rm"]["design"]
    assert not (tmp_path / "o" / "probe.json").exists()
    assert "Probe baseline" not in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", ["missing", "empty", "no_pairs"])
def test_bad_probe_train_is_one_clear_error(setup, tmp_path, capsys, case):
    if case == "missing":
        train, named = str(tmp_path / "nowhere.jsonl"), "input file not found"
    elif case == "empty":
        (tmp_path / "empty.jsonl").write_text("")
        train, named = str(tmp_path / "empty.jsonl"), "the file is empty"
    else:
        train = _write_jsonl(tmp_path / "same.jsonl", [{"prompt": "a", "chosen": "同じ", "rejected": "同じ"}])
        named = "no usable preference pairs"
    rc, _, err = _run(["--model", setup["quality"], "--data", setup["design"], "-o", str(tmp_path / "o"),
                       *_probe_args(setup, train)], capsys)
    assert rc == 2
    assert err.startswith("jprefs eval: error:") and "--probe-train" in err and named in err
    assert "Traceback" not in err and "fix: pass the reward model's TRAINING pairs" in err
    assert not (tmp_path / "o").exists()
