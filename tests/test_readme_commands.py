"""Every command the READMEs and the `--help` texts show exists, and the cheap offline ones work.

The commands are read from the documents themselves: each line of a fenced shell block (``bash``
or plain; continuation lines joined), each inline `` `jprefs ...` `` span, and each example line
of ``jprefs --help`` / ``jprefs COMMAND --help``. For every jprefs command:

1. it parses with the real argparse configuration of its command (``configure`` of the module
   the CLI registers), without running; an inline span may be a fragment (missing positionals),
   but never an unknown option, sub-command or choice;
2. each ``key=value`` override names a field of that stage's config dataclass, and a recipe it
   names loads with those overrides;
3. every local path into the repository (recipes, bundled samples, ``../shared/data``) exists;
4. it is run (in-process, offline, from a workspace laid out like the repository root with the
   user files the examples name made from the bundled samples) with exit status 0, unless it is
   listed in ``SKIP`` with the reason (GPU, network, minutes of training) or in ``EXPECT`` with
   the one-line error it must give offline.

Non-jprefs shell commands (``pip``, ``vllm serve`` ...) must match ``OTHER``; a new README
command that fits nothing fails the test until it is classified.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import re
import shlex
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from jprefs.cli import COMMANDS, EPILOG, _available, main
from tests.conftest import REPO, SHARED_DATA

DOCS = ["README.md", "translate/README.md", "classifiers/README.md", "rl/README.md", "eval/README.md",
        "publish/README.md", "label/README.md"]
HELP_MODULES = ["jprefs.data.cli", "jprefs.translate.cli", "jprefs.classifiers.cli",
                "jprefs.classifiers.score_cli", "jprefs.rl.cli", "jprefs.publish.cli",
                "jprefs.label.cli"]
CONFIGS = {"translate": "jprefs.translate.config:TranslateConfig", "train-rm": "jprefs.classifiers.config:TrainRMConfig",
           "rl": "jprefs.rl.config:RLConfig"}
REPO_DIRS = ("translate/", "classifiers/", "rl/", "eval/", "jprefs/", "bench/", "tests/", "../shared/", "label/",
             "docs/")

# commands documented but not run here, with the reason (a regex on the normalised command)
SKIP = {
    r"^(accelerate launch|torchrun) ": "a multi-process launch of a GPU recipe (tests/*/test_multiprocess.py runs 2 CPU "
                                       "processes)",
    r"^jprefs data convert Anthropic/": "downloads a Hub dataset (network)",
    r"^jprefs translate .*(calm3-22b|--engine vllm)": "calm3-22b on vLLM or a server: GPUs",
    r"^jprefs translate .*--engine openai": "needs an OpenAI-compatible server (tests/translate runs a local one)",
    r"^jprefs translate .*(--shard|merge )": "shards of a GPU job and their merge (tests/translate/test_cli.py)",
    r"^jprefs data (merge|export) out/": "joins the outputs of the GPU translation jobs above",
    r"^jprefs train-rm (?!--help)": "trains an encoder, e5-small by default (a minute to hours; "
                                    "tests/classifiers trains tiny ones)",
    r"^jprefs score (out/|some/)": "needs the reward model a train-rm run above writes",
    r"^jprefs rl rl/recipes/": "RL training (20 s to hours; tests/rl runs the tiny recipes with fewer steps)",
    r"^jprefs rl RECIPE": "a template",
    r"^jprefs eval rm (?!--help)": "needs trained reward models (tests/eval/test_eval_rm.py saves tiny ones)",
    r"^jprefs eval policy (?!--help)": "needs trained policies (tests/eval/test_eval_policy.py trains tiny ones)",
    r"^jprefs eval judge (?!--help)": "needs an OpenAI-compatible judge server (tests/eval/test_judge.py runs a "
                                      "local one)",
    r"^jprefs eval (export|import)-human .*out/": "reads the output of a `jprefs eval policy` run above",
    r"^jprefs push (dataset|model) (out|runs)/": "pushes (or dry-runs) the output of a stage above (tests/hub pushes "
                                                "to a local Hub, tests/publish dry-runs)",
    r"^jprefs data convert (owner|REPO)": "reads a pushed Hub dataset (network; tests/hub reads it from a local Hub)",
    r"^jprefs score (owner/name INPUT|REPO)": "a template: MODEL and INPUT are yours",
    r"^jprefs eval rm --model owner/": "a leaderboard of Hub models (network)",
    r"^jprefs label serve ": "a web server that runs until stopped (tests/label starts it and drives it in Chromium)",
    r"^jprefs label candidates --model runs/": "needs the policy a `jprefs rl` run above writes (tests/label/"
                                                "test_candidates.py samples tiny ones)",
    r"^jprefs data rm-pairs cands\.jsonl --reward out/rm": "needs the candidates of a `label candidates` run and the "
                                                          "reward model of a train-rm run above (tests/data/"
                                                          "test_rm_pairs.py runs the loop on tiny ones)",
    r"^jprefs label (stats|export) --db (labels|ab|review)\.sqlite": "reads the database of a `label serve` above",
}
# commands that must fail offline with exactly this one line (what is missing and the fix)
EXPECT = {
    r"^jprefs translate translate/recipes/mini-cpu\.yaml": (
        2, "jprefs translate: error: model 'Qwen/Qwen2.5-0.5B-Instruct' is not in the local Hugging Face cache and "
           "the Hub cannot be reached (HF_HUB_OFFLINE=1 / no network); fix: download it on a machine with network "
           "(`hf download Qwen/Qwen2.5-0.5B-Instruct`) or pass a local path"),
    # catalogued Hub reward models (jprefs rm list): the revision an entry pins is named too
    r"^jprefs score OpenAssistant/reward-model-deberta-v3-large-v2 ": (
        2, "jprefs score: error: model 'OpenAssistant/reward-model-deberta-v3-large-v2' (revision refs/pr/3) is not in the local Hugging Face cache "
           "and the Hub cannot be reached (HF_HUB_OFFLINE=1 / no network); fix: download it on a "
           "machine with network (`hf download OpenAssistant/reward-model-deberta-v3-large-v2 --revision refs/pr/3`) or pass a local path"),
    r"^jprefs score cyberagent/ca-reward-3b-ja ": (
        2, "jprefs score: error: model 'cyberagent/ca-reward-3b-ja' is not in the local Hugging Face cache "
           "and the Hub cannot be reached (HF_HUB_OFFLINE=1 / no network); fix: download it on a "
           "machine with network (`hf download cyberagent/ca-reward-3b-ja`) or pass a local path"),
    r"^jprefs score owner/name ": (
        2, "jprefs score: error: model 'owner/name' (revision v1.0) is not in the local Hugging Face cache "
           "and the Hub cannot be reached (HF_HUB_OFFLINE=1 / no network); fix: download it on a "
           "machine with network (`hf download owner/name --revision v1.0`) or pass a local path"),
}
# shell commands that are not jprefs commands (set-up, servers, the tests)
OTHER = {
    "python3 -m venv ": "creates an environment", ". .venv/bin/activate": "shell set-up",
    "pip install ": "installs packages (network)", "python -m pytest": "the test suite itself",
    "vllm serve ": "a GPU inference server",
}
NOT_BUILT: dict[str, str] = {}   # command prefixes documented before they exist (none now)
PLACEHOLDERS = {"N": "2", "E": "3", "$i": "0"}

FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


# ---------------------------------------------------------------- extraction

def _is_jprefs(line: str) -> bool:
    return line.startswith("jprefs ") or line == "jprefs" or " -m jprefs.cli " in line


def doc_commands(doc: str) -> list[tuple[str, str, str]]:
    """(where, command, kind) for the shell commands of one README; kind: block | inline."""
    text = (REPO / doc).read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        lang = m.group(1)
        if lang in ("python", "json", "yaml"):
            continue
        first = text[:m.start()].count("\n") + 2
        buf, start = "", None
        for i, line in enumerate(m.group(2).splitlines()):
            start = first + i if start is None else start
            buf += line.strip()
            if buf.endswith("\\"):
                buf = buf[:-1] + " "
                continue
            cmd, buf, at = buf.strip(), "", start
            start = None
            if not cmd or cmd.startswith("#"):
                continue
            # a plain block may be a file layout; a bash block holds only commands
            for part in (p.strip() for p in re.split(r"&&|;", cmd)):
                if lang == "bash" or _is_jprefs(part) or part.startswith(("accelerate ", "torchrun ")):
                    out.append((f"{doc}:{at}", part, "block"))
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in INLINE.finditer(prose):
        s = " ".join(m.group(1).split())
        if _is_jprefs(s) and not re.match(r"^jprefs [\w-]+:", s):  # `jprefs rl: run ...` is a message
            out.append((f"{doc}:{prose[:m.start()].count(chr(10)) + 1}", s, "inline"))
    return out


def help_commands() -> list[tuple[str, str, str]]:
    """The example lines of `jprefs --help` and of every command's `--help`."""
    texts = {"jprefs --help": EPILOG}
    for mod in HELP_MODULES:
        texts[f"{mod}.EXAMPLES"] = importlib.import_module(mod).EXAMPLES
    # jprefs eval: its own epilog and each subcommand's (argparse sub-parsers)
    from jprefs.eval import cli as eval_cli

    ep = argparse.ArgumentParser(prog="jprefs eval")
    eval_cli.configure(ep)
    texts["jprefs eval --help"] = ep.epilog
    for action in ep._subparsers._group_actions:
        for name, sub in action.choices.items():
            texts[f"jprefs eval {name} --help"] = sub.epilog or ""
    out = []
    for where, text in texts.items():
        buf = ""
        for line in text.splitlines():
            buf += line.strip()
            if buf.endswith("\\"):
                buf = buf[:-1] + " "
                continue
            cmd, buf = re.sub(r"\s+\(.*\)$", "", buf.strip()), ""  # "(Hub, online)" notes
            if _is_jprefs(cmd) or cmd.startswith("accelerate "):
                out.append((where, cmd, "block"))
    return out


