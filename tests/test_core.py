"""The light core: import cost, CLI start-up, config loading."""

import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from jprefs.config import load_config, parse_overrides, save_config
from jprefs.errors import ConfigError

HEAVY = ("torch", "transformers", "datasets", "trl", "vllm", "pandas", "sklearn", "matplotlib")


def test_import_jprefs_and_help_stay_light():
    code = ("import sys, jprefs, jprefs.cli, jprefs.data, jprefs.data.cli, jprefs.data.adapters\n"
            "from jprefs import PreferencePair\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by the light core: {out}"
    code = ("import sys, io, contextlib\nfrom jprefs.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_help_is_fast():
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "jprefs.cli", "--help"], capture_output=True, text=True)
        best = min(best, time.perf_counter() - t)
        assert proc.returncode == 0 and "commands:" in proc.stdout and "data" in proc.stdout
    assert best < 0.5, f"jprefs --help took {best:.2f}s"


def test_lazy_reward_model_attribute():
    import jprefs

    with pytest.raises(AttributeError):
        jprefs.NoSuchThing  # noqa: B018


@dataclass
class Cfg:
    lr: float = field(default=1e-5, metadata={"help": "learning rate"})
    epochs: int = field(default=1, metadata={"help": "epochs"})
    objective: str = field(default="binary", metadata={"help": "loss"})
    bf16: bool = field(default=False, metadata={"help": "bf16"})
    tags: list[str] = field(default_factory=list, metadata={"help": "tags"})
    eval_file: str | None = field(default=None, metadata={"help": "eval file"})


def test_config_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 3.0e-5\nepochs: 2\ntags: [a, b]\n")
    cfg = load_config(Cfg, recipe, ["epochs=4", "bf16=true", "eval_file=x.jsonl", "tags=c,d"])
    assert (cfg.lr, cfg.epochs, cfg.bf16, cfg.tags, cfg.eval_file) == (3e-5, 4, True, ["c", "d"], "x.jsonl")
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Cfg, tmp_path / "out" / "config.yaml") == cfg
    assert parse_overrides(["a=1", "b=x"]) == {"a": 1, "b": "x"}
    # a value with ": " in it is text (e5's prefix), an explicit {...} is a mapping
    assert parse_overrides(["input_prefix=query: ", "m={a: 1}"]) == {"input_prefix": "query: ", "m": {"a": 1}}


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'epoch'.*Did you mean 'epochs'"):
        load_config(Cfg, None, ["epoch=3"])
    (tmp_path / "r.yaml").write_text("lerning_rate: 1\n")
    with pytest.raises(ConfigError, match="(?s)r.yaml.*valid keys"):
        load_config(Cfg, tmp_path / "r.yaml")
    with pytest.raises(ConfigError, match="'epochs': expected an integer, got 'many'"):
        load_config(Cfg, None, ["epochs=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Cfg, None, ["epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["lr: .nan\n", "lr: .inf\n", "lr: -.inf\n", "lr: 1e999\n"])
def test_config_refuses_non_finite_numbers_in_a_recipe(tmp_path, text):
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(ConfigError, match="'lr': expected a finite number"):
        load_config(Cfg, tmp_path / "r.yaml")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_config_refuses_non_finite_numbers_on_the_command_line(value):
    with pytest.raises(ConfigError, match="'lr': expected a finite number"):
        load_config(Cfg, None, [f"lr={value}"])


@pytest.mark.parametrize("cls_path, key, bad, good", [
    ("jprefs.classifiers.config:TrainRMConfig", "warmup_ratio", 1.5, 0.5),
    ("jprefs.classifiers.config:TrainRMConfig", "weight_decay", -0.1, 0.0),
    ("jprefs.classifiers.config:TrainRMConfig", "max_grad_norm", -1, 0.0),
    ("jprefs.classifiers.config:TrainRMConfig", "lora_dropout", 1.0, 0.0),
    ("jprefs.rl.config:RLConfig", "top_p", 0.0, 0.9),
    ("jprefs.rl.config:RLConfig", "temperature", -1, 0.0),
    ("jprefs.rl.config:RLConfig", "gamma", 1.01, 1.0),
    ("jprefs.rl.config:RLConfig", "alpha", 0.0, 1.0),
    ("jprefs.rl.config:RLConfig", "adam_beta2", 1.0, 0.999),
    ("jprefs.rl.config:RLConfig", "cliprange", 0.0, 0.1),
    ("jprefs.rl.config:RLConfig", "init_kl_coef", -0.01, 0.0),
    ("jprefs.rl.config:RLConfig", "reward_sign", 0.0, -1.0),
    ("jprefs.translate.config:TranslateConfig", "top_p", 1.5, 1.0),
    ("jprefs.translate.config:TranslateConfig", "gpu_memory_utilization", 0.0, 0.5),
    ("jprefs.translate.config:TranslateConfig", "timeout", 0.0, 5.0),
    ("jprefs.translate.config:TranslateConfig", "max_length_ratio", 0.1, 3.0),   # below min_length_ratio 0.15
])
def test_stage_configs_refuse_numbers_out_of_range(cls_path, key, bad, good):
    """Each stage's numeric keys are checked against their range in validate() (one clear error naming the
    key, not a failure deep in torch or a silently meaningless run), and a value inside passes."""
    import importlib

    mod, name = cls_path.split(":")
    cls = getattr(importlib.import_module(mod), name)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(cls, None, {key: bad})
    assert getattr(load_config(cls, None, {key: good}), key) == good


@pytest.mark.parametrize("argv, message", [
    (["data", "split", "x.jsonl", "-o", "out", "--test-size", "nan"], "--test-size: expected a finite number"),
    (["data", "split", "x.jsonl", "-o", "out", "--test-size", "0"], "--test-size: must be > 0"),
    (["eval", "policy", "--policy", "p", "--prompts", "x.jsonl", "-o", "out", "--temperature", "inf"],
     "--temperature: expected a finite number"),
    (["eval", "policy", "--policy", "p", "--prompts", "x.jsonl", "-o", "out", "--tie-margin", "-1"],
     "--tie-margin: must be >= 0"),
    (["eval", "rm", "--model", "m", "--data", "x.jsonl", "-o", "out", "--length-tolerance", "nan"],
     "--length-tolerance: expected a finite number"),
    (["label", "candidates", "--model", "m", "--prompts", "x.jsonl", "-o", "out", "--top-p=-inf"],
     "--top-p: expected a finite number"),
])
def test_cli_number_options_refuse_non_finite_and_out_of_range(argv, message, capsys):
    """A number option is checked when it is parsed: argparse's usage error (exit 2) naming the option,
    before any file is read or model loaded, not a NaN carried into a run (NaN passes every range test
    that is written as ``if x < 0``)."""
    from jprefs.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"lr: 0.1\nname: \xff\xfe\n"), r"not UTF-8 text \(byte 14: invalid start byte\)"),
    (lambda p: p.mkdir(), "the recipe is a folder"),
])
def test_a_recipe_that_is_not_utf8_text_or_is_a_folder_is_one_clear_error(tmp_path, make, message):
    recipe = tmp_path / "r.yaml"
    make(recipe)
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, recipe)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"name: x\nuser: \xff {text}\n"), "not UTF-8 text"),
    (lambda p: p.mkdir(), "the template is a folder"),
])
def test_a_translation_template_that_is_not_utf8_or_is_a_folder_is_one_clear_error(tmp_path, make, message):
    from jprefs.translate.prompts import load_template

    t = tmp_path / "t.yaml"
    make(t)
    with pytest.raises(ConfigError, match=message):
        load_template(str(t))
