"""`jprefs push` and the pull paths through the REAL huggingface_hub client and `datasets`,
against the local Hub of tests/hub/fakehub.py (issue #14's acceptance):

- a translated dataset pushed, then every config read back by `datasets.load_dataset(repo_id, cfg)`
  with the same rows; `jprefs data convert REPO --source jprefs` gives the same canonical records;
- a tiny trained reward model pushed, then `RewardModel.from_pretrained(repo_id)` (and a branch
  `revision=`) scores identically to the local folder; `jprefs score REPO` too;
- a second push of the unchanged folder makes no commit and uploads 0 bytes; a changed one
  uploads only what changed;
- offline (HF_HUB_OFFLINE=1): the cached model loads, an uncached one is one error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jprefs.cli import main
from jprefs.data.io import read_records, write_jsonl

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def translated(tmp_path):
    from tests.translate.conftest import make_pairs
    from tests.translate.fake_server import FakeServer
    from tests.translate.test_pipeline_openai import cfg_for
    from jprefs.translate.pipeline import run_translate
    from jprefs.translate.prompts import load_template

    src = tmp_path / "en.jsonl"
    write_jsonl(src, make_pairs(6))
    out = tmp_path / "ja"
    with FakeServer(load_template("builtin:en-ja")) as s:
        run_translate(cfg_for(s, src, out))
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_a_translated_dataset_round_trips_and_an_unchanged_push_uploads_nothing(fake_hub, translated, tmp_path,
                                                                                capsys):
    from datasets import get_dataset_config_names, load_dataset

    from jprefs.data.export import TRL_FORMATS

    repo = "fakehub-user/hh-ja"
    assert main(["push", "dataset", str(translated), "--repo-id", repo]) == 0
    assert "commit:" in capsys.readouterr().out
    assert len(fake_hub.commits(repo, "dataset")) == 2          # the repo's initial commit + the push
    names = set(get_dataset_config_names(repo))
    n_rejects = len(_rows(translated / "rejects.jsonl"))
    assert names == {"pairs", "binary", *TRL_FORMATS} | ({"rejects"} if n_rejects else set())
    pairs = load_dataset(repo, "pairs", split="train")
    assert load_dataset(repo, split="train")["id"] == pairs["id"]     # no config named: pairs, the default
    local = [r.to_dict() for r in read_records(translated / "pairs.jsonl")]
    assert pairs.num_rows == len(local) == 6
    assert [r["id"] for r in pairs] == [r["id"] for r in local]
    assert [json.loads(r["meta"]) for r in pairs] == [r["meta"] for r in local]
    assert [r["prompt"] for r in pairs] == [r["prompt"] for r in local]
    assert [r["chosen"] for r in pairs] == [r["chosen"] for r in local]
    binary = load_dataset(repo, "binary", split="train")
    assert [(r["response"], r["label"]) for r in binary] == [(r["response"], r["label"])
                                                             for r in _rows(translated / "binary.jsonl")]
    for fmt in TRL_FORMATS:                                     # the same rows as translate's own trl files
        ds = load_dataset(repo, fmt, split="train")
        want = _rows(translated / f"{fmt}.jsonl")
        assert [{k: r[k] for k in want[0]} for r in ds] == want, fmt
    if n_rejects:
        assert load_dataset(repo, "rejects", split="train").num_rows == n_rejects
    # the card as the Hub parsed it
    from huggingface_hub import HfApi

    info = HfApi().dataset_info(repo)
    assert info.card_data["license"] == "mit" and info.card_data["language"] == ["ja"]

    # jprefs reads its own pushed pairs back from the Hub id
    back = tmp_path / "back.jsonl"
    assert main(["data", "convert", repo, "--source", "jprefs", "--name", "pairs", "-o", str(back)]) == 0
    assert [r.to_dict() for r in read_records(back)] == local

    # unchanged: no commit, nothing uploaded
    before, sent = len(fake_hub.commits(repo, "dataset")), fake_hub.bytes_uploaded
    capsys.readouterr()
    assert main(["push", "dataset", str(translated), "--repo-id", repo]) == 0
    assert "nothing changed on the Hub" in capsys.readouterr().out
    assert len(fake_hub.commits(repo, "dataset")) == before and fake_hub.bytes_uploaded == sent


def test_a_changed_dataset_uploads_only_what_changed_and_drops_stale_shards(fake_hub, tmp_path, capsys):
    from jprefs.data.schema import PreferencePair

    f = tmp_path / "pairs.jsonl"
    rows = [PreferencePair.create(f"質問{i}", "良い", "悪い", source="s", license="mit") for i in range(3)]
    write_jsonl(f, rows)
    repo = "fakehub-user/small"
    assert main(["push", "dataset", str(f), "--repo-id", repo, "--private"]) == 0
    from huggingface_hub import HfApi

    api = HfApi()
    assert api.dataset_info(repo).private is True
    api.upload_file(path_or_fileobj=b"old", path_in_repo="pairs/train-00001-of-00002.parquet", repo_id=repo,
                    repo_type="dataset")                        # a stale shard from an older, bigger version
    write_jsonl(f, rows + [PreferencePair.create("追加", "良い", "悪い", source="s", license="mit")])
    capsys.readouterr()
    assert main(["push", "dataset", str(f), "--repo-id", repo]) == 0
    out = capsys.readouterr().out
    assert "pairs/train-00001-of-00002.parquet  (deleted: no longer in this version)" in out
    assert "jprefs_dataset.json  (uploaded)" in out
    files = set(api.list_repo_files(repo, repo_type="dataset"))
    assert "pairs/train-00001-of-00002.parquet" not in files and "pairs/train-00000-of-00001.parquet" in files
    # the old version on a branch (created from main): main keeps 4 rows, v1 has 3
    write_jsonl(f, rows)
    assert main(["push", "dataset", str(f), "--repo-id", repo, "--revision", "v1"]) == 0
    from datasets import load_dataset

    assert load_dataset(repo, "pairs", split="train", revision="v1").num_rows == 3
    assert load_dataset(repo, "pairs", split="train").num_rows == 4


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.classifiers.conftest import train_tiny_rm

    out = train_tiny_rm(tmp_path_factory.mktemp("rm"), backbone_license="mit")
    return out


def test_a_reward_model_round_trips_scores_identically_and_loads_offline_from_the_cache(
        fake_hub, hub_offline, tiny_rm, tmp_path, capsys):
    import numpy as np

    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.errors import JprefsError

    repo = "fakehub-user/ja-rm-tiny"
    assert main(["push", "model", str(tiny_rm), "--repo-id", repo, "--revision", "exp"]) == 0
    prompts, responses = ["猫は好き?", "今日の天気は?"], ["好きです。", "悪い天気。。"]
    want = RewardModel.from_pretrained(tiny_rm, device="cpu").score(prompts, responses)
    with pytest.raises(JprefsError, match=r"\(revision main\) holds no model"):   # pushed to the branch only
        RewardModel.from_pretrained(repo, device="cpu", revision="main")
    got = RewardModel.from_pretrained(repo, device="cpu", revision="exp").score(prompts, responses)
    np.testing.assert_array_equal(got, want)
    from huggingface_hub import HfApi

    files = set(HfApi().list_repo_files(repo, revision="exp"))
    assert {"model.safetensors", "jprefs_reward.json", "README.md", "config.json"} <= files
    assert not any(f.endswith(".jsonl") for f in files)           # no data rows travel with a model
    before = fake_hub.bytes_uploaded
    assert main(["push", "model", str(tiny_rm), "--repo-id", repo, "--revision", "exp"]) == 0
    assert fake_hub.bytes_uploaded == before

    # jprefs score through the Hub id
    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [{"prompt": p, "response": r} for p, r in zip(prompts, responses)])
    out = tmp_path / "scores.jsonl"
    capsys.readouterr()
    assert main(["score", repo, str(inp), "--revision", "exp", "-o", str(out)]) == 0
    np.testing.assert_allclose([r["reward"] for r in _rows(out)], want, rtol=0, atol=1e-6)

    # jprefs rl's reward (reward_type: rm, reward_model: owner/name) from the Hub id on main
    from jprefs.rl.rewards import make_reward

    assert main(["push", "model", str(tiny_rm), "--repo-id", repo]) == 0
    np.testing.assert_allclose(make_reward("rm", repo, device="cpu")(prompts, responses), want, rtol=0, atol=1e-6)

    hub_offline()                                                 # cached: loads; not cached: one clear line
    np.testing.assert_array_equal(RewardModel.from_pretrained(repo, device="cpu", revision="exp")
                                  .score(prompts, responses), want)
    with pytest.raises(JprefsError) as e:
        RewardModel.from_pretrained("fakehub-user/never-downloaded", device="cpu")
    assert "fakehub-user/never-downloaded" in str(e.value) and "hf download" in str(e.value)


def test_a_wrong_token_is_one_clear_error(fake_hub, tmp_path, monkeypatch, capsys):
    from jprefs.data.schema import PreferencePair

    f = tmp_path / "pairs.jsonl"
    write_jsonl(f, [PreferencePair.create("質問", "良い", "悪い", source="s", license="mit")])
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrongwrongwrongwrong00")
    assert main(["push", "dataset", str(f), "--repo-id", "fakehub-user/x"]) == 2
    err = capsys.readouterr().err
    assert "the Hub refused the push" in err and "write token" in err and "wrongwrong" not in err