def all_commands() -> list[tuple[str, str, str]]:
    return [c for d in DOCS for c in doc_commands(d)] + help_commands()


def argv_of(cmd: str) -> list[str]:
    """The jprefs argv (without `jprefs`) of a command, `accelerate launch ... -m jprefs.cli` included."""
    for k, v in PLACEHOLDERS.items():
        if k.startswith("$"):
            cmd = cmd.replace(k, v)
    toks = shlex.split(cmd, comments=True)
    if "jprefs.cli" in toks:
        toks = toks[toks.index("jprefs.cli") + 1:]
    else:
        assert toks[0] == "jprefs", cmd
        toks = toks[1:]
    return [PLACEHOLDERS.get(t, t) for t in toks]


def variants(argv: list[str]) -> list[list[str]]:
    """A template as concrete argvs: `[--json]` with and without, `a|b|c` each, `...` dropped."""
    outs: list[list[str]] = [[]]
    for t in argv:
        if t in ("...", "[key=value", "...]", "key=value"):
            continue
        if t.startswith("[") and t.endswith("]"):
            outs = [o + alt for o in outs for alt in ([], [t[1:-1]])]
        elif "|" in t and "=" not in t and "://" not in t:
            outs = [o + [alt] for o in outs for alt in t.split("|")]
        else:
            outs = [o + [t.rstrip(".") if t.endswith("...") else t] for o in outs]
    return outs


