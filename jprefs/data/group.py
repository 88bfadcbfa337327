"""``jprefs data group``: graded answers, one row each, -> one row per prompt with every answer and its grade.

LLM-judge benchmarks in single-answer mode write one row per (model, question): shaberi's
``data/judgements/judge_*/BENCH/MODEL.json`` (``Question``, ``ModelAnswer``, ``score``), ELYZA-tasks-100
result sheets, FastChat ``llm_judge`` single-answer judgments (``--fastchat DATA_DIR``: joined with
their questions and answers, :class:`FastChatJoin`). ``jprefs data rm-pairs --scores`` needs the other
shape: one row per prompt with ``responses`` and ``scores``. This regroups them::

    jprefs data group judge_gpt-4.1/elyza__ELYZA-tasks-100/*.json \\
        --map prompt=Question,response=ModelAnswer,score=score --license cc-by-sa-4.0 -o graded.jsonl
    jprefs data rm-pairs graded.jsonl --scores scores --pairs all --min-margin 2 --length-balance -o pairs.jsonl
    jprefs data group --fastchat FastChat/fastchat/llm_judge/data/japanese_mt_bench --judge gpt-4_single \
        --license apache-2.0 -o graded.jsonl

**Input**: any number of files (``.jsonl``, ``.json`` - a list, or JSON lines saved as ``.json`` -,
``.parquet``, ``.csv``, ``.tsv``). ``--map`` names the fields (dotted paths allowed): ``prompt`` (a
string or a message list), ``response`` (a string), ``score`` (a number, a numeric string such as
``"4"`` or ``"7.5"``, or null for an answer the judge did not grade) and optionally ``model``; without
a ``model`` field the model is the file's name without its suffix (shaberi's layout).

**Grouping**: answers whose prompts are equal after NFKC and whitespace folding (the key ``jprefs data
split`` uses) form one row, in the order first seen (files in the order given, rows in file order); a
row's ``responses``, ``scores``, ``meta.models`` and ``meta.files`` (the file each answer came from) are
aligned. An answer row is rejected, with its
file, line and reason, when a field is missing (``missing_field``), the prompt is not a string or a
message list (``bad_prompt``), the response not a string (``bad_response``), or the score not a
number, a numeric string or null, or not finite (``bad_score``). ``answers_in == answers_grouped +
answers_rejected`` always. Texts are written as they are: ``rm-pairs`` leaves out empty, invalid and
duplicate answers and counts them.

**Output** ``OUT.jsonl``: ``{"id", "prompt": [messages], "responses", "scores", "source", "license",
"meta": {"models", "files"}}``; ``OUT.rejects.jsonl``: ``{file, line | index, reason, error, raw}``.
Both are written atomically; the same inputs give the same files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from jprefs.data.adapters import RowReject, _brief, _get, _turn
from jprefs.data.io import TABLE_SUFFIXES
from jprefs.data.schema import finite_float
from jprefs.errors import ConfigError, DataError
from jprefs.runlock import holds_output

COMMAND = "jprefs data group"
FIELDS = ("prompt", "response", "score", "model")
# the suffixes iter_table reads, longest first (a file's name without one is its model)
_SUFFIXES = tuple(sorted({*TABLE_SUFFIXES, ".ndjson", ".txt"}, key=len, reverse=True))


def _score(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        t = v.strip()
        if t.lower() in ("", "none", "null", "nan"):
            return None
        try:
            v = float(t)
        except ValueError:
            raise RowReject("bad_score", f"score {v!r} is not a number") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RowReject("bad_score", f"score {v!r} is a {type(v).__name__}, not a number")
    f = finite_float(v)
    if f is None:
        raise RowReject("bad_score", f"score {_brief(v)} is not finite (or too large for a float)")
    return f


def _stem(path) -> str:
    """A file's name without its table suffix: ``Qwen__Qwen2.5-72B-Instruct.json`` -> ``Qwen__Qwen2.5-72B-Instruct``."""
    name = Path(path).name
    for suf in _SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


