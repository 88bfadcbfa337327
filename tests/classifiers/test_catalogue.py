"""The reward-model catalogue: every entry validated, and each supported entry scored on a tiny model
built from the entry's architecture config (the real weights cannot be downloaded here), loaded through
the real ``RewardModel.from_pretrained`` with ``catalogue_id=`` pointing the local folder at its entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from jprefs.classifiers.catalogue import load_catalogue, lookup
from jprefs.errors import ConfigError

from .conftest import make_tokenizer

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

Q, A = "日本の首都は?", "東京です。"
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}[CLS]{% else %}[SEP]{% endif %}"
                 "{{ m['content'] }}{% endfor %}")


# ------------------------------------------------------------------ the catalogue itself


def test_every_shipped_entry_validates_and_ids_are_unique():
    entries = load_catalogue()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids)) >= 7
    for hub_id in ("ryota39/bge-m3-preference-classifier", "ryota39/retriva-bert-preference-classifier",
                   "cyberagent/ca-reward-3b-ja", "OpenAssistant/reward-model-deberta-v3-large-v2"):
        assert hub_id in ids
    for e in entries:
        assert e.source and e.card_url.startswith("https://huggingface.co/" + e.id)
        assert 0 <= e.chosen_index < e.num_labels
        assert e.supported or e.reason


def test_lookup_is_exact_and_case_sensitive():
    e = lookup("OpenAssistant/reward-model-deberta-v3-large-v2")
    assert (e.input, e.num_labels, e.chosen_index, e.revision) == ("pair", 1, 0, "refs/pr/3")
    assert lookup("openassistant/reward-model-deberta-v3-large-v2") is None
    assert lookup("nobody/nothing") is None


GOOD = dict(id="a/b", supported=True, architecture="BertForSequenceClassification", model_type="bert",
            objective="classifier", num_labels=2, chosen_label={"index": 1, "name": "good"}, input="pair",
            template=None, max_length=None, revision=None, licence="mit", trained_on=["x"], languages=["ja"],
            card_url="https://huggingface.co/a/b", notes="n", source={"input": "card"})


@pytest.mark.parametrize("change, words", [
    ({"chosen_label": {"index": 2, "name": "x"}}, "chosen_label.index must be an integer in 0..1"),
    ({"objective": "pairwise"}, "does not fit num_labels 2"),
    ({"input": "text"}, "input must be one of"),
    ({"input": "response", "template": None}, "needs a `template`"),
    ({"supported": False}, "needs a `reason`"),
    ({"source": {}}, "source must map"),
    ({"id": "no-owner"}, "Hub id 'owner/name'"),
    ({"colour": "red"}, "unknown field(s) ['colour']"),
])
def test_a_bad_entry_is_one_clear_error_naming_entry_and_field(tmp_path, change, words):
    import yaml

    p = tmp_path / "cat.yaml"
    p.write_text(yaml.safe_dump([GOOD, {**GOOD, "id": "c/d", **change}]), encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_catalogue(p)
    msg = str(ei.value)
    assert str(p) in msg and words in msg and ("'c/d'" in msg or "no-owner" in msg)
    p.write_text(yaml.safe_dump([GOOD, GOOD]), encoding="utf-8")
    with pytest.raises(ConfigError, match="appears twice"):
        load_catalogue(p)


# ------------------------------------------------------------------ tiny models from the entries' configs


def _tiny(entry, path):
    """Save a 2-layer, hidden-32 model of the entry's architecture with its label layout, and a tokenizer."""
    import transformers as tf

    torch.manual_seed(0)
    tok = make_tokenizer(model_max_length=64)
    labels = {"id2label": {i: f"LABEL_{i}" for i in range(entry.num_labels)}, "num_labels": entry.num_labels}
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, pad_token_id=tok.pad_token_id, **labels)
    if entry.model_type == "xlm-roberta":
        cfg = tf.XLMRobertaConfig(max_position_embeddings=66, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0, **common)
    elif entry.model_type == "deberta-v2":
        cfg = tf.DebertaV2Config(max_position_embeddings=64, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0, **common)
    elif entry.model_type == "llama":
        cfg = tf.LlamaConfig(num_key_value_heads=2, max_position_embeddings=64, **common)
        tok.chat_template = CHAT_TEMPLATE
    else:  # pragma: no cover - a new supported entry needs its tiny config here
        raise AssertionError(f"no tiny config for model_type {entry.model_type!r}")
    model = getattr(tf, entry.architecture)(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok


SUPPORTED = [e for e in load_catalogue() if e.supported]


@pytest.mark.parametrize("entry", SUPPORTED, ids=[e.id for e in SUPPORTED])
def test_entry_scores_a_tiny_model_the_way_its_card_does(tmp_path, entry):
    from jprefs.classifiers.reward_model import RewardModel

    model, tok = _tiny(entry, tmp_path / "m")
    rm = RewardModel.from_pretrained(tmp_path / "m", device="cpu", catalogue_id=entry.id)
    assert type(rm.model).__name__ == entry.architecture
    assert (rm.config.input, rm.config.chosen_index) == (entry.input, entry.chosen_index)
    got = rm.score([Q], [A])[0]
    # the reference is what the card's own snippet computes
    with torch.inference_mode():
        if entry.input == "pair":                      # OpenAssistant: tokenizer(question, answer), logits[0]
            enc = tok(Q, A, return_tensors="pt")
        elif entry.input == "response":                # one text: the response alone
            enc = tok(A, return_tensors="pt")
        else:                                          # chat template over the conversation, no extra specials
            text = tok.apply_chat_template([{"role": "user", "content": Q}, {"role": "assistant", "content": A}],
                                           tokenize=False)
            assert text == "[CLS]" + Q + "[SEP]" + A      # the template string itself
            enc = tok(text, add_special_tokens=False, return_tensors="pt")
        logits = model(**enc).logits[0].float()
    want = logits[0] if entry.num_labels == 1 else logits[entry.chosen_index] - torch.logsumexp(
        torch.cat([logits[:entry.chosen_index], logits[entry.chosen_index + 1:]]), 0)
    assert got == pytest.approx(float(want), abs=1e-5)
    # the input layout: the ids RewardModel feeds are the ones the reference fed
    assert rm.encode([Q], [A]).input_ids[0] == enc["input_ids"][0].tolist()
    ids = rm.encode([Q], [A]).input_ids[0]
    cls_, sep = tok.cls_token_id, tok.sep_token_id
    if entry.input == "pair":       # [CLS] prompt [SEP] response [SEP], the response in segment 1
        assert ids.count(sep) == 2 and ids[0] == cls_ and ids.index(sep) == 1 + len(Q)
        types = rm.encode([Q], [A]).token_type_ids
        assert types is None or types[0] == [0] * (len(Q) + 2) + [1] * (len(A) + 1)
    elif entry.input == "response":  # the prompt is dropped
        assert ids == [cls_, *tok.convert_tokens_to_ids(list(A)), sep]
        assert rm.score(["全く別の質問"], [A])[0] == pytest.approx(got, abs=1e-6)
    else:
        assert ids == [cls_, *tok.convert_tokens_to_ids(list(Q)), sep, *tok.convert_tokens_to_ids(list(A))]
    # batching with padding changes nothing (a decoder classifier needs its pad id for that)
    two = rm.score([Q, "猫は好き?"], [A, "はい、好きです。とても。"])
    assert two[0] == pytest.approx(got, abs=1e-5)


@pytest.mark.parametrize("entry", SUPPORTED, ids=[e.id for e in SUPPORTED])
def test_entry_reads_the_chosen_logit_hand_computed(tmp_path, entry):
    """Head weights zeroed and biases set: the logits are constants and the reward is known by hand."""
    from jprefs.classifiers.reward_model import RewardModel

    model, _ = _tiny(entry, tmp_path / "m")
    bias = torch.tensor([0.25, 1.5, -0.5][:entry.num_labels])
    head = getattr(model, "classifier", None) or getattr(model, "score")
    lin = getattr(head, "out_proj", head)              # XLM-R: dense -> tanh -> out_proj
    with torch.no_grad():
        lin.weight.zero_()
        if lin.bias is None:                           # Llama's score head has no bias: the reward is 0
            bias = torch.zeros(entry.num_labels)
        else:
            lin.bias.copy_(bias)
    model.save_pretrained(tmp_path / "m")
    rm = RewardModel.from_pretrained(tmp_path / "m", device="cpu", catalogue_id=entry.id)
    # one logit: the reward is that logit; two: chosen minus the other (1.5 - 0.25 = 1.25 for index 1)
    want = float(bias[0]) if entry.num_labels == 1 else float(bias[entry.chosen_index] - bias[1 - entry.chosen_index])
    assert rm.score([Q, "猫は好き?"], [A, "はい"]).tolist() == pytest.approx([want, want], abs=1e-6)


def test_explicit_label_and_input_win_with_one_warning(tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    entry = lookup("ryota39/bge-m3-preference-classifier")
    _tiny(entry, tmp_path / "m")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rm = RewardModel.from_pretrained(tmp_path / "m", device="cpu", catalogue_id=entry.id, label=0,
                                         input="pair")
    ours = [x for x in w if "catalogue entry" in str(x.message)]
    assert len(ours) == 1
    assert "label=0" in str(ours[0].message) and "input='pair'" in str(ours[0].message)
    assert (rm.config.chosen_index, rm.config.input) == (0, "pair")
    with warnings.catch_warnings(record=True) as w:      # agreeing arguments: no warning
        warnings.simplefilter("always")
        RewardModel.from_pretrained(tmp_path / "m", device="cpu", catalogue_id=entry.id, label=1, input="response")
    assert not [x for x in w if "catalogue entry" in str(x.message)]


def test_unsupported_entry_and_unknown_catalogue_id_are_clear_errors(tmp_path):
    from jprefs.classifiers.reward_model import RewardModel

    _tiny(lookup("ryota39/bge-m3-preference-classifier"), tmp_path / "m")
    with pytest.raises(ConfigError, match="not scorable by RewardModel: custom code"):
        RewardModel.from_pretrained(tmp_path / "m", device="cpu",
                                    catalogue_id="ryota39/retriva-bert-preference-classifier")
    with pytest.raises(ConfigError, match="not in the jprefs reward-model catalogue"):
        RewardModel.from_pretrained(tmp_path / "m", device="cpu", catalogue_id="Nobody/nothing")


# ------------------------------------------------------------------ offline pull


OFFLINE = textwrap.dedent("""
    import json, sys
    from jprefs.classifiers.reward_model import RewardModel, _read_reward_config
    from jprefs.hub import ModelNotCachedError
    out = {}
    try:
        RewardModel.from_pretrained("nobody/not-cached", device="cpu", revision="v1.0")
    except ModelNotCachedError as e:
        out["miss"] = str(e)
    try:
        _read_reward_config("nobody/not-cached")
    except ModelNotCachedError as e:
        out["config_miss"] = str(e)
    out["cached_without_config"] = _read_reward_config("owner/cached")
    print(json.dumps(out))
""")


def test_offline_miss_names_repo_revision_and_the_download_command(tmp_path):
    # a cached repo without jprefs_reward.json: a snapshot with config.json only
    repo = tmp_path / "hub" / "models--owner--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text("{}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", OFFLINE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "'nobody/not-cached' (revision v1.0)" in out["miss"]
    assert "`hf download nobody/not-cached --revision v1.0`" in out["miss"]
    assert "'nobody/not-cached'" in out["config_miss"] and "hf download nobody/not-cached" in out["config_miss"]
    assert out["cached_without_config"] is None


# ------------------------------------------------------------------ jprefs rm list


def test_rm_list_prints_the_catalogue_table_and_json(capsys):
    from jprefs.cli import main

    assert main(["rm", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "chosen", "label", "input", "max", "length", "licence", "trained", "on"]
    rows = {line.split()[0]: line for line in out[2:] if line and not line.startswith("not supported")}
    assert set(rows) == {e.id for e in load_catalogue()}
    v2 = rows["OpenAssistant/reward-model-deberta-v3-large-v2"].split()
    assert v2[1:5] == ["logit", "0", "(one", "logit)"] and "pair" in v2 and "mit" in v2
    assert "[not supported]" in rows["ryota39/retriva-bert-preference-classifier"]
    assert any(line.startswith("not supported: ryota39/retriva-bert-preference-classifier: custom code")
               for line in out)
    assert main(["rm", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in data] == [e.id for e in load_catalogue()]
    bge = data[0]
    assert bge["chosen_label"] == {"index": 1, "name": "unknown"} and "chosen_label" in bge["source"]


def test_rm_list_imports_nothing_heavy():
    code = ("import sys, io, contextlib; from jprefs.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['rm', 'list'])\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.strip() == "[]"


def test_score_cli_input_layout_and_revision_flags(tmp_path):
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.cli import main

    _tiny(lookup("OpenAssistant/reward-model-deberta-v3-large-v2"), tmp_path / "m")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": Q, "response": A}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "s.jsonl"
    # a local folder: --revision main (the default) does not apply and is ignored (another revision is refused,
    # test_score_rows); --input-layout response drops the prompt
    assert main(["score", str(tmp_path / "m"), str(inp), "-o", str(out), "--input-layout", "response",
                 "--revision", "main", "--device", "cpu"]) == 0
    got = json.loads(out.read_text(encoding="utf-8"))["reward"]
    rm = RewardModel.from_pretrained(tmp_path / "m", device="cpu")
    assert got == pytest.approx(float(rm.score(None, [A])[0]), abs=1e-5)
    assert got != pytest.approx(float(rm.score([Q], [A])[0]), abs=1e-5)


def test_a_catalogued_id_in_another_case_is_refused_not_scored_without_its_entry():
    """The Hub resolves ids case-insensitively: CyberAgent/... loads the model catalogued as cyberagent/...,
    which then lost its chosen label and input layout (chat) and was scored as a sentence pair."""
    from jprefs.classifiers.catalogue import load_catalogue
    from jprefs.classifiers.reward_model import RewardModel
    from jprefs.errors import ConfigError

    e = next(x for x in load_catalogue() if x.supported)
    with pytest.raises(ConfigError, match="in another case"):
        RewardModel.from_pretrained(e.id.swapcase(), device="cpu")