# ---------------------------------------------------------------- parsing

class ParseFailure(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """The CLI's parser, raising instead of exiting (sub-parsers inherit the class)."""

    def error(self, message):
        raise ParseFailure(message)

    def exit(self, status=0, message=None):
        raise ParseFailure(f"exit {status}: {message}")


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` through the argparse configuration `jprefs` builds for its command (cli.main)."""
    name = argv[0]
    if name not in _available():
        raise ParseFailure(f"unknown command {name!r}")
    module = importlib.import_module(COMMANDS[name][0])
    parser = _Parser(prog=f"jprefs {name}", description=COMMANDS[name][1])
    module.configure(parser)
    return parser.parse_args(argv[1:])


def _config_cls(name: str):
    mod, cls = CONFIGS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def _is_placeholder(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_-]*(\.yaml|/config\.yaml)?|OUT/config\.yaml", s))


def check_command(cmd: str, kind: str) -> list[str]:
    """Problems with one command (empty: fine)."""
    problems = []
    argv0 = argv_of(cmd)
    if not argv0 or argv0 in (["--help"], ["-h"], ["--version"]):  # `jprefs`, `jprefs --help`
        return []
    if any(cmd.startswith(k) for k in NOT_BUILT):
        return []
    for argv in variants(argv0):
        try:
            ns = parse(argv)
        except ParseFailure as e:
            if str(e) == "exit 0: None":  # --help, --version
                continue
            # an inline mention may leave out the positionals; it may not misname anything
            if not (kind == "inline" and str(e).startswith("the following arguments are required")):
                problems.append(f"does not parse: {e}")
            continue
        name = argv[0]
        positional = ([getattr(ns, "recipe", None) or ""] + list(getattr(ns, "overrides", None) or [])
                      + list(getattr(ns, "args", None) or []))
        recipe = next((a for a in positional if a.endswith(".yaml")), None)
        overrides = [a for a in positional if "=" in a]
        if name in CONFIGS:
            keys = {f.name for f in fields(_config_cls(name))}
            bad = [o.split("=", 1)[0] for o in overrides if o.split("=", 1)[0] not in keys]
            if bad:
                problems.append(f"unknown config keys {bad}")
            if recipe and not _is_placeholder(recipe) and not bad:
                from jprefs.config import load_config, parse_overrides

                concrete = [o for o in overrides if not _is_placeholder(o.split("=", 1)[1])]
                try:
                    load_config(_config_cls(name), REPO / recipe, parse_overrides(concrete))
                except Exception as e:  # noqa: BLE001 - reported
                    problems.append(f"recipe {recipe} does not load: {type(e).__name__}: {e}")
        for tok in argv[1:]:
            for value in [tok] + ([tok.split("=", 1)[1]] if "=" in tok else []):
                if value.startswith("/work/"):
                    problems.append(f"names a path of one machine: {value}")
                if value.startswith(REPO_DIRS):
                    if value.startswith("../shared/") and not SHARED_DATA.exists():
                        continue
                    if not list(REPO.glob(value)) and not (REPO / value).exists():
                        problems.append(f"names {value}, which does not exist (from the repository root)")
    return problems


@pytest.mark.parametrize("where,cmd,kind", all_commands(), ids=lambda x: x if isinstance(x, str) else None)
def test_every_documented_command_exists(where, cmd, kind):
    if not _is_jprefs(cmd) and not cmd.startswith(("accelerate ", "torchrun ")):
        assert any(cmd.startswith(k) for k in OTHER), f"{where}: `{cmd}` is neither a jprefs command nor in OTHER"
        return
    problems = check_command(cmd, kind)
    assert not problems, f"{where}: `{cmd}`:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------- running the cheap ones

def _workspace(root: Path) -> Path:
    """A folder laid out like the repository root (recipe folders, ../shared) holding the user
    files the examples name, made from the bundled samples."""
    from jprefs.data.io import write_jsonl
    from jprefs.data.schema import Message, PreferencePair

    ws = root / "repo"
    ws.mkdir()
    for d in ("translate", "classifiers", "rl", "eval", "jprefs"):
        (ws / d).symlink_to(REPO / d)
    if SHARED_DATA.exists():
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(SHARED_DATA)
    samples = REPO / "jprefs" / "resources" / "samples"
    hh = (samples / "hh-rlhf.jsonl").read_bytes()
    for name in ("harmless-base-test.jsonl.gz", "hh.jsonl.gz"):
        (ws / name).write_bytes(gzip.compress(hh))
    shutil.copy(samples / "ranklist.tsv", ws / "ranks.tsv")
    rows = [json.loads(line) for line in (samples / "ja-pairs.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    import csv

    with open(ws / "mine.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["question", "good", "bad"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    gptj = [json.loads(line) for line in (samples / "gptj-pairwise.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    (ws / "dump.json").write_text(json.dumps({"data": gptj}, ensure_ascii=False), encoding="utf-8")
    judged = [{"question_id": i, "model_1": "a", "model_2": "b", "question": r["prompt"], "answer_1": r["chosen"],
               "answer_2": r["rejected"], "g1_winner": "model_1", "g2_winner": "model_1"} for i, r in enumerate(gptj)]
    (ws / "judgments.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged),
                                        encoding="utf-8")
    graded = [{"id": f"q{i}", "prompt": r["prompt"], "responses": [r["chosen"], r["rejected"], r["chosen"] + "。" * 9, "短い"],
               "scores": [9, 2, 5, 8]} for i, r in enumerate(gptj)]       # single-answer grades (rm-pairs --scores)
    for name, (tail, grade) in {"model-a.json": ("", "9"), "model-b.json": ("。" * 9, "5"),
                                "model-c.json": (None, "2")}.items():    # shaberi's layout: one file per model
        (ws / name).write_text("".join(json.dumps({"Question": r["prompt"], "ModelAnswer": "短い" if tail is None else
                                                   r["chosen"] + tail, "score": grade}, ensure_ascii=False) + "\n"
                                       for r in gptj), encoding="utf-8")
    (ws / "graded.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in graded), encoding="utf-8")
    fc = ws / "FastChat" / "fastchat" / "llm_judge" / "data" / "japanese_mt_bench"   # a FastChat llm_judge folder
    (fc / "model_answer").mkdir(parents=True)
    (fc / "model_judgment").mkdir()
    prompts = [r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][-1]["content"] for r in gptj]
    (fc / "question.jsonl").write_text("".join(json.dumps({"question_id": i, "turns": [q]}, ensure_ascii=False) + "\n"
                                               for i, q in enumerate(prompts)), encoding="utf-8")
    judgments = []
    for m, side in (("a", "chosen"), ("b", "rejected")):
        (fc / "model_answer" / f"{m}.jsonl").write_text("".join(json.dumps(
            {"question_id": i, "model_id": m, "choices": [{"index": 0, "turns": [r[side]]}]}, ensure_ascii=False) + "\n"
            for i, r in enumerate(gptj)), encoding="utf-8")
        judgments += [{"question_id": i, "model": m, "score": 8 if m == "a" else 3, "turn": 1} for i in range(len(gptj))]
    (fc / "model_judgment" / "gpt-4_single.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in judgments), encoding="utf-8")
    (fc / "model_judgment" / "gpt-4_pair.jsonl").write_text("".join(json.dumps(
        {"question_id": i, "model_1": "a", "model_2": "b", "g1_winner": "model_1", "g2_winner": "model_1", "turn": 1})
        + "\n" for i in range(len(gptj))), encoding="utf-8")
    pairs = [PreferencePair.create([Message("user", f"Question number {i}?")], f"A helpful answer {i}.",
                                   f"No {i}.", source="test", source_id=str(i), license="mit") for i in range(8)]
    for name in ("pairs.jsonl", "a.jsonl"):
        write_jsonl(ws / name, pairs)
    write_jsonl(ws / "b.jsonl", pairs[4:])
    return ws


def _plan(cmd: str):
    for pat, reason in SKIP.items():
        if re.search(pat, cmd) or re.search(pat, "jprefs " + " ".join(argv_of(cmd))):
            return "skip", reason
    for pat, (rc, line) in EXPECT.items():
        if re.search(pat, cmd):
            return "expect", (rc, line)
    return "run", (0, None)


def _model_cached(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "config.json"), str)


def _check_the_checks(capsys):
    """The extraction sees the documents' commands (not silently none); the checks fail on the kind
    of mistake the docs had (a recipe that does not exist, an unknown option or key, one machine's
    path); `jprefs --help` works through the installed entry point, and so does each command's."""
    cmds = {c for _, c, _ in all_commands()}
    assert "jprefs data demo -o jprefs-demo" in cmds
    assert "jprefs translate translate/recipes/mini-cpu.yaml input=pairs.jsonl output=out/mini" in cmds
    assert "accelerate launch --multi_gpu --num_processes 4 -m jprefs.cli rl rl/recipes/ppo-hh-gpu.yaml -o runs/ppo-hh" in cmds
    assert any(c.startswith("jprefs train-rm classifiers/recipes/") for c in cmds)
    assert any(w == "jprefs --help" for w, _, _ in all_commands())
    assert len(cmds) > 60
    assert check_command("jprefs train-rm classifiers/recipes/e5-small-pairwise.yaml -o rm/", "block")
    assert check_command("jprefs data convert x.jsonl --source jsonl --mapping a=b -o y.jsonl", "block")
    assert check_command("jprefs rl rl/recipes/ppo-tiny-cpu.yaml -o r reward_sing=-1", "block")
    assert check_command("jprefs score out/rm /work/shared/data/chabsa_binary/test.tsv -o s.jsonl", "block")
    assert check_command("jprefs data shuffle pairs.jsonl", "inline")
    assert not check_command("jprefs score --dtype bf16", "inline")   # a fragment: fine inline ...
    assert check_command("jprefs score --dtype bf16", "block")        # ... not as a command to copy

    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "jprefs.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "examples:" in out.stdout
    for name in _available():
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
        assert "examples:" in capsys.readouterr().out, name


def test_cheap_offline_commands_run(tmp_path, monkeypatch, capsys):
    _check_the_checks(capsys)
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    ran, skipped, failed = [], [], []
    seen = set()
    for where, cmd, kind in all_commands():
        if kind == "inline" or not (_is_jprefs(cmd) or cmd.startswith("accelerate ")) or cmd in seen:
            continue
        seen.add(cmd)
        what, detail = _plan(cmd)
        if what == "skip":
            skipped.append((cmd, detail))
            continue
        if what == "expect" and "mini-cpu" in cmd and _model_cached("Qwen/Qwen2.5-0.5B-Instruct"):
            skipped.append((cmd, "the model is cached: a real CPU translation run (minutes)"))
            continue
        rc_want, line = detail
        for argv in variants(argv_of(cmd)):
            capsys.readouterr()
            rc = main(argv)
            err = capsys.readouterr().err
            last = err.strip().splitlines()[-1] if err.strip() else ""
            if rc != rc_want or (line is not None and last != line):
                failed.append(f"{where}: `{' '.join(argv)}` exit {rc} (want {rc_want}): {last}")
            ran.append(" ".join(argv))
    assert not failed, "\n".join(failed)
    assert "data demo -o jprefs-demo" in ran and any(r.startswith("data convert mine.csv") for r in ran)
    assert len(ran) >= 15, ran
    print("ran:\n" + "\n".join(f"  jprefs {r}" for r in ran))
    print("skipped:\n" + "\n".join(f"  {c}  ({r})" for c, r in skipped))
