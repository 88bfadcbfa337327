"""The translate output folder as a trl user loads it: every config of its card through
``datasets.load_dataset(DIR, config)``, then trl's own trainers on the trl configs.

The folder's canonical ``pairs`` config keeps the prompt as a message list and the answers as
strings, which no trl trainer accepts as is (``TypeError: can only concatenate list (not "str")
to list``). So the folder carries trl's four layouts beside it; these tests check that each
loads with the types trl expects, holds the same rows as ``jprefs data export`` would write,
and that RewardTrainer, DPOTrainer and KTOTrainer tokenise exactly prompt + answer (the chat
template's rendering for the conversational layouts) and train two steps.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from jprefs.data.export import TRL_FORMATS, export_rows
from jprefs.data.io import load_pairs, write_jsonl
from jprefs.data.schema import Message, PreferencePair
from jprefs.translate.pipeline import run_translate
from tests.translate.test_pipeline_openai import cfg_for

trl = pytest.importorskip("trl", reason="trl is not installed: pip install -e '.[dev]' (trl>=1.16)")
torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.timeout(180)

SOURCE = [
    PreferencePair.create("What is the capital of Japan?", "Tokyo is the capital.", "Osaka, I think.",
                          source="hh-rlhf", source_id="0", license="mit"),
    PreferencePair.create([Message("user", "Do you like cats?"), Message("assistant", "Yes, very much."),
                           Message("user", "And dogs?")], "Dogs too, they are loyal.", "No.",
                          source="hh-rlhf", source_id="1", license="mit"),
    PreferencePair.create("Name a season.", "Spring, when cherry trees bloom.", "Hot.",
                          source="hh-rlhf", source_id="2", license="mit"),
    PreferencePair.create("How are you?", "Fine, thank you for asking.", "Go away.",
                          source="hh-rlhf", source_id="3", license="mit"),
]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def translated(server, tmp_path):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, SOURCE)
    out = tmp_path / "ja"
    s = run_translate(cfg_for(server, src, out))
    assert s["pairs_out"] == len(SOURCE), s
    return out


def load(out, config, tmp_path):
    return datasets.load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / "hf"))


def common_args(tmp_path):
    return dict(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
                report_to="none", save_strategy="no", logging_steps=1, use_cpu=True, dataloader_num_workers=0,
                seed=0, disable_tqdm=True)


def trained(trainer):
    trainer.train()
    assert trainer.state.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_every_card_config_loads_with_the_types_trl_expects(translated, tmp_path):
    front = yaml.safe_load((translated / "README.md").read_text(encoding="utf-8").split("---")[1])
    configs = {c["config_name"]: c["data_files"] for c in front["configs"]}
    assert configs == {"pairs": "pairs.jsonl", "binary": "binary.jsonl", **{f: f"{f}.jsonl" for f in TRL_FORMATS}}
    pairs = load_pairs(translated / "pairs.jsonl")
    summary_rows = {}
    for name in configs:
        ds = load(translated, name, tmp_path)
        summary_rows[name] = len(ds)
        if name in TRL_FORMATS:
            # the same rows, in the same order, as `jprefs data export --format NAME` writes
            assert ds.to_list() == export_rows(pairs, name)
    assert summary_rows["pairs"] == len(SOURCE) and summary_rows["binary"] == 2 * len(SOURCE)
    assert summary_rows["trl"] == summary_rows["trl-conversational"] == len(SOURCE)
    assert summary_rows["trl-unpaired"] == summary_rows["trl-unpaired-conversational"] == 2 * len(SOURCE)
    std, conv = load(translated, "trl", tmp_path), load(translated, "trl-conversational", tmp_path)
    assert all(isinstance(r["prompt"], str) and isinstance(r["chosen"], str) for r in std)
    assert all(r["prompt"].endswith("アシスタント:\n") and r["prompt"].startswith("ユーザー: ") for r in std)
    assert all(isinstance(r["prompt"], list) and r["chosen"][0]["role"] == "assistant" for r in conv)
    assert load(translated, "trl-unpaired", tmp_path).features["label"].dtype == "bool"
    # the card lists every file with its row count
    card = (translated / "README.md").read_text(encoding="utf-8")
    for f in TRL_FORMATS:
        assert f"| `{f}.jsonl` | {summary_rows[f]} |" in card


def tokenizer_and_model(path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    return tok, AutoModelForCausalLM.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1)


def chat_split(tok, prompt, answer):
    """The chat template's rendering of prompt (with the generation cue) and what the answer adds."""
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    assert full.startswith(head)
    return head, full[len(head):]


def test_trl_trainers_train_on_the_translate_folder(translated, tiny_lm, tmp_path):
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, RewardConfig, RewardTrainer

    tok, lm, clf = tokenizer_and_model(tiny_lm)
    clf.config.pad_token_id = tok.pad_token_id
    eos = tok.eos_token

    # RewardTrainer on the standard layout: the text is prompt (ending in the cue) + bare answer + EOS
    ds = load(translated, "trl", tmp_path)
    trainer = RewardTrainer(model=clf, args=RewardConfig(**common_args(tmp_path)), train_dataset=ds,
                            processing_class=tok)
    for row, p in zip(ds, trainer.train_dataset):
        assert tok.decode(p["chosen_ids"]) == row["prompt"] + row["chosen"] + eos
        assert tok.decode(p["rejected_ids"]) == row["prompt"] + row["rejected"] + eos
    trained(trainer)

    # DPOTrainer on the conversational layout (the canonical config fails here with a TypeError)
    ds = load(translated, "trl-conversational", tmp_path)
    trainer = DPOTrainer(model=lm, ref_model=copy.deepcopy(lm), train_dataset=ds, processing_class=tok,
                         args=DPOConfig(**common_args(tmp_path), max_length=4096))
    for row, p in zip(ds, trainer.train_dataset):
        head, chosen = chat_split(tok, row["prompt"], row["chosen"][0]["content"])
        assert tok.decode(p["prompt_ids"]) == head
        assert tok.decode(p["chosen_ids"]).rstrip("\n") == chosen.rstrip("\n")
        assert tok.decode(p["chosen_ids"]).startswith(row["chosen"][0]["content"] + eos)
    trained(trainer)

    # KTOTrainer on the standard unpaired layout: label true for chosen, false for rejected
    ds = load(translated, "trl-unpaired", tmp_path)
    trainer = KTOTrainer(model=lm, ref_model=copy.deepcopy(lm), train_dataset=ds, processing_class=tok,
                         args=KTOConfig(**common_args(tmp_path), max_length=4096))
    pairs = load_pairs(translated / "pairs.jsonl")
    for i, p in enumerate(trainer.train_dataset):
        pair = pairs[i // 2]
        assert p["label"] is (i % 2 == 0)
        assert tok.decode(p["prompt_ids"]).endswith("アシスタント:\n")
        assert tok.decode(p["completion_ids"]) == (pair.chosen if i % 2 == 0 else pair.rejected) + eos
    trained(trainer)
