"""bench/rm_vs_trl.py's two arms on a tiny BERT: both trainers must learn a keyword preference.

The bench's own functions (``train_jprefs``: ``jprefs train-rm``'s library function; ``train_trl``:
trl's ``RewardTrainer``) train on the same synthetic pairs (chosen says 良/好, rejected 悪/嫌) and
are scored on pairs of questions neither saw; each must rank the held-out pairs well above chance,
so a change that breaks either arm (trl's data layout, the eos an encoder tokenizer lacks, the
pre-truncation that keeps trl from dropping pairs, the scoring) fails here, not in a 25-minute run.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from tests.classifiers.conftest import BAD, GOOD, QUESTIONS, make_backbone_dir

pytest.importorskip("trl")
pytest.importorskip("datasets")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rm_vs_trl.py"


def _bench():
    spec = importlib.util.spec_from_file_location("rm_vs_trl", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pairs(questions, per_question, seed):
    from jprefs.data.schema import PreferencePair

    rng = random.Random(seed)
    out = []
    for qi, q in enumerate(questions):
        for j in range(per_question):
            out.append(PreferencePair(id=f"{seed}-{qi}-{j}", prompt=[{"role": "user", "content": q}],
                                      chosen=rng.choice(GOOD) + "。", rejected=rng.choice(BAD) + "。",
                                      source="toy", license="cc0-1.0"))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("rmtrl")
    bench = _bench()
    train = _pairs(QUESTIONS[:5], 8, seed=1)          # 40 pairs on 5 questions
    held = _pairs(QUESTIONS[5:], 8, seed=2)           # 24 pairs on 3 other questions
    settings = {**bench.SETTINGS, "backbone": make_backbone_dir(d / "backbone"), "input_prefix": "",
                "max_length": 32, "max_prompt_length": 16, "epochs": 4, "batch_size": 8, "lr": 3e-3,
                "freeze_embeddings": False, "threads": 1, "warmup_ratio": 0.0}
    return bench, d, train, held, settings


def test_trl_rows_fit_max_length(setup):
    """trl drops over-long pairs: the bench's pre-cut texts must all fit, keeping the prompt's END."""
    from transformers import AutoTokenizer

    bench, d, _, _, settings = setup
    from jprefs.data.schema import PreferencePair

    tok = bench.trl_tokenizer(AutoTokenizer.from_pretrained(settings["backbone"]))
    assert tok.eos_token == "[SEP]"            # a BERT tokenizer has no eos; its [SEP] serves
    long = PreferencePair(id="x", prompt=[{"role": "user", "content": "今日は" * 20 + "天気は?"}],
                          chosen="良い" * 40, rejected="悪い", source="toy", license="cc0-1.0")
    rows = bench.trl_rows(tok, [long], {**settings, "max_length": 24, "max_prompt_length": 8})
    for side in ("chosen", "rejected"):
        n = len(tok(text=rows["prompt"][0] + rows[side][0] + tok.eos_token).input_ids)
        assert n <= 24
    assert rows["prompt"][0].rstrip("\n").endswith("天気は?")
    assert len(rows["prompt"][0].rstrip("\n")) == 8     # one token per character: the last 8 kept
    assert rows["chosen"][0].startswith("良い良い")
    assert rows["rejected"][0] == "悪い"


def test_both_arms_learn_the_keyword(setup):
    bench, d, train, held, settings = setup
    from jprefs.data.io import write_jsonl

    write_jsonl(d / "train.jsonl", train)
    logs = []
    res_j = bench.train_jprefs(d / "train.jsonl", held, d / "jprefs", settings, log=logs.append)
    res_t = bench.train_trl(train, held, d / "trl", settings, log=logs.append)
    for name, r in (("jprefs", res_j), ("trl", res_t)):
        assert r["pairs_per_epoch"] == 40, name                 # the same pairs each epoch
        assert len(r["epoch_s"]) == 4 and all(t > 0 for t in r["epoch_s"]), name
        acc = sum(bench.pair_accuracy(r["chosen"], r["rejected"])) / len(held)
        assert acc >= 0.85, (name, acc)                          # chance is 0.5
        assert r["losses"][-1] < r["losses"][0], (name, r["losses"])
    assert res_t["steps"] == 4 * 5                               # 40 pairs / batch 8, 4 epochs
    assert res_t["train_accuracy"] > 0.7
    assert not any("dropped" in str(x) for x in logs)
