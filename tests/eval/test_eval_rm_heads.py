"""``jprefs eval rm --all-heads``: every head of a two-head (ODIN) reward model as its own entry."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_head(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    from ..classifiers.conftest import make_tokenizer
    from .test_eval_rm import _design_rows, _write_jsonl

    d = tmp_path_factory.mktemp("heads")
    tok = make_tokenizer()
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=64, num_labels=2, pad_token_id=tok.pad_token_id)).eval()
    cfg = RewardConfig(objective="pairwise", chosen_index=0, heads=["quality", "length"], reward_head="quality",
                       center=0.05, head_centers={"quality": 0.05, "length": -0.1, "full": -0.05},
                       labels=["quality", "length"], max_length=64)
    RewardModel(model, tok, cfg).save_pretrained(d / "odin-rm")
    return {"rm": str(d / "odin-rm"), "data": _write_jsonl(d / "design.jsonl", _design_rows()), "dir": d}


def test_all_heads_scores_every_head_as_an_entry(two_head, tmp_path, capsys):
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.cli import main

    out = tmp_path / "heads"
    rc = main(["eval", "rm", "--model", f"odin={two_head['rm']}", "--data", two_head["data"], "--all-heads",
               "--no-plots", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(m["results"]) == {"odin", "odin:length", "odin:full"}
    assert m["models"]["odin"]["head"] == "quality" and m["models"]["odin:full"]["head"] == "full"
    assert "--all-heads" in m["command"]
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    rm = RewardModel.from_pretrained(two_head["rm"], device="cpu")
    from jprefs.classifiers.data import load_rm_data

    pairs = load_rm_data(two_head["data"]).pairs()
    for entry, head in (("odin", "quality"), ("odin:length", "length"), ("odin:full", "full")):
        mine = [r for r in rows if r["model"] == entry]
        want = rm.score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                        head=head)
        np.testing.assert_allclose([r["r_chosen"] for r in mine], want[:len(pairs)], rtol=1e-5, atol=1e-6)
        acc = np.mean([1.0 if r["r_chosen"] > r["r_rejected"] else 0.5 if r["r_chosen"] == r["r_rejected"] else 0.0
                       for r in mine])
        assert m["results"][entry][next(iter(m["results"][entry]))]["pairwise_accuracy"] == pytest.approx(acc)
    # a one-reward model with --all-heads: one entry and a note
    from .test_eval_rm import _engineered_rm

    _engineered_rm("length").save_pretrained(tmp_path / "one")
    rc = main(["eval", "rm", "--model", str(tmp_path / "one"), "--data", two_head["data"], "--all-heads",
               "--no-plots", "-o", str(tmp_path / "one-out")])
    assert rc == 0 and "one reward to score" in capsys.readouterr().err
    assert set(json.loads((tmp_path / "one-out" / "metrics.json").read_text())["results"]) == {"one"}
