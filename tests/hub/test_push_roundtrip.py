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
    assert {"model.safetensors", "jprefs_reward.json", "README.md", "config.json", "done.json"} <= files
    from huggingface_hub import snapshot_download       # a downloaded copy loads as the finished local folder

    dl = snapshot_download(repo, revision="exp", local_dir=tmp_path / "dl")
    np.testing.assert_array_equal(RewardModel.from_pretrained(dl, device="cpu").score(prompts, responses), want)
    assert not any(f.endswith(".jsonl") for f in files)           # no data rows travel with a model
    before = fake_hub.bytes_uploaded
    assert main(["push", "model", str(tiny_rm), "--repo-id", repo, "--revision", "exp"]) == 0
    assert fake_hub.bytes_uploaded == before
    # a tokenizer file the new version lacks is deleted (a pull loaded the old chat_template beside the new
    # weights); a file jprefs never stages (the owner's LICENSE) stays
    import shutil

    again = tmp_path / "again"
    shutil.copytree(tiny_rm, again)
    (again / "chat_template.jinja").write_text("{{ messages }}", encoding="utf-8")
    assert main(["push", "model", str(again), "--repo-id", repo, "--revision", "exp"]) == 0
    HfApi().upload_file(path_or_fileobj=b"owner's terms", path_in_repo="LICENSE", repo_id=repo, revision="exp")
    assert "chat_template.jinja" in set(HfApi().list_repo_files(repo, revision="exp"))
    assert main(["push", "model", str(tiny_rm), "--repo-id", repo, "--revision", "exp"]) == 0
    left = set(HfApi().list_repo_files(repo, revision="exp"))
    assert "chat_template.jinja" not in left and "LICENSE" in left

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


def test_the_cards_code_loads_the_branch_it_was_pushed_to(fake_hub, tiny_rm, tmp_path, capsys):
    """Pushed to a branch (main holds no model), the card's `## Use` block, copied and run as it is, loads
    what was pushed: every snippet passes `revision=` (they loaded main)."""
    import re

    import numpy as np
    from huggingface_hub import hf_hub_download

    from jprefs.classifiers.reward_model import RewardModel

    repo = "fakehub-user/ja-rm-branch-card"
    assert main(["push", "model", str(tiny_rm), "--repo-id", repo, "--revision", "exp"]) == 0
    card = Path(hf_hub_download(repo, "README.md", revision="exp")).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    prompts, responses = ["猫は好き?", "今日の天気は?"], ["好きです。", "悪い天気。。"]
    ns = {"prompts": prompts, "responses": responses}
    exec(blocks[0], ns)                                  # from jprefs import RewardModel; rm = ...; rm.score(...)
    want = RewardModel.from_pretrained(tiny_rm, device="cpu").score(prompts, responses)
    np.testing.assert_allclose(ns["rm"].score(prompts, responses), want, rtol=0, atol=1e-6)
    plain = "\n".join(x for x in blocks[1].splitlines() if "import" in x or x.startswith(("tok =", "model =")))
    exec(plain, ns)                                      # the plain-transformers snippet loads the branch too
    assert type(ns["model"]).__name__.endswith("ForSequenceClassification")

    d = tmp_path / "pairs.jsonl"                         # a dataset card's load_dataset(...) too
    from jprefs.data.schema import PreferencePair

    write_jsonl(d, [PreferencePair.create(f"質問 {i}", "良い", "悪い", source="s", license="mit") for i in range(3)])
    drepo = "fakehub-user/ja-pairs-branch-card"
    assert main(["push", "dataset", str(d), "--repo-id", drepo, "--revision", "v1"]) == 0
    dcard = Path(hf_hub_download(drepo, "README.md", repo_type="dataset", revision="v1")).read_text(encoding="utf-8")
    use = next(x for x in re.findall(r"```python\n(.*?)```", dcard, re.S) if "load_dataset" in x)
    exec(use, ns)
    assert ns["pairs"].num_rows == 3
    capsys.readouterr()


def test_a_wrong_token_is_one_clear_error(fake_hub, tmp_path, monkeypatch, capsys):
    from jprefs.data.schema import PreferencePair

    f = tmp_path / "pairs.jsonl"
    write_jsonl(f, [PreferencePair.create("質問", "良い", "悪い", source="s", license="mit")])
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrongwrongwrongwrong00")
    assert main(["push", "dataset", str(f), "--repo-id", "fakehub-user/x"]) == 2
    err = capsys.readouterr().err
    assert "the Hub refused the push" in err and "write token" in err and "wrongwrong" not in err


