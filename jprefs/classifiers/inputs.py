"""Reward-model inputs: (prompt, response) sentence pairs, truncation and batching.

One encoding path serves training, evaluation and :class:`RewardModel.score`, so a
model always sees its inputs built the same way:

- the prompt (a string, a list of messages, or ``None``) is rendered with
  :func:`jprefs.data.schema.render_prompt` (role markers for multi-turn chats);
- prompt and response are tokenized separately without special tokens, the
  prompt is cut from the LEFT (the end of a conversation matters most) to
  ``max_prompt_length`` tokens, the response from the RIGHT to what is left of
  ``max_length``; then the tokenizer's own post-processor adds the special
  tokens of a sentence pair (``[CLS] p [SEP] r [SEP]`` for BERT,
  ``<s> p </s></s> r </s>`` for XLM-R), exactly as ``tokenizer(p, r)`` would;
- ``max_length`` is capped at the model's position limit (BERT: 512).

BERT tokenizers have no EOS token; nothing here relies on one.

Example::

    enc = encode_pairs(tok, ["日本の首都は?"], ["東京です。"], max_length=512)
    enc.input_ids[0]   # [CLS] 日本 の 首都 は ? [SEP] 東京 です 。 [SEP]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from jprefs.errors import DataError


@dataclass
class Encoded:
    """Token ids of N inputs (unpadded), in input order."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None = None
    truncated: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


def prompt_to_text(prompt: Any, *, index: int | None = None, style: str = "plain") -> str | None:
    """Render one prompt (``None``, a string, or a list of messages) as text.

    >>> prompt_to_text([{"role": "user", "content": "こんにちは"}])
    'こんにちは'
    """
    from jprefs.data.schema import SchemaError, render_prompt

    if prompt is None:
        return None
    if isinstance(prompt, str):
        return prompt
    try:
        return render_prompt(list(prompt), style=style)
    except (SchemaError, TypeError) as e:
        where = f"prompts[{index}]" if index is not None else "prompt"
        raise DataError(f"{where}: {e} (got {str(prompt)[:80]!r})",
                        fix="pass a string, a list of {'role', 'content'} messages, or None") from e