class FastChatJoin:
    """FastChat ``llm_judge`` single-answer judgments joined with their questions and answers.

    ``data_dir`` is one benchmark's folder (``fastchat/llm_judge/data/BENCH``): ``question.jsonl``
    (``question_id``, ``turns``), ``model_answer/MODEL.jsonl`` (``question_id``, ``model_id``,
    ``choices[0].turns``) and the judgments, ``model_judgment/JUDGE.jsonl`` or the files of the folder
    ``model_judgment/JUDGE/`` (``question_id``, ``model``, ``score``, ``turn``). A judgment row becomes the
    answer row ``{prompt, response, score, model}``: the question's first turn, the model's first answer,
    the score (FastChat's ``-1``, a verdict it could not parse, becomes null: ungraded). Rejected, with
    their line: a turn-2 judgment (``turn_not_1``: its prompt holds each model's own first answer, so no
    two models share it), an unknown question (``unknown_question``), no answer by that model
    (``no_answer``), a second judgment of the same model and question (``duplicate_judgment``: the
    first is kept). Malformed rows of the question and answer files are reported in the summary
    (``reference_rows_rejected``) and the judgments that needed them rejected as above."""

    def __init__(self, data_dir: str | os.PathLike, judge: str = "gpt-4_single"):
        from jprefs.data.fastchat import FastChatAnswers

        ref = FastChatAnswers(data_dir)
        d = ref.dir
        name = judge.rstrip("/")
        name = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
        jf, jd = d / "model_judgment" / f"{name}.jsonl", d / "model_judgment" / name
        use_dir = jd.is_dir() and not judge.endswith(".jsonl")       # NAME.jsonl: the file; NAME/: the folder
        use_file = jf.is_file() and not judge.endswith("/")
        if use_dir and use_file and judge == name:
            raise ConfigError(f"{d / 'model_judgment'} holds both {jf.name} and {jd.name}/ (often different models)\n"
                              f"  fix: --judge {name}.jsonl for the file or --judge {name}/ for the folder")
        if use_dir:
            self.inputs = sorted(str(x) for x in jd.iterdir() if x.is_file() and x.name.endswith(".jsonl"))
        elif use_file:
            self.inputs = [str(jf)]
        else:
            have = sorted(x.name for x in (d / "model_judgment").iterdir()) if (d / "model_judgment").is_dir() else []
            raise DataError(f"no judgments {jf.name} or {jd.name}/ in {d / 'model_judgment'} (there: {have})",
                            path=str(d), fix="pass --judge NAME, one of the names there without .jsonl")
        if not self.inputs:
            raise DataError(f"{jd} holds no .jsonl judgment files", path=str(jd))
        self.ref = ref
        self.seen: set[tuple[str, str]] = set()

    @property
    def bad_refs(self) -> dict[str, int]:
        return self.ref.bad_refs

    def __call__(self, d: dict, model_default: str) -> dict:
        turn = _turn(d)
        if turn != 1:
            raise RowReject("turn_not_1", f"turn {turn!r}: a later turn's prompt holds each model's own first "
                                          "answer, so it is not one prompt shared by the models")
        qid, model = _get(d, "question_id"), _get(d, "model")
        q, a = self.ref.question(qid), self.ref.answer(model, qid)
        if (str(model), str(qid)) in self.seen:
            raise RowReject("duplicate_judgment", f"{model!r} on question {qid!r} was judged before in these files "
                                                  "(the first judgment is kept)")
        score = _score(_get(d, "score"))     # a bad score is rejected before the judgment counts as seen
        if score == -1:
            score = None                    # FastChat: the judge's verdict could not be parsed
        self.seen.add((str(model), str(qid)))
        return {"prompt": q, "response": a, "score": score, "model": str(model)}


FASTCHAT_MAPPING = {"prompt": "prompt", "response": "response", "score": "score", "model": "model"}


