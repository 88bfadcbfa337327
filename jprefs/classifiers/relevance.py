"""Zero-shot relevance of a response to its prompt: the retrieval similarity of a frozen e5 backbone.

e5 models are trained as retrievers: ``query: <question>`` and ``passage: <text>`` embed close together
when the passage answers the question. Their cosine similarity is a quality signal learned from far
more data than any judged preference set, and it is nearly independent of the answer's length (a long
answer does not score higher for being long: Spearman with the length 0.06 on ja_mt_bench, 0.35 on
Rakuda, out of fold in ``bench/rm_debias.py cv-relevance``)::

    relevance(p, x) = cos(e("query: " + last_user_turn(p)), e("passage: " + x))

``e`` is the masked mean of the frozen backbone's last hidden states (e5's pooling), each text cut
on the right at ``max_length`` tokens. A multi-turn prompt is represented by its last user turn (the
question the response answers). Identical prompts and identical responses are embedded once.

Example::

    rel = Relevance("e5-small-offline")
    rel.score(["日本の首都は?"], ["東京です。"])      # array([0.85...])
"""

from __future__ import annotations

from typing import Any, Sequence

from jprefs.errors import ConfigError

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


def last_user_turn(prompt: Any) -> str:
    """The text a retriever should read as the query: a string prompt as it is, a message list's last
    ``user`` message (the whole rendered conversation if none has that role), ``None`` as ``""``.

    >>> last_user_turn([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
    ...                 {"role": "user", "content": "c"}])
    'c'
    """
    from jprefs.classifiers.inputs import prompt_to_text

    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    msgs = list(prompt)
    for m in reversed(msgs):       # jprefs Message objects or plain {"role", "content"} dicts
        role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else \
            (getattr(m, "role", None), getattr(m, "content", None))
        if role == "user" and isinstance(content, str):
            return content
    return prompt_to_text(msgs) or ""


class Relevance:
    """The frozen retriever, loaded once; :meth:`score` gives one cosine similarity per (prompt, response).

    ``embedder``: an :class:`jprefs.classifiers.probe.Embedder` to reuse (its model is shared; its own
    prefix and truncation settings are restored after each call), else one is loaded for ``backbone``.
    """

    def __init__(self, backbone: str = "e5-small-offline", *, max_length: int = 512, embedder: Any = None,
                 query_prefix: str = QUERY_PREFIX, passage_prefix: str = PASSAGE_PREFIX):
        from jprefs.classifiers.probe import Embedder

        if max_length < 16:
            raise ConfigError(f"relevance max_length must be >= 16, got {max_length}")
        self.embedder = embedder or Embedder(backbone, pooling="mean", max_length=max_length)
        self.backbone = self.embedder.backbone
        self.max_length = min(max_length, self.embedder.max_length)
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix

    def _embed(self, texts: Sequence[str], prefix: str, desc: str):
        import numpy as np

        e = self.embedder
        saved = e.input_prefix, e.max_length, e.frozen_layer_cache, e.pooling
        # e5's own pooling whatever the shared embedder's (a cls-pooled probe shares the model, not the pooling)
        e.input_prefix, e.max_length, e.frozen_layer_cache, e.pooling = prefix, self.max_length, 0, "mean"
        try:
            x = e.embed(None, list(texts), desc=desc).astype(np.float64)
        finally:
            e.input_prefix, e.max_length, e.frozen_layer_cache, e.pooling = saved
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1.0)

    def score(self, prompts: Sequence[Any], responses: Sequence[str], *, desc: str = "relevance"):
        """Cosine similarities ``(N,)`` float64 in [-1, 1], in input order."""
        import numpy as np

        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        if not responses:
            return np.zeros(0)
        queries = [last_user_turn(p) for p in prompts]
        uq = sorted(set(queries))
        q = self._embed(uq, self.query_prefix, f"{desc} (queries)")
        where = {t: i for i, t in enumerate(uq)}
        a = self._embed(responses, self.passage_prefix, f"{desc} (responses)")
        return np.einsum("nh,nh->n", q[[where[t] for t in queries]], a)

    def pair_scores(self, pairs, *, desc: str = "relevance"):
        """``(s_chosen, s_rejected)`` ``(n,)`` each, of :class:`PreferencePair` s (one embedding pass)."""
        n = len(pairs)
        s = self.score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                       desc=desc)
        return s[:n], s[n:]