def completion_to_text(completion: Any) -> str:
    """A trl completion (a string, or conversational ``[{"role": "assistant", ...}]``) as text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict) and "content" in completion:
        return str(completion["content"])
    if isinstance(completion, (list, tuple)):
        return "".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in completion)
    raise DataError(f"cannot read a completion of type {type(completion).__name__}: {str(completion)[:80]!r}",
                    fix="pass strings or lists of {'role', 'content'} messages")


def model_max_length(model_config: Any, requested: int) -> int:
    """``requested`` capped at the model's position limit (``max_position_embeddings``).

    XLM-R style models offset positions by ``pad_token_id + 1``, so their usable
    length is ``max_position_embeddings - 2`` (514 -> 512).
    """
    limit = getattr(model_config, "max_position_embeddings", None)
    if not limit:
        return requested
    if getattr(model_config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= (getattr(model_config, "pad_token_id", 1) or 0) + 1
    return min(requested, int(limit))


def _check_lists(prompts: Any, responses: Any) -> tuple[list[Any], list[str]]:
    if isinstance(responses, str) or not isinstance(responses, Sequence):
        raise DataError(f"responses must be a list of strings, got {type(responses).__name__}",
                        fix="wrap a single response in a list: score([prompt], [response])")
    responses = list(responses)
    if prompts is None or isinstance(prompts, str):
        # one prompt (or none) for every response
        prompts = [prompts] * len(responses)
    prompts = list(prompts)
    if len(prompts) != len(responses):
        raise DataError(f"prompts and responses differ in length: {len(prompts)} prompts, {len(responses)} responses",
                        fix="pass one prompt per response (or prompts=None for prompt-less text)")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise DataError(f"responses[{i}] must be a string, got {type(r).__name__}: {str(r)[:60]!r}")
    return prompts, responses


def encode_pairs(tokenizer, prompts: Sequence[Any] | None, responses: Sequence[str], *,
                 max_length: int = 512, max_prompt_length: int | None = None,
                 prompt_style: str = "plain", prefix: str = "") -> Encoded:
    """Tokenize (prompt, response) pairs with left-truncated prompts and right-truncated responses.

    ``prompts`` may be ``None`` (or contain ``None``) for prompt-less text, which
    is then encoded as a single sequence. ``max_prompt_length`` defaults to half
    of ``max_length``, and a cap of ``max_length`` or more counts as half too (it would leave the
    response one token); a short prompt leaves its unused budget to the response.
    ``prefix`` (e.g. ``"query: "`` for e5) goes before the first segment: the
    prompt, or the response of a prompt-less input; a prompt cut from the left keeps its prefix.

    >>> enc = encode_pairs(tok, ["質問"], ["回答"], max_length=16)   # doctest: +SKIP
    """
    from tokenizers import Encoding

    prompts, responses = _check_lists(prompts, responses)
    texts_p = [prompt_to_text(p, index=i, style=prompt_style) for i, p in enumerate(prompts)]
    if max_prompt_length is None:
        max_prompt_length = max_length // 2
    bt = _backend(tokenizer)
    n_pair = bt.num_special_tokens_to_add(True)
    n_single = bt.num_special_tokens_to_add(False)
    if max_length <= n_pair + 1:
        raise DataError(f"max_length={max_length} leaves no room for text after {n_pair} special tokens",
                        fix="use max_length >= 16")
    if prefix:
        texts_p = [None if t is None else prefix + t for t in texts_p]
        responses = [prefix + r if texts_p[i] is None else r for i, r in enumerate(responses)]
    # Judged sets repeat each answer in several pairs and RL groups repeat each prompt: every distinct
    # (prompt, response) row is encoded once, and every distinct prompt once (its truncation is the
    # same in every row, and post_process does not change the encodings it is given).
    rows: dict = {}
    first = [rows.setdefault((texts_p[i], responses[i]), i) for i in range(len(responses))]
    todo = [i for i in range(len(responses)) if first[i] == i]
    enc_r = dict(zip(todo, bt.encode_batch([responses[i] for i in todo], add_special_tokens=False)))
    p_texts = list(dict.fromkeys(texts_p[i] for i in todo if texts_p[i] is not None))
    p_room = min(max_prompt_length, max_length - n_pair - 1)
    if max_prompt_length >= max_length:
        # a prompt cap as long as the whole input (the default 256 under a model capped at 64 positions)
        # let a long prompt take all but one token: the response, what is scored, was cut to one token
        p_room = min(p_room, (max_length - n_pair) // 2)
    enc_p: dict = {}
    cut = []                                     # prompts over their room, cut below
    for t, ep in zip(p_texts, bt.encode_batch(p_texts, add_special_tokens=False) if p_texts else []):
        # keep the END of the prompt; a short prompt leaves its room to the response
        enc_p[t] = (ep, len(ep.ids) > p_room)
        if len(ep.ids) > p_room:
            cut.append(t)
    pre = bt.encode(prefix, add_special_tokens=False) if prefix and cut else None
    if pre is not None and 0 < len(pre.ids) < p_room:
        # cutting "query: <long prompt>" from the left dropped the prefix with the prompt's start: keep the
        # prefix and the END of the prompt body in the room (an uncut prompt is encoded as one text, as before)
        bodies = bt.encode_batch([t[len(prefix):] for t in cut], add_special_tokens=False)
        for t, body in zip(cut, bodies):
            body.truncate(p_room - len(pre.ids), direction="left")
            enc_p[t] = (Encoding.merge([pre, body], growing_offsets=True), True)
    else:
        for t in cut:
            enc_p[t][0].truncate(p_room, direction="left")
    want_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ["token_type_ids"])
    ids, types, trunc = [], [] if want_types else None, []
    for i in range(len(responses)):
        j = first[i]
        if j != i:                                   # a repeat of row j: the same ids
            ids.append(list(ids[j]))
            if types is not None:
                types.append(list(types[j]))
            trunc.append(trunc[j])
            continue
        er = enc_r[i]
        if texts_p[i] is None:
            room = max_length - n_single
            was = len(er.ids) > room
            er.truncate(room, direction="right")
            out = bt.post_process(er, None, add_special_tokens=True)
        else:
            ep, was = enc_p[texts_p[i]]
            r_room = max_length - n_pair - len(ep.ids)
            was = was or len(er.ids) > r_room
            er.truncate(r_room, direction="right")
            out = bt.post_process(ep, er, add_special_tokens=True)
        ids.append(list(out.ids))
        if types is not None:
            types.append(list(out.type_ids))
        trunc.append(was)
    return Encoded(ids, types, trunc)


def _backend(tokenizer):
    """The fast tokenizer's Rust backend, cleared of truncation/padding settings a previous call left."""
    bt = getattr(tokenizer, "backend_tokenizer", None)
    if bt is None:
        raise DataError(f"{type(tokenizer).__name__} has no fast (Rust) backend; jprefs needs a fast tokenizer",
                        fix="load the tokenizer with AutoTokenizer.from_pretrained(..., use_fast=True)")
    bt.no_truncation()
    bt.no_padding()
    return bt


