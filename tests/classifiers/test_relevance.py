"""The zero-shot relevance signal (jprefs.classifiers.relevance): the cosine of the frozen backbone's
query and passage embeddings, against a hand computation on a tiny BERT built from a config; the
last-user-turn rule; input order, repeated inputs and the restored embedder settings."""

from __future__ import annotations

import numpy as np
import pytest

from jprefs.classifiers import relevance as R
from jprefs.data.schema import Message, PreferencePair

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    import torch

    from .conftest import make_backbone_dir

    torch.set_num_threads(1)
    return make_backbone_dir(tmp_path_factory.mktemp("relevance") / "tiny-bert", seed=5)


def _mean_embedding(path, text, max_length):
    """Hand computation: one text alone, masked mean of the last hidden states, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    b = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state[0]                            # (T, H)
    e = h.mean(0).numpy().astype(np.float64)
    return e / np.linalg.norm(e)


def test_score_is_the_cosine_of_query_and_passage_embeddings_by_hand(backbone):
    rel = R.Relevance(backbone, max_length=24)
    prompts = ["日本の首都は?", [Message("user", "猫は好き?")], "日本の首都は?"]
    responses = ["東京です。", "好きです" * 20, "バナナは黄色い。"]          # the second is cut at 24 tokens
    got = rel.score(prompts, responses)
    want = [float(_mean_embedding(backbone, "query: " + q, 24) @ _mean_embedding(backbone, "passage: " + a, 24))
            for q, a in zip(["日本の首都は?", "猫は好き?", "日本の首都は?"], responses)]
    assert got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(np.abs(got) <= 1 + 1e-9)
    # in input order: reversed inputs give reversed scores; one at a time gives the same numbers
    np.testing.assert_allclose(rel.score(prompts[::-1], responses[::-1]), got[::-1], atol=1e-6)
    alone = [rel.score([p], [r])[0] for p, r in zip(prompts, responses)]
    np.testing.assert_allclose(alone, got, atol=1e-5)


def test_prefixes_matter_and_the_shared_embedder_is_restored(backbone):
    from jprefs.classifiers.probe import Embedder

    emb = Embedder(backbone, input_prefix="query: ", max_length=64, max_prompt_length=16, device="cpu")
    emb.frozen_layer_cache = 1
    rel = R.Relevance(embedder=emb, max_length=32)
    a = rel.score(["質問"], ["答え"])
    assert (emb.input_prefix, emb.max_length, emb.frozen_layer_cache) == ("query: ", 64, 1)
    b = R.Relevance(embedder=emb, max_length=32, query_prefix="", passage_prefix="").score(["質問"], ["答え"])
    assert abs(a[0] - b[0]) > 1e-6
    # a cls-pooled embedder shares its model, not its pooling: relevance is always mean-pooled
    cls = Embedder(backbone, pooling="cls", max_length=64, device="cpu")
    np.testing.assert_allclose(R.Relevance(embedder=cls, max_length=32).score(["質問"], ["答え"]), a, atol=1e-7)
    assert cls.pooling == "cls"


def test_pair_scores_split_chosen_and_rejected(backbone):
    rel = R.Relevance(backbone, max_length=32)
    pairs = [PreferencePair.create("質問A", "良い答え", "悪い"), PreferencePair.create("質問B", "はい", "いいえ")]
    c, r = rel.pair_scores(pairs)
    np.testing.assert_allclose(c, rel.score(["質問A", "質問B"], ["良い答え", "はい"]), atol=1e-6)
    np.testing.assert_allclose(r, rel.score(["質問A", "質問B"], ["悪い", "いいえ"]), atol=1e-6)
    assert rel.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 prompts for 1"):
        rel.score(["a", "b"], ["x"])


def test_last_user_turn():
    conv = [Message("user", "一"), Message("assistant", "二"), Message("user", "三")]
    assert R.last_user_turn(conv) == "三"
    assert R.last_user_turn([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a"
    assert R.last_user_turn("そのまま") == "そのまま" and R.last_user_turn(None) == ""
