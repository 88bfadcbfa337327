"""`jprefs eval rm` and Hub models: `--model ORG/NAME@REV` / `--revision REV` read that snapshot and
record it (fingerprint, labels, report, plot titles); a revision of a local folder is an error; `--label`
is ignored for a jprefs reward model on the Hub as it is for a local one.

The Hub is the Hub cache alone (offline, tests/conftest.py): `huggingface_hub.constants.HF_HUB_CACHE`
points at a folder laid out as `hf download` leaves it (refs/BRANCH -> commit, snapshots/COMMIT/...)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

MAIN, V1 = "a" * 40, "b" * 40


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _cache_repo(hub: Path, repo_id: str, refs: dict[str, tuple[str, Path]]) -> None:
    """``refs``: branch -> (commit, folder whose files that commit holds)."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref, (commit, src) in refs.items():
        (repo / "refs" / ref).write_text(commit)
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy(f, snap / f.name)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """me/ja-rm: a jprefs reward model, main = the quality model, v1 = the length detector; me/clf1 and
    me/clf2: plain classifiers with one and two logits; all in a Hub cache folder."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from ..classifiers.conftest import make_model, make_tokenizer
    from .test_eval_rm import save_engineered

    d = tmp_path_factory.mktemp("hubrev")
    saved = save_engineered(d)
    tok = make_tokenizer()
    for name, n in (("clf1", 1), ("clf2", 2)):
        m = make_model(n, seed=n)
        if n == 2:
            m.config.id2label, m.config.label2id = {0: "bad", 1: "good"}, {"bad": 0, "good": 1}
        m.save_pretrained(d / name)
        tok.save_pretrained(d / name)
    cache = d / "hub"
    _cache_repo(cache, "me/ja-rm", {"main": (MAIN, Path(saved["quality"])), "v1": (V1, Path(saved["length"]))})
    _cache_repo(cache, "me/clf1", {"main": (MAIN, d / "clf1")})
    _cache_repo(cache, "me/clf2", {"main": (MAIN, d / "clf2")})
    return {**saved, "cache": cache, "clf1": d / "clf1", "clf2": d / "clf2"}


@pytest.fixture
def offline_cache(hub, monkeypatch):
    import huggingface_hub.constants as hc

    assert hc.HF_HUB_OFFLINE        # never the network: tests/conftest.py sets HF_HUB_OFFLINE=1 before imports
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub["cache"]))
    return hub


def _run(argv, capsys):
    from jprefs.cli import main

    rc = main(["eval", "rm", *argv])
    cap = capsys.readouterr()
    return rc, cap.err


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def test_model_at_revision_reads_that_snapshot_and_every_output_names_it(offline_cache, tmp_path, capsys):
    h, out = offline_cache, tmp_path / "o"
    rc, err = _run(["--model", "me/ja-rm@v1", "--model", "me/ja-rm", "--data", h["design"], "--no-plots",
                    "--device", "cpu", "-o", str(out)], capsys)
    assert rc == 0, err
    m = _metrics(out)
    assert set(m["models"]) == {"ja-rm@v1", "ja-rm"}        # the default label names the revision asked for
    v1, main_ = m["models"]["ja-rm@v1"]["fingerprint"], m["models"]["ja-rm"]["fingerprint"]
    length_w, quality_w = _sha(Path(h["length"]) / "model.safetensors"), _sha(Path(h["quality"]) / "model.safetensors")
    assert (v1["hub_id"], v1["revision"], v1["commit"], v1["weights_sha256"]) == ("me/ja-rm", "v1", V1, length_w)
    assert (main_["hub_id"], main_["revision"], main_["commit"], main_["weights_sha256"]) == \
        ("me/ja-rm", "main", MAIN, quality_w)
    assert m["models"]["ja-rm@v1"]["path"] == "me/ja-rm"
    # the scores are those of each snapshot: v1 is the length detector (= longer wins), main the quality model
    assert m["results"]["ja-rm@v1"]["design"]["pairwise_accuracy"] == pytest.approx(0.8)
    assert m["results"]["ja-rm@v1"]["design"]["length_controlled_accuracy"] == 0.0
    assert m["results"]["ja-rm"]["design"]["length_controlled_accuracy"] == pytest.approx(0.75)
    assert "--model me/ja-rm@v1 --model me/ja-rm " in m["command"]
    rep = (out / "report.md").read_text(encoding="utf-8")
    assert "## Model: ja-rm@v1" in rep and "| ja-rm@v1 |" in rep
    assert f"from me/ja-rm at commit {V1[:12]} (revision v1)." in rep
    assert f"from me/ja-rm at commit {MAIN[:12]} (revision main)." in rep
    scored = {json.loads(x)["model"] for x in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()}
    assert scored == {"ja-rm@v1", "ja-rm"}


def test_revision_option_applies_to_every_hub_model_and_at_rev_wins(offline_cache, tmp_path, capsys, monkeypatch):
    import jprefs.eval.plots as plots

    titles: list[str] = []

    def record(*a, title="", **k):          # the title only; a placeholder file for the report to embed
        titles.append(title)
        next(x for x in a if isinstance(x, Path)).write_bytes(b"\x89PNG\r\n\x1a\n")

    for name in ("plot_leaderboard", "plot_reliability", "plot_rewards", "plot_reward_vs_length"):
        monkeypatch.setattr(plots, name, record)
    h, out = offline_cache, tmp_path / "o"
    rc, err = _run(["--model", "me/ja-rm", "--model", "q=me/ja-rm@main", "--revision", "v1", "--data", h["design"],
                    "--device", "cpu", "-o", str(out)], capsys)
    assert rc == 0, err
    m = _metrics(out)
    assert m["models"]["ja-rm@v1"]["fingerprint"]["revision"] == "v1"
    assert m["models"]["ja-rm@v1"]["fingerprint"]["commit"] == V1
    assert m["models"]["q"]["fingerprint"]["revision"] == "main"          # its own @main over --revision v1
    assert m["models"]["q"]["fingerprint"]["commit"] == MAIN
    assert "--revision v1" in m["command"]
    # a plot alone says which model: the label and the Hub id at its revision
    per_model = [t for t in titles if " on design: " in t]
    assert len(per_model) == 6
    assert sum(t.startswith("ja-rm@v1 (me/ja-rm@v1) on design: ") for t in per_model) == 3
    assert sum(t.startswith("q (me/ja-rm@main) on design: ") for t in per_model) == 3


@pytest.mark.parametrize("how", ["option", "at"])
def test_a_revision_of_a_local_folder_is_an_error(offline_cache, tmp_path, capsys, how):
    h, out = offline_cache, tmp_path / "o"
    spec = h["quality"] + ("@v1" if how == "at" else "")
    extra = ["--revision", "v1"] if how == "option" else []
    rc, err = _run(["--model", "me/ja-rm", "--model", spec, *extra, "--data", h["design"], "--device", "cpu",
                    "-o", str(out)], capsys)
    assert rc == 2
    assert err.startswith("jprefs eval: error:") and "Traceback" not in err
    assert f"{h['quality']} is a local folder, and a local folder has no revisions" in err
    assert ("--revision v1:" in err and "--model ORG/NAME@REV" in err) if how == "option" else \
        (f"--model {spec}:" in err and "drop '@v1'" in err)
    assert not (out / "metrics.json").exists()     # refused before any model was loaded or anything written


def test_label_is_ignored_for_a_jprefs_reward_model_on_the_hub_as_in_a_folder(offline_cache, tmp_path, capsys):
    h = offline_cache
    rc, err = _run(["--model", "me/ja-rm@v1", "--model", h["length"], "--label", "0", "--data", h["design"],
                    "--no-plots", "--device", "cpu", "-o", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert "ja-rm@v1: --label ignored" in err and "length-rm: --label ignored" in err
    res = _metrics(tmp_path / "o")["results"]
    assert res["ja-rm@v1"]["design"]["pairwise_accuracy"] == res["length-rm"]["design"]["pairwise_accuracy"]


def test_label_on_hub_classifiers_follows_their_logits_like_local_ones(offline_cache, tmp_path, capsys):
    h = offline_cache
    rc, err = _run(["--model", "me/clf2", "--model", "me/clf1", "--label", "bad", "--data", h["design"],
                    "--no-plots", "--device", "cpu", "-o", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    m = _metrics(tmp_path / "o")
    assert m["models"]["clf2"]["chosen_index"] == 0                     # two logits: the label picks one
    assert "clf1: --label ignored" in err and "clf2: --label ignored" not in err


def test_an_uncached_hub_model_fails_before_any_model_is_loaded(offline_cache, tmp_path, capsys):
    h, out = offline_cache, tmp_path / "o"
    rc, err = _run(["--model", h["quality"], "--model", "me/ja-rm@nope", "--data", h["design"], "--device", "cpu",
                    "-o", str(out)], capsys)
    assert rc == 2 and "'me/ja-rm' (revision nope) is not in the local Hugging Face cache" in err
    assert "hf download me/ja-rm --revision nope" in err and "quality-rm: RewardModel" not in err


def test_split_revision(tmp_path):
    from jprefs.eval.rm import _split_revision

    assert _split_revision("me/ja-rm@v1") == ("me/ja-rm", "v1")
    assert _split_revision("me/ja-rm@refs/pr/1") == ("me/ja-rm", "refs/pr/1")      # a branch may hold '/'
    assert _split_revision("me/ja-rm") == ("me/ja-rm", None)
    assert _split_revision("me/ja-rm@") == ("me/ja-rm@", None)
    odd = tmp_path / "rm@2024"                    # a folder whose name holds '@' is that folder
    odd.mkdir()
    assert _split_revision(str(odd)) == (str(odd), None)
    assert _split_revision(f"{tmp_path}/rm@2024x") == (f"{tmp_path}/rm@2024x", None)   # neither id nor folder