def encode_chat(tokenizer, prompts: Sequence[Any] | None, responses: Sequence[str], *,
                max_length: int = 512) -> Encoded:
    """Token ids of ``[user: prompt, assistant: response]`` rendered with the tokenizer's chat template.

    The layout of reward models that score a whole conversation (e.g. ``cyberagent/ca-reward-3b-ja``):
    the template text is tokenized without adding special tokens (the template has its own), and a
    text over ``max_length`` tokens is cut from the LEFT, so the end of the response, where a decoder
    classifier reads its score, is kept. A prompt may be a string, a message list or ``None``.

    >>> enc = encode_chat(tok, ["質問"], ["回答"], max_length=64)   # doctest: +SKIP
    """
    from jprefs.data.schema import SchemaError, as_messages

    prompts, responses = _check_lists(prompts, responses)
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{type(tokenizer).__name__} has no chat template, which an `input: chat` reward model needs",
                        fix="use a tokenizer with a chat template, or load the model with input='pair'")
    texts = []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        try:
            msgs = [] if p is None or p == "" else [m.to_dict() for m in as_messages(p)]
        except SchemaError as e:
            raise DataError(f"prompts[{i}]: {e} (got {str(p)[:80]!r})",
                            fix="pass a string, a list of {'role', 'content'} messages, or None") from e
        msgs.append({"role": "assistant", "content": r})
        texts.append(tokenizer.apply_chat_template(msgs, tokenize=False))
    bt = _backend(tokenizer)
    distinct = list(dict.fromkeys(texts))           # repeated conversations are tokenized once
    by_text = {t: list(e.ids) for t, e in zip(distinct, bt.encode_batch(distinct, add_special_tokens=False))}
    ids, trunc = [], []
    for t in texts:
        x = by_text[t]
        trunc.append(len(x) > max_length)
        ids.append(x[-max_length:])
    return Encoded(ids, None, trunc)


def length_batches(lengths: Sequence[int], *, batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Group indices into batches of similar length (longest first).

    Each batch holds at most ``batch_size`` items and, when ``max_tokens`` is
    given, at most ``max_tokens`` padded tokens (``len(batch) * longest``).
    Sorting by length keeps padding small: on CPU every padded token costs as
    much as a real one.

    >>> length_batches([5, 1, 4, 2], batch_size=2)
    [[0, 2], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= batch_size or (max_tokens and (len(cur) + 1) * longest > max_tokens)):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def collate(enc: Encoded, idx: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Right-pad the inputs ``idx`` into tensors: ``input_ids``/``attention_mask`` (B, T)."""
    import torch

    T = max(len(enc.input_ids[i]) for i in idx)
    B = len(idx)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long) if enc.token_type_ids is not None else None
    for b, i in enumerate(idx):
        n = len(enc.input_ids[i])
        input_ids[b, :n] = torch.tensor(enc.input_ids[i], dtype=torch.long)
        mask[b, :n] = 1
        if types is not None:
            types[b, :n] = torch.tensor(enc.token_type_ids[i], dtype=torch.long)
    out = {"input_ids": input_ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out
