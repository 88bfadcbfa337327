"""A Hub model that is not cached while offline: every loader and command says so in one line
(`jprefs/hub.py`), instead of a transformers traceback or an "internal error"."""

from __future__ import annotations

import pytest

from jprefs.cli import main
from jprefs.hub import ModelNotCachedError, hub_model, is_offline_miss

MISSING = "jprefs-test/not-a-cached-model"  # never in any cache; the tests run with HF_HUB_OFFLINE=1
LINE = (f"model '{MISSING}' is not in the local Hugging Face cache and the Hub cannot be reached "
        f"(HF_HUB_OFFLINE=1 / no network); fix: download it on a machine with network "
        f"(`hf download {MISSING}`) or pass a local path")


def test_the_real_transformers_offline_error_is_recognised_and_others_are_not(tmp_path):
    from transformers import AutoConfig

    with pytest.raises(OSError) as e:
        AutoConfig.from_pretrained(MISSING)
    assert is_offline_miss(e.value)
    with pytest.raises(ModelNotCachedError) as e:
        with hub_model(MISSING):
            AutoConfig.from_pretrained(MISSING)
    assert str(e.value) == LINE and e.value.__cause__ is None  # one line: no chained transformers traceback
    # a local folder's errors pass through: it is no Hub id
    with pytest.raises((OSError, ValueError)) as e:
        with hub_model(tmp_path):
            AutoConfig.from_pretrained(str(tmp_path))
    assert not isinstance(e.value, ModelNotCachedError)
    with pytest.raises(ValueError, match="unrelated"):
        with hub_model(MISSING):
            raise ValueError("unrelated")


def test_every_loader_names_the_missing_model():
    from jprefs.classifiers.backbones import load_classifier
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.rl.policies import load_policy
    from jprefs.rl.rewards import classifier_reward
    from jprefs.translate.engines import get_engine

    loaders = {
        "train-rm backbone": lambda: load_classifier(MISSING, num_labels=1),
        "RewardModel.from_pretrained": lambda: RewardModel.from_pretrained(MISSING, device="cpu"),
        "rl policy": lambda: load_policy(MISSING, device=None),
        "rl classifier reward": lambda: classifier_reward(MISSING),
        "translate transformers engine": lambda: get_engine("transformers", model=MISSING, device="cpu"),
    }
    for what, load in loaders.items():
        with pytest.raises(ModelNotCachedError) as e:
            load()
        assert str(e.value) == LINE, what


def test_the_revision_is_named_in_the_download_command():
    assert "(`hf download org/m --revision abc123`)" in str(ModelNotCachedError("org/m", "abc123"))


@pytest.mark.parametrize("argv", [
    ["score", MISSING, "{pairs}", "-o", "{tmp}/s.jsonl"],
    ["train-rm", "--data", "{pairs}", "--backbone", MISSING, "--objective", "pairwise", "-o", "{tmp}/rm"],
    ["translate", "translate/recipes/mini-cpu.yaml", "input={pairs}", f"model={MISSING}", "output={tmp}/ja"],
])
def test_commands_fail_with_one_error_line(argv, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import Message, PreferencePair

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # recipes are named from the repo root
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [PreferencePair.create([Message("user", f"質問 {i}")], f"良い回答 {i}", f"悪い {i}",
                                              source="test", license="mit") for i in range(6)])
    argv = [a.format(pairs=pairs, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # one error line (other stderr lines, e.g. a launch or split warning from the run's start, may precede it)
    assert [line for line in err if ": error:" in line] == [f"jprefs {argv[0]}: error: {LINE}"], err
    assert not any("Traceback" in line or "internal error" in line for line in err)


def test_an_offline_miss_outside_the_loaders_is_still_one_error_line_not_an_internal_error(monkeypatch, capsys):
    """A Hub download jprefs does not wrap (a future loader, a tokenizer file fetched late) reaches
    the CLI as transformers' OSError: it is still a user-facing error (exit 2), not "a bug in jprefs"."""
    import jprefs.data.cli

    def run(args):
        try:
            raise OSError("Cannot find the requested files in the disk cache and outgoing traffic has been disabled.")
        except OSError as e:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                          "them in the cached files.\nCheck your internet connection ...") from e

    monkeypatch.setattr(jprefs.data.cli, "run", run)
    assert main(["data", "stats", "x.jsonl"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jprefs data: error: a file is not in the local Hugging Face cache and the Hub cannot be "
                           "reached (HF_HUB_OFFLINE=1 / no network): We couldn't connect to")
    assert line.endswith("fix: download it on a machine with network (`hf download REPO_ID`) or pass a local path")
