"""The rl package's layers: every module imports, no import circle among jprefs.rl modules (imports
inside functions count too), no algorithm imports the runner, and common.py is gone."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import jprefs

RL = Path(jprefs.__file__).parent / "rl"
ALGORITHMS = ("sft", "ilql", "ppo", "prepare", "trl_algos")


def _imports(path: Path) -> set[str]:
    """jprefs modules ``path`` imports anywhere (module level or inside functions)."""
    out = set()
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("jprefs"):
            out.add(n.module)
            for a in n.names:                       # `from jprefs.rl import ilql`
                out.add(f"{n.module}.{a.name}")
        elif isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name.startswith("jprefs")}
    return out


def _graph() -> dict[str, set[str]]:
    mods = {f"jprefs.rl.{p.stem}": p for p in RL.glob("*.py") if p.stem != "__init__"}
    return {m: {x for x in _imports(p) if x in mods and x != m} for m, p in mods.items()}


def test_every_rl_module_imports_and_common_is_gone():
    assert not (RL / "common.py").exists()
    for p in sorted(RL.glob("*.py")):
        importlib.import_module(f"jprefs.rl.{p.stem}" if p.stem != "__init__" else "jprefs.rl")
    importlib.import_module("jprefs.eval.textmetrics")


def test_no_import_circle_and_the_runner_sits_on_top():
    g = _graph()
    for algo in ALGORITHMS:
        assert "jprefs.rl.runner" not in g[f"jprefs.rl.{algo}"], algo
    assert {"jprefs.rl.ilql", "jprefs.rl.ppo", "jprefs.rl.prepare"} <= g["jprefs.rl.runner"]
    # depth-first search for a cycle
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for x in sorted(g[m]):
            if state.get(x) == 1:
                raise AssertionError("import circle: " + " -> ".join(path + [m, x]))
            if x not in state:
                visit(x, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from jprefs.rl.runner import run\n", encoding="utf-8")
    assert "jprefs.rl.runner" in _imports(p)


def test_rl_uses_the_eval_text_metrics():
    from jprefs.eval import textmetrics

    assert "jprefs.eval.textmetrics" in _imports(RL / "ppo.py")
    assert textmetrics.distinct_n(["abab"], 2) == 2 / 3        # ab ba ab
