"""``jprefs score``: score (prompt, response) pairs or preference pairs with a reward model.

    jprefs score MODEL INPUT -o scores.jsonl

INPUT is a canonical pairs JSONL (both responses are scored and ``chosen_reward``,
``rejected_reward`` added), a binary JSONL / TSV (``reward`` added), or a JSONL of
``{prompt?, response}`` rows. A seed ensemble (``train-rm ensemble_seeds=[...]``) also writes each
reward's spread over its members (``reward_std``; ``chosen_reward_std``, ``rejected_reward_std``): how
much the seeds disagree, large where the reward is a guess. MODEL is a jprefs reward model directory, a Hub id,
or a plain sequence classifier (``--label`` picks its chosen class; without it label 1 of the generic
``LABEL_0``/``LABEL_1``, else the label named positive/chosen/good/..., else an error listing the labels;
a jprefs reward model refuses ``--label``: its reward is fixed by training). Rows that cannot be
scored (malformed JSON, no text, an empty response) go to ``OUTPUT.rejects.jsonl`` with
their line and reason; input rows = output rows + rejected rows. A rank list stays one row, with
``rewards`` (one per response, best first). Every input field is kept: a binary row's columns beyond
the canonical ones are written back beside them. A model that gives NaN or infinite rewards is an error.
"""

from __future__ import annotations

import argparse

from jprefs.runlock import holds_output

