"""`jprefs score` and the input encoding on inputs the other tests do not write: every input row ends in
the output or the rejects file (rank lists, extra columns, NaN), and a cut prompt keeps its prefix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import make_model, make_tokenizer


def _rm(num_labels: int = 1, nan: bool = False):
    import torch

    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    model = make_model(num_labels=num_labels)
    if nan:
        with torch.no_grad():
            model.classifier.bias.fill_(float("nan"))
    return RewardModel(model, make_tokenizer(), RewardConfig(objective="pairwise", chosen_index=0, max_length=64,
                                                             max_prompt_length=32))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("score-rows")
    _rm().save_pretrained(d / "rm")
    _rm(nan=True).save_pretrained(d / "nan-rm")
    return d


def _write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
                    encoding="utf-8")
    return str(path)


def _read(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _score(argv):
    from jprefs.cli import main

    return main(["score", *argv])


def test_rank_list_is_one_row_with_a_reward_per_response(saved, tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    inp = _write(tmp_path / "in.jsonl", [
        {"id": "p1", "prompt": "日本の首都は?", "chosen": "東京です", "rejected": "大阪です"},
        {"id": "r1", "prompt": "猫は?", "responses": ["良い猫", "猫", "悪い猫"], "note": "kept"},
        {"prompt": "山", "chosen": 5, "rejected": "x"},                       # rejected: not a string
        '{"id": "r2", "prompt": "犬は?", "responses": ["良い犬", "犬"], "x": NaN}',   # cannot be written back
    ])
    out = tmp_path / "out.jsonl"
    assert _score([str(saved / "rm"), inp, "-o", str(out)]) == 0
    rows, rej = _read(out), _read(tmp_path / "out.rejects.jsonl")
    assert len(rows) + len(rej) == 4 and [r.get("id") for r in rows] == ["p1", "r1"]
    assert sorted(r["reason"] for r in rej) == ["non_finite_number", "non_string_chosen"]
    rm = RewardModel.from_pretrained(saved / "rm", device="cpu")
    want = rm.score(["猫は?"] * 3, ["良い猫", "猫", "悪い猫"])
    assert rows[1]["responses"] == ["良い猫", "猫", "悪い猫"] and rows[1]["meta"]["extra"] == {"note": "kept"}
    np.testing.assert_allclose(rows[1]["rewards"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([rows[0]["chosen_reward"], rows[0]["rejected_reward"]],
                               rm.score(["日本の首都は?"] * 2, ["東京です", "大阪です"]), rtol=1e-5, atol=1e-6)


def test_binary_rows_keep_every_input_column(saved, tmp_path):
    jl = _write(tmp_path / "b.jsonl", [
        {"id": "b1", "prompt": "日本の首都は?", "response": "東京です", "label": 1, "note": "keep", "n": 3},
        {"text": "東京です", "label": 0, "note": "keep2"},
        '{"text": "東京", "label": 1, "x": NaN}',                                # cannot be written back: rejected
        {"text": "東京です", "label": 3},                                         # rejected: bad label
    ])
    out = tmp_path / "b.out.jsonl"
    assert _score([str(saved / "rm"), jl, "-o", str(out)]) == 0
    rows, rej = _read(out), _read(tmp_path / "b.out.rejects.jsonl")
    assert len(rows) + len(rej) == 4
    assert [(r["note"], r["label"]) for r in rows] == [("keep", 1), ("keep2", 0)] and rows[0]["n"] == 3
    assert sorted(r["reason"] for r in rej) == ["bad_label", "non_finite_number"]
    tsv = tmp_path / "b.tsv"
    tsv.write_text("text\tlabel\tnote\n東京です\t1\tkeep-tsv\n", encoding="utf-8")
    assert _score([str(saved / "rm"), str(tsv), "-o", str(tmp_path / "t.jsonl")]) == 0
    (row,) = _read(tmp_path / "t.jsonl")
    assert row["note"] == "keep-tsv" and row["reward"] == pytest.approx(rows[1]["reward"], abs=1e-6)


@pytest.mark.parametrize("kind", ["pairs", "plain"])
def test_nan_rewards_are_an_error_naming_the_model(saved, tmp_path, capsys, kind):
    line = ({"prompt": "日本の首都は?", "chosen": "東京です", "rejected": "大阪です"} if kind == "pairs"
            else {"prompt": "日本の首都は?", "response": "東京です"})
    inp = _write(tmp_path / "in.jsonl", [line])
    out = tmp_path / "out.jsonl"
    assert _score([str(saved / "nan-rm"), inp, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nan-rm gave" in err and "NaN or infinite rewards" in err and "please report" not in err
    assert not out.exists()


def test_a_cut_prompt_keeps_its_prefix():
    from jprefs.classifiers.inputs import encode_pairs

    tok = make_tokenizer()
    long_p, short_p = "猫" * 40 + "犬", "猫犬"
    enc = encode_pairs(tok, [long_p, short_p], ["あ", "あ"], max_length=64, max_prompt_length=16, prefix="q: ")
    cut = tok.convert_ids_to_tokens(enc.input_ids[0])
    # [CLS] q : <the last 14 prompt tokens> [SEP] あ [SEP]: the prefix survives, the prompt's END is kept
    assert cut[:3] == ["[CLS]", "q", ":"] and cut[3:18] == ["猫"] * 13 + ["犬", "[SEP]"] and len(cut) == 20
    assert enc.truncated == [True, False]
    assert enc.token_type_ids[0] == [0] * 18 + [1, 1]
    # an uncut prompt is encoded exactly as the tokenizer encodes the pair
    assert enc.input_ids[1] == tok("q: " + short_p, "あ")["input_ids"]


def test_a_revision_for_a_local_folder_is_refused(tmp_path, capsys):
    """A local folder has one version: `jprefs score DIR --revision v1` and
    RewardModel.from_pretrained(DIR, revision=...) ignored the revision, and scores said to be of v1 were of
    whatever the folder held."""
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.cli import main
    from jprefs.errors import ConfigError

    d = tmp_path / "not-a-model"
    d.mkdir()
    with pytest.raises(ConfigError, match="local folder has no revisions"):
        RewardModel.from_pretrained(str(d), revision="v1")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "q", "response": "a"}\n', encoding="utf-8")
    assert main(["score", str(d), str(inp), "-o", str(tmp_path / "o.jsonl"), "--revision", "v1"]) == 2
    assert "no revisions" in capsys.readouterr().err
