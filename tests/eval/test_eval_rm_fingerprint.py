"""`jprefs eval rm` records which weights it scored (`models[LABEL]["fingerprint"]`) and which data
(`data[NAME]["sha256"]`): stable across runs, changed by any change of a weights file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jprefs.cli import main


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    pytest.importorskip("torch")
    from .test_eval_rm import save_engineered

    return save_engineered(tmp_path_factory.mktemp("fp"))


def _metrics(saved, out: Path, capsys) -> dict:
    assert main(["eval", "rm", "--model", saved["quality"], "--data", saved["design"], "--no-plots",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def test_the_fingerprint_is_the_weights_digest_stable_across_runs_and_changed_by_the_weights(saved, tmp_path, capsys):
    from jprefs.eval.rm import weights_fingerprint

    folder = Path(saved["quality"])
    a = _metrics(saved, tmp_path / "a", capsys)
    b = _metrics(saved, tmp_path / "b", capsys)
    fa, fb = a["models"]["quality-rm"]["fingerprint"], b["models"]["quality-rm"]["fingerprint"]
    want = _sha(folder / "model.safetensors")          # one weights file: its own SHA-256 (sha256sum's)
    assert fa == fb == {"weights_sha256": want, "weights_files": {"model.safetensors": want}}
    assert weights_fingerprint(folder)["sha256"] == want
    assert a["data"]["design"]["sha256"] == _sha(Path(saved["design"]))      # the rows that were scored
    # the report names it; an older report without it still renders
    assert f"Identity: weights SHA-256 {want[:12]}." in (tmp_path / "a" / "report.md").read_text(encoding="utf-8")
    from jprefs.eval.rm_report import build_report

    a["models"]["quality-rm"].pop("fingerprint")
    assert "Identity:" not in build_report(a).markdown(tmp_path / "a")

    copy = tmp_path / "copy"                            # one byte of the weights changed: another fingerprint
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    raw = bytearray((copy / "model.safetensors").read_bytes())
    raw[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(raw))
    assert weights_fingerprint(copy)["sha256"] not in (want, None)
    assert weights_fingerprint(tmp_path / "a") is None                   # no weights: nothing to identify


def test_a_folder_of_several_weights_files_is_one_digest_over_paths_and_contents(tmp_path):
    from jprefs.eval.rm import weights_fingerprint

    ens = tmp_path / "ens"
    for seed, content in (("seed-2", b"two"), ("seed-1", b"one")):
        (ens / seed).mkdir(parents=True)
        (ens / seed / "model-00001-of-00002.safetensors").write_bytes(content)
        (ens / seed / "model-00002-of-00002.safetensors").write_bytes(content + b"!")
        (ens / seed / "checkpoint").mkdir()
        (ens / seed / "checkpoint" / "model.safetensors").write_bytes(b"a run's checkpoint, not the model")
    (ens / "jprefs_ensemble.json").write_text(json.dumps({"format": "jprefs-ensemble/1",
                                                          "members": ["seed-1", "seed-2"]}))
    fp = weights_fingerprint(ens)
    files = {f"{s}/model-0000{i}-of-00002.safetensors": hashlib.sha256(c + (b"!" if i == 2 else b"")).hexdigest()
             for s, c in (("seed-1", b"one"), ("seed-2", b"two")) for i in (1, 2)}
    assert fp["files"] == files
    manifest = "".join(f"{files[k]}  {k}\n" for k in sorted(files))       # `sha256sum` lines, sorted by path
    assert fp["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    (ens / "seed-2" / "model-00002-of-00002.safetensors").write_bytes(b"retrained")
    assert weights_fingerprint(ens)["sha256"] != fp["sha256"]


def test_a_stacks_fingerprint_is_its_fitted_numbers_not_its_paths(tmp_path):
    from jprefs.eval.rm import weights_fingerprint

    st = tmp_path / "stack"
    st.mkdir()
    spec = {"format": "jprefs-stack/1", "reward": None, "weights": {"probe": 0.5, "relevance": 1.5}, "offset": 0.1,
            "probe": "probe.json", "backbone": "/home/me/models/e5"}
    (st / "jprefs_stack.json").write_text(json.dumps(spec))
    (st / "probe.json").write_text(json.dumps({"coef": [0.1, 0.2], "backbone": "/home/me/models/e5"}))
    fp = weights_fingerprint(st)
    assert sorted(fp["files"]) == ["jprefs_stack.json#numbers", "probe.json#numbers"]
    # what `jprefs push` rewrites (local paths cut to names, the bundled backbone's folder): the same stack
    (st / "jprefs_stack.json").write_text(json.dumps({**spec, "backbone": "e5", "backbone_dir": "backbone"}))
    (st / "probe.json").write_text(json.dumps({"coef": [0.1, 0.2], "backbone": "e5"}))
    assert weights_fingerprint(st) == fp
    (st / "probe.json").write_text(json.dumps({"coef": [0.1, 0.3], "backbone": "e5"}))      # refit: another
    assert weights_fingerprint(st)["sha256"] != fp["sha256"]
