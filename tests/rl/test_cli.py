"""The tiny recipes end to end through the real CLI (with even smaller overrides), and
the command's user-facing behaviour: light import, --list-keys, config errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jprefs.cli import main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["tiny_n_embd=32", "tiny_n_layer=1", "tiny_n_head=2", "tiny_vocab_size=400", "sft_steps=15",
         "max_new_tokens=8", "eval_every=2", "eval_samples=1"]


def _check_common(out: Path):
    assert (out / "config.yaml").read_text(encoding="utf-8").startswith("algo:")
    assert (out / "policy" / "model.safetensors").stat().st_size > 0
    assert (out / "policy" / "tokenizer.json").exists()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert metrics and samples and summary
    assert (out / "sft_metrics.jsonl").exists()
    return metrics, samples, summary


@pytest.mark.slow
def test_ppo_tiny_recipe_end_to_end(tmp_path):
    out = tmp_path / "ppo"
    rc = main(["rl", str(REPO / "rl/recipes/ppo-tiny-cpu.yaml"), "-o", str(out), *SMALL,
               "total_steps=3", "batch_size=8", "minibatch_size=4", "ppo_epochs=2"])
    assert rc == 0
    metrics, samples, summary = _check_common(out)
    steps = [m for m in metrics if "objective/score" in m]
    assert len(steps) == 3
    for key in ("objective/kl", "objective/kl_coef", "policy/entropy",
                "policy/clip_frac", "losses/policy", "losses/value", "time/samples_per_s"):
        assert key in steps[-1], key
    assert (out / "value_head.safetensors").exists() and (out / "value_head.json").exists()
    assert {s["step"] for s in samples} == {0, 2, 3}
    assert summary["algo"] == "ppo"

    # the saved policy loads back as a Hugging Face causal LM and generates
    from jprefs.rl.policies import load_policy
    from jprefs.rl.sampling import sample

    model, tok = load_policy(str(out / "policy"), device=None)
    assert isinstance(sample(model, tok, ["今日は"], max_new_tokens=4, seed=0).texts[0], str)


@pytest.mark.slow
def test_ilql_tiny_recipe_end_to_end(tmp_path):
    out = tmp_path / "ilql"
    rc = main(["rl", str(REPO / "rl/recipes/ilql-tiny-cpu.yaml"), "-o", str(out), *SMALL,
               "total_steps=4", "batch_size=8", "beta_gen_sweep=0,2"])
    assert rc == 0
    metrics, samples, summary = _check_common(out)
    assert len(metrics) == 4 and "losses/q" in metrics[-1] and "values/awac_weight" in metrics[-1]
    assert (out / "ilql_heads.safetensors").exists()
    assert set(summary["beta_gen_sweep"]) == {"0.0", "2.0"}
    assert all("reward" in v and "distinct2" in v for v in summary["beta_gen_sweep"].values())
    assert any(s.get("kind") == "beta_gen_sweep" for s in samples)
    from safetensors.torch import load_file

    keys = load_file(str(out / "ilql_heads.safetensors"))
    assert any(k.startswith("v_head") for k in keys) and any(k.startswith("target_q_heads.1") for k in keys)


def test_sft_recipe_end_to_end(tmp_path):
    out = tmp_path / "sft"
    assert main(["rl", str(REPO / "rl/recipes/sft-tiny-cpu.yaml"), "-o", str(out), *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["final_loss"] < summary["first_loss"]
    assert (out / "policy" / "model.safetensors").exists() and (out / "curves.png").exists()


def test_cli_is_light_and_lists_keys():
    code = "import sys, jprefs.rl.cli, jprefs.rl.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    r = subprocess.run([sys.executable, "-m", "jprefs.cli", "rl", "--list-keys"], capture_output=True, text=True)
    assert r.returncode == 0 and "beta_gen" in r.stdout and "init_kl_coef" in r.stdout


def test_cli_config_errors(tmp_path, capsys):
    assert main(["rl", str(REPO / "rl/recipes/ppo-tiny-cpu.yaml"), "-o", str(tmp_path), "init_kl_cof=0.1"]) == 2
    assert "Did you mean 'init_kl_coef'" in capsys.readouterr().err
    assert main(["rl", str(REPO / "rl/recipes/ppo-tiny-cpu.yaml"), "-o", str(tmp_path), "reward_type=labels"]) == 2
    assert "cannot use reward_type='labels'" in capsys.readouterr().err
    assert main(["rl", str(REPO / "rl/recipes/ppo-tiny-cpu.yaml")]) == 2
    assert "-o DIR" in capsys.readouterr().err