EXAMPLES = """examples:
  jprefs score out/chabsa-rm ../shared/data/chabsa_binary/test.tsv -o scores.jsonl
  jprefs score out/rm pairs.jsonl -o scored.jsonl --batch-size 64
  jprefs score some/hub-sentiment-model texts.jsonl --label positive -o scores.jsonl
  jprefs score out/ja-debiased-rm pairs.jsonl --head full -o scored-full.jsonl
  jprefs score OpenAssistant/reward-model-deberta-v3-large-v2 pairs.jsonl -o scored.jsonl   # catalogued: no flags
  jprefs score owner/name pairs.jsonl --revision v1.0 -o scored.jsonl

`jprefs rm list` shows the catalogued public reward models (chosen label, input layout, licence).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("model", help="jprefs reward-model directory, Hub id, or sequence-classification model")
    parser.add_argument("input", help="pairs JSONL, binary JSONL/TSV, or JSONL of {prompt?, response}")
    parser.add_argument("-o", "--output", required=True, help="output JSONL (input rows plus rewards)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--label", help="chosen label (name or index) of a plain classifier (default: the "
                                        "catalogue entry, else label 1 of LABEL_0/LABEL_1, else the label "
                                        "named positive, chosen, good, ...); refused for a jprefs reward model")
    parser.add_argument("--input-layout", choices=["pair", "response", "chat"],
                        help="input layout of a plain classifier: (prompt, response) sentence pair, the response "
                             "alone, or the tokenizer's chat template (default: the catalogue entry, else pair)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of a Hub model")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--dtype", help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--head", help="a head of a multi-head reward model (train-rm debias=odin): quality (the "
                                       "default), full (quality + length) or length")


@holds_output("jprefs score", folder=False)
def run(args: argparse.Namespace) -> int:
    import numpy as np

    from jprefs.classifiers.data import RMData, detect_format, load_rm_data
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.data.io import eprint, iter_jsonl, reject_entry, rejects_path_for, write_jsonl
    from jprefs.data.schema import RankList
    from jprefs.errors import DataError, JprefsError
    from jprefs.eval.metrics import wins

    try:
        fmt = detect_format(args.input)
    except DataError:
        fmt = "plain"
    rejects: list[dict] = []
    if fmt == "plain":
        rows, prompts, responses = [], [], []
        for row in iter_jsonl(args.input):
            if row.error:
                rejects.append(reject_entry(row))
                continue
            problem = _plain_row_problem(row.data)
            if problem:
                rejects.append(reject_entry(row, *problem))
                continue
            rows.append(row.data)
            prompts.append(row.data.get("prompt"))
            responses.append(row.data.get("response", row.data.get("text")))
    else:
        data: RMData = load_rm_data(args.input, data_format=fmt)
        rejects = data.rejects
        if data.kind == "binary":
            ex, brows = _binary_rows(args.input, fmt, data, rejects)
        else:
            recs, extras = _rank_list_extras(args.input, data, rejects)
    rm = RewardModel.from_pretrained(args.model, device=args.device, dtype=args.dtype, label=args.label,
                                     revision=args.revision, input=args.input_layout)
    eprint(f"scoring with {rm}")

    def score(ps, rs):
        """Rewards and, for a seed ensemble, their spread over the members (else None)."""
        if hasattr(rm, "score_with_std"):
            return rm.score_with_std(ps, rs, batch_size=args.batch_size, head=args.head, show_progress=True)
        return rm.score(ps, rs, batch_size=args.batch_size, show_progress=True, head=args.head), None

    def with_std(d: dict, **cols) -> dict:
        return dict(d, **{k: float(v) for k, v in cols.items() if v is not None})

    def checked(ps, rs):
        r, sd = score(ps, rs)
        bad = int((~np.isfinite(r)).sum())
        if bad:
            raise JprefsError(f"model {args.model} gave {bad} NaN or infinite rewards of {len(r)} on {args.input}: "
                              f"nothing was written.\n  fix: check the model folder (a mean-pooled jprefs model loaded "
                              f"by plain transformers scores NaN; fp16 can overflow: try --dtype fp32); retrain or "
                              f"re-save it")
        return r, sd

    def std(sd, i):
        return None if sd is None else sd[i]

    if fmt == "plain":
        r, sd = checked(prompts, responses)
        out = [with_std(row, reward=x, reward_std=std(sd, i)) for i, (row, x) in enumerate(zip(rows, r))]
    elif data.kind == "records":
        # one row out per record in: a pair gets chosen/rejected rewards, a rank list one reward per response
        ps, rs, at = [], [], []
        for rec in recs:
            texts = rec.responses if isinstance(rec, RankList) else [rec.chosen, rec.rejected]
            at.append(len(rs))
            ps += [rec.prompt] * len(texts)
            rs += list(texts)
        r, sd = checked(ps, rs)
        out, won = [], []
        for rec, k, extra in zip(recs, at, extras):
            if isinstance(rec, RankList):
                K = len(rec.responses)
                row = dict(rec.to_dict(), rewards=[float(x) for x in r[k:k + K]])
                if extra:
                    row["meta"] = {**row["meta"], "extra": {**row["meta"].get("extra", {}), **extra}}
                if sd is not None:
                    row["rewards_std"] = [float(x) for x in sd[k:k + K]]
                out.append(row)
                won += [wins(r[k + i], r[k + j]) for i in range(K) for j in range(i + 1, K)]
            else:
                out.append(with_std(rec.to_dict(), chosen_reward=r[k], rejected_reward=r[k + 1],
                                    chosen_reward_std=std(sd, k), rejected_reward_std=std(sd, k + 1)))
                won.append(wins(r[k], r[k + 1]))
        acc = float(np.mean(won)) if won else float("nan")
        eprint(f"pairwise accuracy {acc:.4f} on {len(won)} pairs (ties count 1/2)")
    else:
        r, sd = checked([e.prompt for e in ex], [e.response for e in ex])
        out = [with_std(row, reward=x, reward_std=std(sd, i)) for i, (row, x) in enumerate(zip(brows, r))]
    write_jsonl(args.output, out)
    if rejects:
        write_jsonl(rejects_path_for(args.output), rejects)
    eprint(f"wrote {len(out)} rows to {args.output}" + (f"; {len(rejects)} rejected rows to "
                                                          f"{rejects_path_for(args.output)}" if rejects else ""))
    return 0


def _kept_rows(path: str, fmt: str) -> list:
    """The input rows :func:`load_rm_data` kept (its readers, in its order), to carry their other columns."""
    from jprefs.classifiers.data import _table_rows
    from jprefs.data.io import iter_jsonl, iter_records
    from jprefs.data.schema import BinaryExample, SchemaError

    if fmt == "pairs":
        return [row for row, rec in iter_records(path) if rec is not None]
    raw = []
    for row in (iter_jsonl(path) if fmt == "binary" else _table_rows(path)):
        if row.error:
            continue
        try:
            BinaryExample.from_dict(row.data)
        except SchemaError:
            continue
        raw.append(row)
    return raw


def _rank_list_extras(path: str, data, rejects: list[dict]) -> tuple[list, list[dict]]:
    """The records of ``data`` and, per record, the input columns a rank list does not keep (``RankList``
    drops them; a pair keeps them in ``meta.extra`` itself), to write back in ``meta.extra``. A rank
    list whose columns cannot be written back as strict JSON (NaN) is moved to ``rejects``."""
    from jprefs.data.schema import RankList

    raw = _kept_rows(path, "pairs")
    if len(raw) != len(data.records):
        return data.records, [{} for _ in data.records]
    known = {"id", "prompt", "responses", "source", "source_id", "license", "meta", "scores"}
    kept = _writable(path, ((rec, row, {k: v for k, v in row.data.items() if k not in known}
                             if isinstance(rec, RankList) else {}) for rec, row in zip(data.records, raw)), rejects)
    return [r for r, _ in kept], [e for _, e in kept]


def _writable(path: str, items, rejects: list[dict]) -> list[tuple]:
    """``(item, value)`` of every ``(item, input row, value)`` whose value can be written as strict JSON;
    the input row of each other one goes to ``rejects`` with its reason (a NaN column, say)."""
    from jprefs.data.io import RowProblem, check_value, reject_entry

    out = []
    for item, row, value in items:
        try:
            check_value(value, finite=True)
        except RowProblem as err:
            rejects.append(dict(reject_entry(row, err.reason, str(err)), file=str(path)))
            continue
        out.append((item, value))
    return out


def _binary_rows(path: str, fmt: str, data, rejects: list[dict]) -> tuple[list, list[dict]]:
    """The binary examples of ``data`` and their output rows: the canonical fields plus every other
    column of the input row (``BinaryExample`` keeps only its own fields and ``meta``). A row whose
    columns cannot be written back as strict JSON (NaN) is moved to ``rejects``."""
    raw = _kept_rows(path, fmt)          # the input rows load_rm_data kept, in its order
    examples = data.binary()
    if len(raw) != len(examples):           # the two readers disagree: keep the canonical rows only
        return examples, [e.to_dict() for e in examples]
    def full(e, row) -> dict:
        d = e.to_dict()
        return {**d, **{k: v for k, v in row.data.items() if k not in d}}

    kept = _writable(path, ((e, row, full(e, row)) for e, row in zip(examples, raw)), rejects)
    return [e for e, _ in kept], [d for _, d in kept]


def _plain_row_problem(d: dict) -> tuple[str, str] | None:
    """Why a ``{prompt?, response | text, ...}`` row cannot be scored and written back, or None."""
    from jprefs.data.io import RowProblem, check_value
    from jprefs.data.schema import SchemaError, as_messages

    text = d.get("response", d.get("text"))
    if not isinstance(text, str):
        return "no_response", f"row has no string 'response' or 'text' (got {type(text).__name__})"
    if not text.strip():
        # a reward for nothing says nothing about the data; score empty policy outputs in
        # Python (RewardModel.score / as_reward_func accept them) if that is what you want
        return "empty_response", "the response is empty or only whitespace; fix or drop the row"
    prompt = d.get("prompt")
    if prompt is not None:
        try:
            as_messages(prompt)
        except SchemaError as e:
            return e.reason, f"'prompt' must be a string or a message list: {e}"
    try:
        check_value(d, finite=True)  # the row is written back with its reward: it must be strict JSON
    except RowProblem as e:
        return e.reason, str(e)
    return None
