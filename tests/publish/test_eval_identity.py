"""`jprefs push model --eval`: a report is this model's when the weights it scored are this folder's
(the fingerprint `jprefs eval rm` records), wherever the folder was; older reports keep the path check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jprefs.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.classifiers.conftest import train_tiny_rm

    return train_tiny_rm(tmp_path_factory.mktemp("rm"), backbone_license="apache-2.0")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _eval(model: str, data: str, out: Path, capsys) -> Path:
    assert main(["eval", "rm", "--model", model, "--data", data, "--no-plots", "-o", str(out)]) == 0
    capsys.readouterr()
    return out


def _stage(folder: Path, report: Path, root: Path, **kw):
    from jprefs.publish.model import stage_model

    root.mkdir()
    return stage_model(folder, root, repo_id="me/ja-rm", eval_dirs=[str(report)], **kw)


def _retrain(folder: Path) -> None:
    """Other weights in ``folder``, its jprefs_reward.json (settings, centring constant) untouched: what a
    second training run of the same recipe looks like to the old check."""
    from safetensors.torch import load_file, save_file

    w = load_file(folder / "model.safetensors")
    k = next(k for k in sorted(w) if k.startswith("classifier."))
    w[k] = w[k] + 0.25
    save_file(w, folder / "model.safetensors", metadata={"format": "pt"})


def _sha(folder: Path) -> str:
    import hashlib

    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_a_report_of_the_folder_before_it_was_retrained_is_refused_naming_both_digests(trained, tmp_path, capsys):
    from jprefs.errors import DataError

    rm = _copy(trained, tmp_path / "rm")
    ev = _eval(str(rm), str(rm / "eval_split.jsonl"), tmp_path / "ev", capsys)
    before = _sha(rm)
    _retrain(rm)                                   # same path, same settings and centre: other weights
    after = _sha(rm)
    assert before != after
    for allow in (False, True):                    # known to be another model: the override does not take it
        with pytest.raises(DataError) as e:
            _stage(rm, ev, tmp_path / f"repo-{allow}", allow_unverified_eval=allow)
        msg = str(e.value)
        assert before[:12] in msg and after[:12] in msg and "trained again" in msg
        assert f"jprefs eval rm --model {rm} --data" in msg and "--allow-unverified-eval" not in msg


def test_a_moved_folder_with_the_same_weights_is_accepted_and_the_card_names_them(trained, tmp_path, capsys):
    rm = _copy(trained, tmp_path / "rm")
    ev = _eval(str(rm), str(rm / "eval_split.jsonl"), tmp_path / "ev", capsys)
    moved = tmp_path / "elsewhere" / "rm-final"
    moved.parent.mkdir()
    rm.rename(moved)                               # the recorded path is gone
    card = _stage(moved, ev, tmp_path / "repo").card
    section = card.split("## Evaluations (`jprefs eval rm`)", 1)[1]
    assert "This model is `rm` in the report." in section and "Not verified" not in section
    assert f"Evaluated: weights SHA-256 {_sha(moved)[:12]}." in section
    assert f"Identity: weights SHA-256 {_sha(moved)[:12]}." in section        # the report's model section
    assert str(tmp_path) not in card


def test_an_old_report_without_a_fingerprint_keeps_the_path_check(trained, tmp_path, capsys):
    from jprefs.errors import DataError

    rm = _copy(trained, tmp_path / "rm")
    ev = _eval(str(rm), str(rm / "eval_split.jsonl"), tmp_path / "ev", capsys)
    m = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    fp = m["models"]["rm"].pop("fingerprint")        # as a report written before fingerprints
    assert fp["weights_sha256"] == _sha(rm)
    for d in m["data"].values():
        d.pop("sha256")
    (ev / "metrics.json").write_text(json.dumps(m), encoding="utf-8")
    # this path with these settings: accepted, and the card claims no fingerprint
    card = _stage(rm, ev, tmp_path / "r1").card
    assert "This model is `rm` in the report." in card and "Evaluated: weights" not in card
    _retrain(rm)         # the old check cannot see other weights behind the same path and settings
    assert "This model is `rm` in the report." in _stage(rm, ev, tmp_path / "r2").card
    moved = tmp_path / "moved"
    rm.rename(moved)     # a path that is gone: unverified, the override puts it in the card with that said
    with pytest.raises(DataError, match="--allow-unverified-eval"):
        _stage(moved, ev, tmp_path / "r3")
    assert "**Not verified to be this model's report**" in _stage(moved, ev, tmp_path / "r4",
                                                                  allow_unverified_eval=True).card


def test_the_training_rows_warning_reads_the_recorded_digest_when_the_data_file_is_gone(trained, tmp_path, capsys):
    import yaml

    rm = _copy(trained, tmp_path / "rm")
    train = Path(yaml.safe_load((rm / "config.yaml").read_text())["data"])
    data = shutil.copy(train, tmp_path / "train-copy.jsonl")
    ev = _eval(str(rm), str(data), tmp_path / "ev", capsys)
    Path(data).unlink()                        # the file scored is gone: its recorded SHA-256 still tells
    assert "**These figures include the model's own training rows**" in _stage(rm, ev, tmp_path / "repo").card


def test_a_report_of_the_hub_copy_is_this_model_and_the_card_names_the_commit(trained, tmp_path):
    """The Hub copy `jprefs push` made holds the same weights: a report that scored it (here from the
    Hub cache, offline) records the commit and the weights, and is this folder's without the override."""
    commit = "1b2c3d4e5f6a" + "0" * 28
    repo = tmp_path / "hub" / "models--me--ja-rm"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in trained.iterdir():
        if f.is_file() and f.suffix in (".json", ".safetensors"):
            shutil.copy(f, snap / f.name)
    ev = tmp_path / "ev"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "eval", "rm", "--model", "me/ja-rm", "--data",
                        str(trained / "eval_split.jsonl"), "--no-plots", "--device", "cpu", "-o", str(ev)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    fp = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))["models"]["ja-rm"]["fingerprint"]
    assert fp["hub_id"] == "me/ja-rm" and fp["revision"] == "main" and fp["commit"] == commit
    assert fp["weights_sha256"] == _sha(trained)
    card = _stage(trained, ev, tmp_path / "repo").card
    assert "Not verified" not in card
    assert f"Evaluated: weights SHA-256 {_sha(trained)[:12]}, from me/ja-rm at commit {commit[:12]} " \
           f"(revision main)." in card