def group_to_files(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, mapping: dict[str, str], *,
                   license: str | None = None, source: str | None = None, join: FastChatJoin | None = None) -> dict:
    """Group the answer rows of ``inputs`` by prompt into ``output`` (and its rejects file); returns the
    summary (see the module docstring). ``join``: each input row is first turned into an answer row by it
    (:class:`FastChatJoin`; ``mapping`` then names its fields)."""
    from jprefs.data.io import AtomicWriter, iter_table, reject_entry, rejects_path_for
    from jprefs.data.schema import (UNKNOWN_LICENSE, SchemaError, as_messages, content_hash, prompt_key)

    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise ConfigError(f"--map {unknown[0]}=...: group reads {', '.join(FIELDS)}\n  fix: e.g. --map "
                          "prompt=Question,response=ModelAnswer,score=score")
    missing = [k for k in ("prompt", "response", "score") if k not in mapping]
    if missing:
        raise ConfigError(f"--map lacks {', '.join(missing)}\n  fix: name the fields, e.g. --map "
                          "prompt=Question,response=ModelAnswer,score=score")
    out = Path(output)
    if not out.name.endswith((".jsonl", ".jsonl.gz")):
        raise ConfigError(f"-o {output}: give a name ending in .jsonl or .jsonl.gz")
    if not inputs:
        raise ConfigError("no input files")
    groups: dict[str, dict] = {}
    c = {"files": len(inputs), "answers_in": 0, "answers_grouped": 0, "answers_rejected": 0, "ungraded": 0}
    reasons: dict[str, int] = {}
    rej_path = rejects_path_for(out)
    with AtomicWriter(rej_path) as fr:
        for path in inputs:
            model_default = _stem(path)
            for row in iter_table(path):
                c["answers_in"] += 1
                try:
                    if row.error:
                        raise RowReject(row.reason or "bad_row", row.error)
                    d = row.data
                    if not isinstance(d, dict):
                        raise RowReject("not_an_object", f"expected an object, got {type(d).__name__}")
                    if join is not None:
                        d = join(d, model_default)
                    p = _get(d, mapping["prompt"])
                    if not isinstance(p, (str, list)) or (isinstance(p, str) and not p.strip()):
                        raise RowReject("bad_prompt", f"prompt must be a non-empty string or a message list, got {p!r:.60}")
                    try:
                        msgs = as_messages(p)
                    except SchemaError as e:
                        raise RowReject("bad_prompt", str(e)) from None
                    resp = _get(d, mapping["response"])
                    if not isinstance(resp, str):
                        raise RowReject("bad_response", f"response must be a string, got {type(resp).__name__}")
                    s = _score(_get(d, mapping["score"]))
                    model = _get(d, mapping["model"]) if "model" in mapping else model_default
                    if not isinstance(model, str):
                        model = str(model)
                except RowReject as e:
                    c["answers_rejected"] += 1
                    reasons[e.reason] = reasons.get(e.reason, 0) + 1
                    fr.write_json({"file": str(path), **reject_entry(row, e.reason, str(e))})
                    continue
                key = prompt_key(msgs)
                g = groups.get(key)
                if g is None:
                    g = groups[key] = {"id": content_hash([m.to_dict() for m in msgs])[:16],
                                       "prompt": [m.to_dict() for m in msgs], "responses": [], "scores": [],
                                       "source": source or "jprefs data group",
                                       "license": license or UNKNOWN_LICENSE, "meta": {"models": [], "files": []}}
                g["responses"].append(resp)
                g["scores"].append(s)
                g["meta"]["models"].append(model)
                g["meta"]["files"].append(str(path))
                c["answers_grouped"] += 1
                c["ungraded"] += s is None
        with AtomicWriter(out) as fo:
            for g in groups.values():
                fo.write_json(g)
    assert c["answers_in"] == c["answers_grouped"] + c["answers_rejected"], "answer accounting broken"
    sizes = [len(g["responses"]) for g in groups.values()]
    extra = {} if join is None else {"reference_rows_rejected": list(join.bad_refs)}   # reading order
    return {"command": COMMAND, "inputs": [str(p) for p in inputs], "output": str(out), "rejects": str(rej_path),
            **c, **extra, "prompts_out": len(groups), "answers_per_prompt": {"min": min(sizes, default=0),
                                                                    "max": max(sizes, default=0)},
            "rejects_by_reason": dict(sorted(reasons.items())), "license": license or UNKNOWN_LICENSE}