# ------------------------------------------------------------------ folders of models: stacks, ensembles


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Three trained folders of models: a fine-tuned stack over a 2-seed ensemble (stack -> reward/ ->
    seed-N/), a frozen stack, and a plain seed ensemble; each on the tiny local backbone (a licenced card)."""
    pytest.importorskip("torch")
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.ensemble import train_ensemble
    from jprefs.classifiers.stack import train_stack
    from jprefs.config import load_config
    from tests.classifiers.conftest import make_backbone_dir, write_pairs

    d = tmp_path_factory.mktemp("stacks")
    bb = make_backbone_dir(d / "bb")
    (Path(bb) / "README.md").write_text("---\nlicense: mit\n---\n# tiny backbone\n")
    data = write_pairs(d / "pairs.jsonl", n=40)
    common = dict(data=data, backbone=bb, objective="pairwise", max_length=48, max_prompt_length=16, plots=False,
                  epochs=1, lr=3e-3, batch_size=8, warmup_ratio=0.0)
    runs = {"stack": dict(eval_fraction=0.4, train_layers=1, debias="odin", stack=["probe", "relevance"],
                          stack_head="quality", stack_folds=3, ensemble_seeds=[1, 2]),
            "frozen": dict(eval_fraction=0.3, stack=["probe", "relevance", "features"], stack_reward=False,
                           stack_folds=3),
            "ensemble": dict(eval_fraction=0.3, ensemble_seeds=[1, 2])}
    out = {}
    for name, kw in runs.items():
        cfg = load_config(TrainRMConfig, None, {**common, **kw, "output_dir": str(d / name)})
        cfg.validate()
        (train_ensemble if name == "ensemble" else train_stack)(cfg, log=lambda *a, **k: None)
        out[name] = d / name
    out["root"] = d
    return out


@pytest.mark.parametrize("name,kind", [("stack", "RewardStack"), ("frozen", "RewardStack"),
                                       ("ensemble", "RewardEnsemble")])
def test_a_stack_or_ensemble_round_trips_whole_with_no_local_path_and_loads_offline(
        fake_hub, hub_offline, stacks, name, kind, tmp_path, capsys):
    """Pushed, the repo is the folder it was: `RewardModel.from_pretrained(repo_id)` returns the same kind
    and scores exactly as the local folder; each member folder loads with `subfolder=`; a local backbone
    travels in `backbone/`; no file names the machine's paths; a second push uploads nothing; offline it
    loads from the cache."""
    import numpy as np
    from huggingface_hub import HfApi, snapshot_download

    from jprefs.classifiers.reward_model import RewardModel

    local = stacks[name]
    repo = f"fakehub-user/ja-{name}-tiny"
    assert main(["push", "model", str(local), "--repo-id", repo]) == 0, capsys.readouterr().err
    prompts, responses = ["猫は好き?", "今日の天気は?", "山は?"], ["好きです。", "悪い天気。。", "良い山です。"]
    want = RewardModel.from_pretrained(local, device="cpu").score(prompts, responses)
    got = RewardModel.from_pretrained(repo, device="cpu")
    assert type(got).__name__ == kind
    np.testing.assert_array_equal(got.score(prompts, responses), want)

    files = set(HfApi().list_repo_files(repo))
    snap = Path(snapshot_download(repo))
    members = {"stack": ["reward", "reward/seed-1", "reward/seed-2"], "frozen": [],
               "ensemble": ["seed-1", "seed-2"]}[name]
    for m in members:                                  # every member with its weights and its own card
        assert {f"{m}/README.md", f"{m}/metrics.json"} <= files
        card = (snap / m / "README.md").read_text(encoding="utf-8")
        assert f'subfolder="{m}"' in card and f"The `{m}/` folder of [{repo}]" in card
        if not m.endswith("reward") or name != "stack":
            assert f"{m}/model.safetensors" in files
            np.testing.assert_array_equal(RewardModel.from_pretrained(repo, subfolder=m, device="cpu")
                                          .score(prompts, responses),
                                          RewardModel.from_pretrained(local / m, device="cpu").score(prompts, responses))
    assert ("backbone/model.safetensors" in files) == (name != "ensemble")      # the local frozen backbone
    assert not any(f.endswith((".jsonl", ".bin", ".pt", ".pkl")) for f in files)
    for f in files:                                    # no path of this machine in any pushed file
        if f.endswith((".json", ".yaml", ".md")):
            text = (snap / f).read_text(encoding="utf-8")
            assert str(stacks["root"]) not in text and str(tmp_path) not in text, f
    card = (snap / "README.md").read_text(encoding="utf-8")
    assert f'RewardModel.from_pretrained("{repo}")' in card and "license: other" in card and "cc0-1.0" in card

    before = fake_hub.bytes_uploaded
    assert main(["push", "model", str(local), "--repo-id", repo]) == 0
    assert fake_hub.bytes_uploaded == before           # unchanged: nothing uploaded

    # `hf download REPO --local-dir D`: D is the finished folder it was (its members' done.json travel)
    dl = Path(snapshot_download(repo, local_dir=tmp_path / "dl"))
    np.testing.assert_array_equal(RewardModel.from_pretrained(dl, device="cpu").score(prompts, responses), want)

    hub_offline()
    np.testing.assert_array_equal(RewardModel.from_pretrained(repo, device="cpu").score(prompts, responses), want)


def test_a_pulled_stack_scores_through_the_cli_and_rl_reward(fake_hub, stacks, tmp_path, capsys):
    import numpy as np

    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.rl.rewards import make_reward

    repo = "fakehub-user/ja-frozen-cli"
    assert main(["push", "model", str(stacks["frozen"]), "--repo-id", repo, "--revision", "v1"]) == 0
    prompts, responses = ["猫は好き?", "今日の天気は?"], ["好きです。", "悪い天気。。"]
    want = RewardModel.from_pretrained(stacks["frozen"], device="cpu").score(prompts, responses)
    inp, out = tmp_path / "in.jsonl", tmp_path / "scores.jsonl"
    write_jsonl(inp, [{"prompt": p, "response": r} for p, r in zip(prompts, responses)])
    capsys.readouterr()
    assert main(["score", repo, str(inp), "--revision", "v1", "-o", str(out)]) == 0, capsys.readouterr().err
    np.testing.assert_allclose([r["reward"] for r in _rows(out)], want, rtol=0, atol=1e-6)
    assert main(["push", "model", str(stacks["frozen"]), "--repo-id", repo]) == 0
    np.testing.assert_allclose(make_reward("rm", repo, device="cpu")(prompts, responses), want, rtol=0, atol=1e-6)


def test_a_missing_subfolder_and_a_dangling_backbone_are_clear_errors(fake_hub, stacks, tmp_path, capsys):
    import shutil

    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.errors import JprefsError

    repo = "fakehub-user/ja-ens-sub"
    assert main(["push", "model", str(stacks["ensemble"]), "--repo-id", repo]) == 0
    with pytest.raises(JprefsError, match="has no folder 'seed-9'"):
        RewardModel.from_pretrained(repo, subfolder="seed-9", device="cpu")
    with pytest.raises(JprefsError, match="without '..'"):
        RewardModel.from_pretrained(repo, subfolder="../x", device="cpu")
    # one member pushed over the repo: the ensemble's marker goes with it, and the repo loads as that model
    assert main(["push", "model", str(stacks["ensemble"] / "seed-1"), "--repo-id", repo]) == 0
    from huggingface_hub import HfApi

    left = HfApi().list_repo_files(repo)
    assert "jprefs_ensemble.json" not in left and not any(f.startswith("seed-") for f in left), left
    assert type(RewardModel.from_pretrained(repo, device="cpu")).__name__ == "RewardModel"
    moved = tmp_path / "frozen"
    shutil.copytree(stacks["frozen"], moved)
    spec = json.loads((moved / "jprefs_stack.json").read_text())
    spec["backbone"] = str(tmp_path / "gone")
    (moved / "jprefs_stack.json").write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["push", "model", str(moved), "--repo-id", "fakehub-user/x", "--dry-run"]) != 0
    err = capsys.readouterr().err
    assert "frozen backbone" in err and "no longer there" in err and "Traceback" not in err
