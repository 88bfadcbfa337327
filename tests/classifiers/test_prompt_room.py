"""train-rm: a `max_prompt_length` close to `max_length` leaves a long prompt's response a few tokens
(encode_pairs gives the prompt up to its cap and the response the rest). One warning at config time,
naming both keys and what is left; the shipped recipes load without it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from jprefs.classifiers.config import TrainRMConfig, prompt_room_warning
from jprefs.config import load_config

RECIPES = Path(__file__).resolve().parents[2] / "classifiers" / "recipes"


def _ours(caught):
    return [w for w in caught if "max_prompt_length" in str(w.message)]


def _load(*overrides, recipe=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")             # count every emission, not once per call site
        cfg = load_config(TrainRMConfig, recipe, list(overrides))
    return cfg, _ours(caught)


def test_a_prompt_cap_near_max_length_warns_once_naming_both_keys():
    cfg, ws = _load("max_length=192", "max_prompt_length=180")
    assert cfg.max_prompt_length == 180                    # a warning, not an error: the run goes on
    assert len(ws) == 1 and issubclass(ws[0].category, UserWarning)
    msg = str(ws[0].message)
    assert "max_length=192" in msg and "max_prompt_length=180" in msg and "leaves the response 12 tokens" in msg


def test_the_train_rm_command_line_warns_once(monkeypatch):
    import argparse

    from jprefs.classifiers.cli import build_config

    args = argparse.Namespace(recipe=None, overrides=["max_length=256", "max_prompt_length=250"], data="x.jsonl",
                              eval_data=None, test_data=None, data_source=None, backbone=None, objective=None,
                              output_dir="out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_config(args)
    assert len(_ours(caught)) == 1
    monkeypatch.setenv("RANK", "1")                        # a data-parallel worker: the main process says it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_config(args)
    assert not _ours(caught)


@pytest.mark.parametrize("ml, mpl", [(512, 256), (192, 128), (128, 96), (64, 256), (64, 64)])
def test_no_warning_when_the_response_keeps_a_quarter_or_the_cap_is_halved(ml, mpl):
    # 128 - 96 = 32 is exactly a quarter; a cap >= max_length is halved by encode_pairs (tests/classifiers/
    # test_inputs.py), which leaves the response half
    assert prompt_room_warning(ml, mpl) is None
    assert not _load(f"max_length={ml}", f"max_prompt_length={mpl}")[1]


def test_every_shipped_recipe_loads_without_the_warning():
    recipes = sorted(RECIPES.glob("*.yaml"))
    assert len(recipes) >= 5
    for p in recipes:
        assert not _load(recipe=p)[1], p.name


def test_train_rm_says_it_when_the_position_cap_starves_the_response(tmp_path):
    """max_length=128 with max_prompt_length=60 leaves 68 tokens, but the tiny model's 64 positions cap
    max_length at 64, leaving 4: the config-time check could not see that, train-rm logs it."""
    from jprefs.classifiers.train import train_reward_model

    from .conftest import make_backbone_dir, write_pairs

    cfg, ws = _load(f"data={write_pairs(tmp_path / 'pairs.jsonl')}", f"backbone={make_backbone_dir(tmp_path / 'bb')}",
                    "epochs=1", "batch_size=8", "max_length=128", "max_prompt_length=60", "eval_fraction=0.25",
                    "plots=false", f"output_dir={tmp_path / 'out'}")
    assert not ws
    lines: list[str] = []
    train_reward_model(cfg, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    ours = [x for x in lines if "max_prompt_length=60" in x]
    assert len(ours) == 1 and "max_length=64" in ours[0] and "capped at the model's position limit" in ours[0]