def configure(p) -> None:
    a = p.add_argument
    a("inputs", nargs="*", metavar="FILE", help="answer rows (.jsonl, .json, .parquet, .csv, .tsv); one file per model "
                                               "or all in one (none with --fastchat)")
    a("--map", dest="mapping",
      help="fields: prompt=...,response=...,score=...[,model=...] (dotted paths allowed); without model, the file name")
    a("--fastchat", metavar="DATA_DIR", help="instead of FILEs: a FastChat llm_judge benchmark folder "
      "(question.jsonl, model_answer/, model_judgment/); its single-answer judgments joined with their "
      "questions and answers (turn 1)")
    a("--judge", default="gpt-4_single", help="--fastchat: model_judgment/JUDGE.jsonl or the files of "
                                              "model_judgment/JUDGE/ (default gpt-4_single; when both exist, "
                                              "say which: JUDGE.jsonl or JUDGE/)")
    a("--license", help="SPDX licence id of the answers (default unknown)")
    a("--source", help="provenance to record in each row (default 'jprefs data group')")
    a("-o", "--output", required=True, metavar="GRADED.jsonl", help="one row per prompt (+ GRADED.rejects.jsonl)")
    a("--json", action="store_true", help="print the summary as JSON")


@holds_output("jprefs data group", folder=False)
def run(args) -> int:
    import json

    from jprefs.data.adapters import parse_mapping
    from jprefs.data.io import eprint

    if args.fastchat:
        if args.inputs or args.mapping:
            raise ConfigError("--fastchat reads its own files and fields\n  fix: drop the FILEs and --map, or "
                              "drop --fastchat")
        join = FastChatJoin(args.fastchat, args.judge)
        s = group_to_files(join.inputs, args.output, FASTCHAT_MAPPING, license=args.license,
                           source=args.source or f"FastChat llm_judge {Path(args.fastchat).name} ({args.judge})",
                           join=join)
    else:
        if not args.inputs or not args.mapping:
            raise ConfigError("give the answer FILEs and --map prompt=...,response=...,score=... (or --fastchat "
                              "DATA_DIR)")
        s = group_to_files(args.inputs, args.output, parse_mapping(args.mapping, FIELDS), license=args.license,
                           source=args.source)
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
    why = ", ".join(f"{k} {v}" for k, v in s["rejects_by_reason"].items())
    eprint(f"{COMMAND}: {s['answers_in']} answers from {s['files']} file(s) = {s['answers_grouped']} grouped "
           f"({s['ungraded']} ungraded) + {s['answers_rejected']} rejected{f' ({why})' if why else ''} -> "
           f"{s['prompts_out']} prompts, {s['answers_per_prompt']['min']}-{s['answers_per_prompt']['max']} answers each "
           f"-> {s['output']} (+ {Path(s['rejects']).name})")
    if s.get("reference_rows_rejected"):
        eprint(f"{COMMAND}: {len(s['reference_rows_rejected'])} malformed question/answer rows skipped, first "
               f"{s['reference_rows_rejected'][0]}")
    if s["prompts_out"] == 0:
        raise DataError(f"no answer rows grouped from {s['answers_in']} rows ({why or 'the inputs have no rows'})",
                        path=str(args.inputs[0]), fix=f"see {s['rejects']}; check the --map field names")
    return 0
