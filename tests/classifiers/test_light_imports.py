"""The classifiers CLI modules and the library's light parts import no heavy dependency."""

import subprocess
import sys


def test_cli_modules_do_not_import_torch():
    code = ("import sys, jprefs, jprefs.classifiers.cli, jprefs.classifiers.score_cli, jprefs.classifiers.config, "
            "jprefs.classifiers.reward_model, jprefs.classifiers.train, jprefs.classifiers.data; "
            "from jprefs.cli import main; main(['train-rm', '--help']) if False else None; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'trl', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_rm_help_lists_config_keys():
    out = subprocess.run([sys.executable, "-m", "jprefs.cli", "train-rm", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train_layers" in out.stdout and "jprefs train-rm --data" in out.stdout
