"""`jprefs push` without a Hub: licences derived from recorded provenance, pre-flight refusals,
staging (Parquet configs that `datasets` reads, deterministic bytes), cards, and --dry-run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from jprefs.cli import main
from jprefs.data.io import write_jsonl
from jprefs.data.schema import PreferencePair
from jprefs.publish.licenses import LicenseRefused, check, derive, normalize
from jprefs.publish.preflight import PreflightRefused, find_secrets, preflight, refuse

HF_TOKEN_LIKE = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def _pairs(n=4, source="hh-rlhf", license="mit", text=""):
    return [PreferencePair.create(f"質問 {i} {text}", f"良い答え {i}", f"悪い {i}", source=source, source_id=str(i),
                                  license=license) for i in range(n)]


def _front(card: str) -> dict:
    end = card.find("\n---\n", 3)
    return yaml.safe_load(card[4:end])


# ---------------------------------------------------------------- licences

@pytest.mark.parametrize("comps,kind,lic,name", [
    ({"a": "mit", "b": "MIT"}, "dataset", "mit", ""),
    ({"a": "mit", "b": "apache-2.0"}, "dataset", "other", "apache-2.0 AND mit"),
    ({"backbone": "mit", "data": "apache-2.0"}, "model", "other", "apache-2.0 AND mit"),
    ({"backbone": "mit", "data": "cc-by-nc-4.0"}, "model", "cc-by-nc-4.0", ""),
    ({"backbone": "mit", "data": "cc-by-sa-4.0"}, "model", "cc-by-sa-4.0", ""),
    ({"backbone": "mit", "a": "cc-by-nc-sa-4.0", "b": "cc-by-nc-4.0"}, "model", "cc-by-nc-sa-4.0", ""),
    ({"a": "cc-by-sa-4.0", "b": "cc-by-nc-4.0"}, "dataset", "other", "cc-by-nc-4.0 AND cc-by-sa-4.0"),
])
def test_derived_licences(comps, kind, lic, name):
    d = derive(comps, kind=kind)
    assert (d.license, d.license_name, d.conflicts) == (lic, name, [])


def test_a_mixed_dataset_lists_its_licences_and_a_mixed_model_names_the_conjunction():
    assert derive({"a": "mit", "b": "apache-2.0"}).metadata("dataset") == {"license": ["apache-2.0", "mit"]}
    assert derive({"a": "mit", "b": "apache-2.0"}, kind="model").metadata("model") == {
        "license": "other", "license_name": "apache-2.0-and-mit"}


@pytest.mark.parametrize("comps,kind,needle", [
    ({"a": "cc-by-sa-4.0", "b": "cc-by-nc-4.0"}, "model", "cannot take the non-commercial"),
    ({"a": "cc-by-sa-4.0", "b": "gpl-3.0"}, "model", "two share-alike"),
    ({"backbone": "mit", "data": "cc-by-nd-4.0"}, "model", "no derivatives"),
    ({"data": "cc-by-nd-4.0"}, "translation", "no derivatives"),
])
def test_conflicting_licences_are_refused_even_with_the_unknown_override(comps, kind, needle):
    d = derive(comps, kind=kind)
    assert any(needle in c for c in d.conflicts), d.conflicts
    with pytest.raises(LicenseRefused, match="conflict"):
        check(d, allow_unknown=True, what="x")


def test_no_derivatives_rows_may_be_collected_but_not_translated():
    assert derive({"data": "cc-by-nd-4.0"}, kind="dataset").conflicts == []


def test_unknown_licences_refuse_unless_allowed():
    d = derive({"data: hh-rlhf": "mit", "data: mystery": "", "data: odd": "WTFPL"})
    assert d.unknown == ["data: mystery", "data: odd"] and d.license == "unknown"
    with pytest.raises(LicenseRefused) as e:
        check(d, allow_unknown=False, what="dataset X")
    assert "mystery (none recorded)" in str(e.value) and "odd (WTFPL)" in str(e.value)
    assert "--allow-unknown-license" in str(e.value)
    check(d, allow_unknown=True, what="dataset X")          # no raise
    assert normalize("Apache 2.0") == "apache-2.0"


# ---------------------------------------------------------------- pre-flight

@pytest.mark.parametrize("text,kind", [
    (HF_TOKEN_LIKE, "Hugging Face token"),
    ("key sk-proj-" + "a1B2" * 8, "OpenAI-style API key"),
    ("sk-ant-api03-" + "x" * 30, "Anthropic API key"),
    ("AKIAIOSFODNN7EXAMPLE", "AWS access key id"),
    ("ghp_" + "a" * 36, "GitHub token"),
    ("-----BEGIN RSA PRIVATE KEY-----", "private key"),
    ("base_url: http://user:s3cretpass@10.0.0.1:8000/v1", "credentials in a URL"),
])
def test_secrets_are_found_and_masked(text, kind):
    f = find_secrets("line one\n" + text + "\n")
    assert [x.line for x in f] == [2] and f[0].detail.startswith(kind)
    assert text.split()[-1] not in f[0].detail               # the finding does not leak the secret


def test_ordinary_text_is_not_a_secret():
    assert find_secrets("東京は日本の首都です。 https://example.com/a?b=c me@example.com sk-short hf_short") == []


def test_pickles_sizes_and_the_push_token_are_refused(tmp_path):
    import pickle

    (tmp_path / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))      # a pickle under a safe name
    (tmp_path / "weights.pt").write_bytes(b"anything")
    (tmp_path / "big.json").write_text("x" * 2000)
    (tmp_path / "notes.txt").write_text("the token is tok-1234567890abcdef here")
    found = preflight(tmp_path, ["model.safetensors", "weights.pt", "big.json", "notes.txt"], max_file_bytes=1000,
                      token="tok-1234567890abcdef")
    got = {(f.path, f.kind) for f in found}
    assert got == {("model.safetensors", "pickle"), ("weights.pt", "pickle"), ("big.json", "size"),
                   ("notes.txt", "secret")}
    with pytest.raises(PreflightRefused) as e:
        refuse(found, "model X", allow_secrets=True)         # the push token is never allowed
    assert "notes.txt:1" in str(e.value) and "tok-1234567890abcdef" not in str(e.value)


# ---------------------------------------------------------------- datasets

def _split_folder(tmp_path, **kw):
    d = tmp_path / "split"
    d.mkdir()
    write_jsonl(d / "train.jsonl", _pairs(5, **kw))
    write_jsonl(d / "test.jsonl", [PreferencePair.create(f"テスト {i}", "はい", "いいえ", source="hh-rlhf",
                                                         license="mit") for i in range(3)])
    return d


def test_a_staged_split_folder_loads_with_datasets_config_by_config(tmp_path):
    from datasets import get_dataset_config_names, load_dataset

    from jprefs.publish.dataset import find_source, stage_dataset

    root = tmp_path / "repo"
    root.mkdir()
    st = stage_dataset(find_source(_split_folder(tmp_path)), root, repo_id="me/x")
    assert st.rows["pairs"] == {"train": 5, "test": 3} and st.rows["binary"] == {"train": 10, "test": 6}
    cache = str(tmp_path / "hf")
    assert set(get_dataset_config_names(str(root))) >= {"pairs", "binary", "trl", "trl-conversational"}
    pairs = load_dataset(str(root), "pairs", cache_dir=cache)
    assert pairs["train"].num_rows == 5 and pairs["test"].num_rows == 3
    assert pairs["train"][0]["prompt"] == [{"role": "user", "content": "質問 0 "}] and pairs["train"][0]["chosen"] \
        == "良い答え 0"
    trl = load_dataset(str(root), "trl-conversational", split="test", cache_dir=cache)
    assert trl[0]["chosen"] == [{"role": "assistant", "content": "はい"}]
    front = _front(st.card)
    assert front["license"] == "mit" and front["language"] == ["ja"] and front["source_datasets"] == [
        "Anthropic/hh-rlhf"]
    assert front["size_categories"] == ["n<1K"] and "task_categories" in front


def test_pushed_pairs_read_back_through_jprefs_data_convert(tmp_path):
    from jprefs.data.io import read_records
    from jprefs.publish.dataset import find_source, stage_dataset

    src = _split_folder(tmp_path)
    root = tmp_path / "repo"
    root.mkdir()
    stage_dataset(find_source(src), root, repo_id="me/x")
    out = tmp_path / "back.jsonl"
    assert main(["data", "convert", str(root / "pairs" / "train-00000-of-00001.parquet"), "--source", "jprefs",
                 "-o", str(out)]) == 0
    assert [r.to_dict() for r in read_records(out)] == [r.to_dict() for r in read_records(src / "train.jsonl")]


def test_staging_is_deterministic_and_counts_add_up_with_rejects(tmp_path):
    from jprefs.publish.dataset import find_source, stage_dataset

    f = tmp_path / "pairs.jsonl"
    write_jsonl(f, _pairs(4))
    write_jsonl(tmp_path / "pairs.rejects.jsonl", [{"line": 7, "reason": "empty_response", "error": "chosen is empty",
                                                    "raw": {"chosen": ""}}])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    sa = stage_dataset(find_source(f), a, repo_id="me/x")
    sb = stage_dataset(find_source(f), b, repo_id="me/x")
    assert sa.files == sb.files
    assert all((a / x).read_bytes() == (b / x).read_bytes() for x in sa.files)
    assert sa.rows["rejects"] == {"train": 1} and "empty_response 1" in sa.card
    import pyarrow.parquet as pq

    rej = pq.read_table(a / "rejects" / "train-00000-of-00001.parquet").to_pylist()
    assert rej[0]["reason"] == "empty_response" and json.loads(rej[0]["where"]) == {"line": 7}


def test_a_planted_key_in_a_row_refuses_the_push_naming_the_shard_and_row(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    f = tmp_path / "pairs.jsonl"
    rows = _pairs(3)
    rows[2] = PreferencePair.create("鍵は?", f"これです {HF_TOKEN_LIKE}", "ない", source="hh-rlhf", license="mit")
    write_jsonl(f, rows)
    assert main(["push", "dataset", str(f), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "pairs/train-00000-of-00001.parquet row:3" in err and "Hugging Face token" in err
    assert HF_TOKEN_LIKE not in err


def test_an_unknown_licence_refuses_and_the_override_puts_it_first_in_the_card(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    f = tmp_path / "pairs.jsonl"
    write_jsonl(f, _pairs(2, source="scraped", license="unknown") + _pairs(2, license="mit"))
    assert main(["push", "dataset", str(f), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "data: scraped (unknown)" in capsys.readouterr().err
    assert main(["push", "dataset", str(f), "--repo-id", "me/x", "--dry-run", "--allow-unknown-license"]) == 0
    out = capsys.readouterr().out
    card = out.split("----- README.md (the card) -----\n", 1)[1]
    body = card[card.find("\n---\n", 3) + 5:].lstrip()
    assert body.startswith("> **WARNING: the licence of part of this repository is UNKNOWN**")
    assert _front(card)["license"] == "unknown"


def test_dry_run_lists_every_file_with_its_size_and_needs_no_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    d = _split_folder(tmp_path)
    assert main(["push", "dataset", str(d), "--repo-id", "me/ja-pairs", "--dry-run", "--no-card"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DRY RUN: would push dataset me/ja-pairs (revision main): 14 files")   # 6 configs x 2 splits + card + facts
    for rel in ("README.md", "jprefs_dataset.json", "pairs/train-00000-of-00001.parquet",
                "binary/test-00000-of-00001.parquet", "trl-unpaired-conversational/test-00000-of-00001.parquet"):
        assert f"  {rel}\n" in out + "\n"
    assert main(["push", "dataset", str(d), "--repo-id", "me/ja-pairs"]) == 2       # a real push needs a token
    assert "no Hugging Face token" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["noslash", "a/b/c", "me/-x", "me/x..y", "me/x.git"])
def test_bad_repo_ids(bad, tmp_path, capsys):
    assert main(["push", "dataset", str(tmp_path), "--repo-id", bad, "--dry-run"]) == 2
    assert "is not a Hub repository id" in capsys.readouterr().err


def test_not_a_jprefs_output(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hi")
    assert main(["push", "dataset", str(tmp_path), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "is not a jprefs dataset output" in capsys.readouterr().err
    assert main(["push", "model", str(tmp_path), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "is not a jprefs model folder" in capsys.readouterr().err


# ---------------------------------------------------------------- models

@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.classifiers.conftest import train_tiny_rm

    out = train_tiny_rm(tmp_path_factory.mktemp("rm"), backbone_license="apache-2.0")
    (out / "pytorch_model.bin").write_bytes(b"\x80\x04stale pickle")     # left out, never uploaded
    return out


def test_a_reward_model_card_carries_the_derived_licence_and_the_repo_id(tiny_rm, tmp_path):
    from jprefs.publish.model import stage_model

    root = tmp_path / "repo"
    root.mkdir()
    st = stage_model(tiny_rm, root, repo_id="me/ja-rm")
    assert "model.safetensors" in st.files and "jprefs_reward.json" in st.files and "README.md" in st.files
    assert "pytorch_model.bin" in st.skipped and "eval_split.jsonl" in st.skipped
    front = _front(st.card)
    # backbone apache-2.0 (its card) + toy rows cc0-1.0 (recorded in metrics.json by train-rm)
    assert front["license"] == "other" and front["license_name"] == "apache-2.0-and-cc0-1.0"
    # a local backbone folder is no Hub id: no base_model key, no local path anywhere in the card
    assert front["language"] == ["ja"] and "base_model" not in front and front["model-index"][0]["name"] == "ja-rm"
    assert 'RewardModel.from_pretrained("me/ja-rm")' in st.card and str(tiny_rm.parent) not in st.card
    assert "| data: toy | cc0-1.0 | cc0-1.0 |" in st.card
    m = json.loads((tiny_rm / "metrics.json").read_text())
    assert m["data"]["sources"] == {"toy": {"cc0-1.0": m["data"]["train"]}}
    # the staged config.yaml has no local path either: absolute paths cut to file names, said in its head;
    # the run's own config.yaml is untouched (the staged one is a rewritten copy, not a link)
    own = (tiny_rm / "config.yaml").read_text()
    staged = (root / "config.yaml").read_text()
    assert str(tiny_rm.parent) in own and str(tiny_rm.parent) not in staged
    assert staged.startswith("# jprefs push: local paths cut to their file names (") and "output_dir" in staged[:200]
    cfg, mine = yaml.safe_load(staged), yaml.safe_load(own)
    assert cfg["output_dir"] == Path(mine["output_dir"]).name and cfg["backbone"] == Path(mine["backbone"]).name
    assert {k: v for k, v in cfg.items() if k not in ("output_dir", "backbone", "data", "eval_data")} == \
        {k: v for k, v in mine.items() if k not in ("output_dir", "backbone", "data", "eval_data")}


def test_a_reward_model_with_a_backbone_of_unknown_licence_is_refused(tiny_rm, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.delenv("HF_TOKEN", raising=False)
    d = tmp_path / "rm"
    shutil.copytree(tiny_rm, d)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    bb = tmp_path / "bb"
    shutil.copytree(cfg["backbone"], bb)
    (bb / "README.md").unlink()
    cfg["backbone"] = str(bb)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["push", "model", str(d), "--repo-id", "me/x", "--dry-run"]) == 2
    assert f"backbone: {bb} (none recorded)" in capsys.readouterr().err


def test_a_secret_in_a_model_file_is_refused(tiny_rm, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.delenv("HF_TOKEN", raising=False)
    d = tmp_path / "rm"
    shutil.copytree(tiny_rm, d)
    m = json.loads((d / "metrics.json").read_text())
    m["note"] = "served at https://admin:hunter2hunter2@10.1.2.3/v1"
    (d / "metrics.json").write_text(json.dumps(m))
    assert main(["push", "model", str(d), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    # (the staged metrics.json is rewritten with local paths cut, one key per line: the line of the note)
    assert re.search(r"metrics\.json:\d+: secret: credentials in a URL", err) and "hunter2hunter2" not in err


def test_an_rl_policy_is_staged_at_the_root_and_loads_with_transformers(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from jprefs.publish.model import stage_model

    recipe = Path(__file__).resolve().parents[2] / "rl" / "recipes" / "sft-tiny-cpu.yaml"
    run = tmp_path / "sft"
    assert main(["rl", str(recipe), "sft_steps=3", "eval_every=3", "-o", str(run)]) == 0
    capsys.readouterr()
    root = tmp_path / "repo"
    root.mkdir()
    st = stage_model(run, root, repo_id="me/ja-sft")
    assert st.kind == "policy" and "model.safetensors" in st.files and "run/summary.json" in st.files
    assert "run/samples.jsonl" in st.files and "done.json" in st.skipped
    front = _front(st.card)
    assert front["license"] == "apache-2.0" and front["pipeline_tag"] == "text-generation"
    assert "no reward (supervised fine-tuning)" in st.card
    assert str(tmp_path) not in (root / "run" / "config.yaml").read_text()
    ids = torch.tensor([[3, 4, 5]])
    a = AutoModelForCausalLM.from_pretrained(root).eval()
    b = AutoModelForCausalLM.from_pretrained(run / "policy").eval()
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)
    # a policy trained from that policy: its licence is found through the run that made it
    from jprefs.publish.model import model_license

    assert model_license(str(run / "policy"))[0] == "apache-2.0"


def test_a_jprefs_eval_rm_report_goes_in_the_model_card(tiny_rm, tmp_path, capsys):
    from jprefs.publish.model import stage_model

    cfg = yaml.safe_load((tiny_rm / "config.yaml").read_text())
    ev = tmp_path / "eval-rm"
    assert main(["eval", "rm", "--model", str(tiny_rm), "--data", cfg["data"], "-o", str(ev)]) == 0
    capsys.readouterr()
    root = tmp_path / "repo"
    root.mkdir()
    st = stage_model(tiny_rm, root, repo_id="me/ja-rm", eval_dirs=[str(ev)])
    section = st.card.split("## Evaluations (`jprefs eval rm`)", 1)[1]
    report = (ev / "report.md").read_text(encoding="utf-8")
    first_table_row = next(line for line in report.splitlines() if line.startswith("| "))
    assert f"From `{ev.name}`" in section and first_table_row in section
    assert "![" not in section                                  # images of the report are not in the card
    # the report names its files by absolute path: the card names none (the model's own card names none)
    assert str(tmp_path) not in section and str(tiny_rm.parent) not in section and str(ev) in report
    # it scored the model's own training file: said, since its figures overstate accuracy on new data
    assert "**These figures include the model's own training rows**" in section


def test_big_files_are_scanned_in_chunks_across_the_chunk_border(tmp_path, monkeypatch):
    import jprefs.publish.preflight as pf

    monkeypatch.setattr(pf, "CHUNK", 1000)
    data = b"\0" * 990 + HF_TOKEN_LIKE.encode() + b"\0" * 3000       # the token straddles the first border
    (tmp_path / "w.safetensors").write_bytes(data)
    found = pf.preflight(tmp_path, ["w.safetensors"])
    assert [(f.kind, f.detail.split(" hf_")[0]) for f in found] == [("secret", "Hugging Face token")]


def test_the_pushed_config_keeps_no_local_layout():
    """Absolute, ~ and ../ paths are cut to their file names (the keys named); Hub ids, recipe names and
    paths inside the run's own tree stay as they are."""
    from jprefs.publish.model import _local_paths_named

    keys: list = []
    cfg = {"data": "../shared/data/rakuda/rakuda_gpt4_pairs.jsonl", "extra_data": ["/home/me/x.jsonl", "y.jsonl"],
           "output_dir": "~/runs/rm", "backbone": "intfloat/multilingual-e5-small", "eval_data": "out/held.jsonl",
           "nested": {"path": "../../z.jsonl"}, "note": "../ not a path\nbut text", "lr": 1e-4}
    got = _local_paths_named(cfg, keys)
    assert got == {"data": "rakuda_gpt4_pairs.jsonl", "extra_data": ["x.jsonl", "y.jsonl"], "output_dir": "rm",
                   "backbone": "intfloat/multilingual-e5-small", "eval_data": "out/held.jsonl",
                   "nested": {"path": "z.jsonl"}, "note": "../ not a path\nbut text", "lr": 1e-4}
    assert keys == ["data", "extra_data", "output_dir", "nested.path"]


def test_an_unfinished_reward_model_run_is_refused(tiny_rm, tmp_path, monkeypatch, capsys):
    import os
    import shutil

    monkeypatch.delenv("HF_TOKEN", raising=False)
    d = tmp_path / "rm"
    shutil.copytree(tiny_rm, d)
    (d / "done.json").unlink()
    later = (d / "metrics.json").stat().st_mtime + 10
    os.utime(d / "config.yaml", (later, later))          # config.yaml rewritten after the model: a rerun, killed
    assert main(["push", "model", str(d), "--repo-id", "me/x", "--dry-run"]) != 0
    err = capsys.readouterr().err
    assert "did not finish" in err and "Traceback" not in err


def test_a_stack_dry_run_lists_its_members_and_leaves_their_data_rows_out(tmp_path, capsys):
    pytest.importorskip("torch")
    from tests.classifiers.conftest import trained_stack
    from tests.classifiers.test_stack import _cfg

    t = trained_stack(tmp_path, _cfg)
    (tmp_path / "bb" / "README.md").write_text("---\nlicense: mit\n---\n")
    capsys.readouterr()
    assert main(["push", "model", str(t["out"]), "--repo-id", "me/ja-stack", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for f in ("jprefs_stack.json", "probe.json", "reward/model.safetensors", "reward/jprefs_reward.json",
              "reward/README.md", "reward/done.json", "backbone/model.safetensors", "backbone/config.json"):
        assert f"  {f}" in out, f
    assert "reward/eval_split.jsonl: data rows" in out and "  reward/eval_split.jsonl" not in out.split("left out")[0]
    assert 'RewardModel.from_pretrained("me/ja-stack")' in out and "is in `backbone/`" in out


def test_a_policys_licence_counts_the_data_it_was_trained_on(tmp_path, capsys):
    """A policy SFT-ed on cc-by-nc-4.0 rows was pushed as apache-2.0 (its base policy's licence alone)."""
    pytest.importorskip("torch")
    import json

    from jprefs.publish.model import _policy_data_licences, stage_model
    from jprefs.config import load_config
    from jprefs.rl.config import RLConfig

    nc = tmp_path / "nc.jsonl"
    nc.write_text("".join(json.dumps({"prompt": f"質問{i}", "chosen": f"良い答え{i}です。", "rejected": f"悪い{i}",
                                      "license": "cc-by-nc-4.0"}, ensure_ascii=False) + "\n" for i in range(20)),
                  encoding="utf-8")
    recipe = Path(__file__).resolve().parents[2] / "rl" / "recipes" / "sft-tiny-cpu.yaml"
    run = tmp_path / "sft"
    assert main(["rl", str(recipe), "sft_steps=2", "eval_every=2", f"sft_data={nc}", "-o", str(run)]) == 0
    capsys.readouterr()
    root = tmp_path / "repo"
    root.mkdir()
    st = stage_model(run, root, repo_id="me/ja-sft-nc")
    assert _front(st.card)["license"] == "cc-by-nc-4.0" and "sft_data: nc.jsonl" in st.card
    # a policy trained from that local policy: no local path in its card
    run2 = tmp_path / "sft2"
    assert main(["rl", str(recipe), "sft_steps=1", "eval_every=1", f"sft_data={nc}", f"policy={run / 'policy'}",
                 "-o", str(run2)]) == 0
    capsys.readouterr()
    (tmp_path / "repo2").mkdir()
    st2 = stage_model(run2, tmp_path / "repo2", repo_id="me/ja-sft-nc2")
    assert str(tmp_path) not in st2.card and "(local) policy" in st2.card
    # plain prompt files record no licence: unknown (push refuses it without --allow-unknown-license)
    txt = tmp_path / "p.txt"
    txt.write_text("今日は\n", encoding="utf-8")
    cfg = load_config(RLConfig, dict(algo="ppo", reward_type="callable", prompts=str(txt)))
    assert _policy_data_licences(cfg) == {"prompts: p.txt": ""}


def test_rejected_rows_and_translated_rows_count_in_the_licence(tmp_path):
    """The rejects config publishes rejected rows whole: an ND/NC source among them went out under the kept
    rows' mit. And a translation pushed as a plain file escaped the no-derivatives check."""
    from jprefs.publish.dataset import find_source, stage_dataset
    from jprefs.publish.licenses import LicenseRefused

    f = tmp_path / "pairs.jsonl"
    write_jsonl(f, _pairs(4))
    nd = _pairs(1, source="nd-src", license="cc-by-nc-nd-4.0")[0].to_dict()
    write_jsonl(tmp_path / "pairs.rejects.jsonl", [{"line": 1, "reason": "contradicts", "error": "x", "raw": nd}])
    (tmp_path / "a").mkdir()
    st = stage_dataset(find_source(f), tmp_path / "a", repo_id="me/x")
    assert _front(st.card)["license"] != "mit" and "cc-by-nc-nd-4.0" in st.card
    # a translated pair (meta.translation) of a no-derivatives source, pushed as a file: refused
    tr = _pairs(2, source="nd-src", license="cc-by-nd-4.0")
    for p in tr:
        p.meta["translation"] = {"model": "m"}
    g = tmp_path / "ja.jsonl"
    write_jsonl(g, tr)
    (tmp_path / "b").mkdir()
    with pytest.raises(LicenseRefused, match="no derivatives"):
        stage_dataset(find_source(g), tmp_path / "b", repo_id="me/y")


# ---------------------------------------------------------------- what a card claims: whose figures, which revision

@pytest.fixture(scope="module")
def own_eval(tiny_rm):
    """`jprefs eval rm` of tiny_rm on its held-out split, run from the folder above it with relative paths
    (`--model out -o ev-own`), as a user types it."""
    import os

    here = os.getcwd()
    os.chdir(tiny_rm.parent)
    try:
        assert main(["eval", "rm", "--model", "out", "--data", "out/eval_split.jsonl", "--no-plots",
                     "-o", "ev-own"]) == 0
    finally:
        os.chdir(here)
    return tiny_rm.parent / "ev-own"


def _edited_eval(src: Path, dst: Path, edit) -> Path:
    """A copy of the eval folder ``src`` whose metrics.json went through ``edit(metrics)``, beside it (so that
    its command's relative paths still lead where they did; its -o names the copy)."""
    import shutil

    dst = src.parent / f"{dst.parent.name[:40]}-{dst.name}"
    shutil.copytree(src, dst)
    m = json.loads((dst / "metrics.json").read_text(encoding="utf-8"))
    m["command"] = m["command"].replace(f"-o {src.name}", f"-o {dst.name}")
    edit(m)
    (dst / "metrics.json").write_text(json.dumps(m), encoding="utf-8")
    return dst


def test_an_eval_report_of_this_model_goes_in_the_card_and_one_of_another_model_is_refused(
        tiny_rm, own_eval, tmp_path, monkeypatch, capsys):
    """`--eval` put any report's figures on the card as this model's: one of another model is refused,
    naming both and the command that evaluates this one; the override does not take it either."""
    import shutil

    from jprefs.errors import DataError
    from jprefs.publish.model import stage_model

    monkeypatch.chdir(tmp_path)             # pushed from elsewhere: relative paths read from where eval ran
    (tmp_path / "a").mkdir()
    st = stage_model(tiny_rm, tmp_path / "a", repo_id="me/ja-rm", eval_dirs=[str(own_eval)])
    section = st.card.split("## Evaluations (`jprefs eval rm`)", 1)[1]
    assert "This model is `out` in the report." in section and "Not verified" not in section
    assert str(tiny_rm.parent) not in st.card and "own training rows" not in section    # held-out rows only

    other = tmp_path / "other"               # another training run: another centring constant
    shutil.copytree(tiny_rm, other)
    spec = json.loads((other / "jprefs_reward.json").read_text())
    spec["center"] += 0.5
    (other / "jprefs_reward.json").write_text(json.dumps(spec))
    ev = tmp_path / "ev-other"
    assert main(["eval", "rm", "--model", str(other), "--data", str(tiny_rm / "eval_split.jsonl"), "--no-plots",
                 "-o", str(ev)]) == 0
    copy = tmp_path / "copy"     # an older report (no fingerprint) of another folder: another folder's report
    shutil.copytree(tiny_rm, copy)
    ev_copy = _edited_eval(own_eval, tmp_path / "ev-copy", lambda m: (m["models"]["out"].update(path=str(copy)),
                                                                      m["models"]["out"].pop("fingerprint")))
    for report in (ev, ev_copy):
        for allow in (False, True):
            (tmp_path / "b").mkdir()
            with pytest.raises(DataError) as e:
                stage_model(tiny_rm, tmp_path / "b", repo_id="me/ja-rm", eval_dirs=[str(report)],
                            allow_unverified_eval=allow)
            shutil.rmtree(tmp_path / "b")
            msg = str(e.value)
            assert "not shown to be of the model being pushed" in msg and "another folder" in msg
            assert str(tiny_rm) in msg and f"jprefs eval rm --model {tiny_rm} --data" in msg
            assert "--allow-unverified-eval" not in msg            # known to be another model: no override
    monkeypatch.delenv("HF_TOKEN", raising=False)
    capsys.readouterr()
    assert main(["push", "model", str(tiny_rm), "--repo-id", "me/x", "--eval", str(ev), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "Traceback" not in err


def test_an_eval_report_that_cannot_be_checked_needs_the_override_and_a_retrained_folder_is_refused(
        tiny_rm, own_eval, tmp_path):
    from jprefs.errors import DataError
    from jprefs.publish.model import stage_model

    def stage(report, **kw):
        root = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        return stage_model(tiny_rm, root, repo_id="me/ja-rm", eval_dirs=[str(report)], **kw)

    old = _edited_eval(own_eval, tmp_path / "old", lambda m: m.pop("models"))           # before models were kept
    moved = _edited_eval(own_eval, tmp_path / "moved",          # the folder moved since, in an older report
                         lambda m: (m["models"]["out"].update(path="/nowhere/any/more/out"),
                                    m["models"]["out"].pop("fingerprint")))
    for report in (old, moved):
        with pytest.raises(DataError, match="--allow-unverified-eval"):
            stage(report)
        card = stage(report, allow_unverified_eval=True).card
        assert "**Not verified to be this model's report** (`--allow-unverified-eval`)" in card
        assert "/nowhere" not in card
    # this folder, but trained again since the report: its centring constant differs
    again = _edited_eval(own_eval, tmp_path / "again", lambda m: m["models"]["out"].update(
        center=m["models"]["out"]["center"] + 1.0))
    with pytest.raises(DataError) as e:
        stage(again, allow_unverified_eval=True)
    assert "this folder" in str(e.value) and "center" in str(e.value) and "this model's:" in str(e.value)


def test_a_policy_push_refuses_eval_reports_its_card_would_leave_out(tmp_path, own_eval):
    from jprefs.errors import DataError
    from jprefs.publish.model import stage_model

    run = tmp_path / "run"
    (run / "policy").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    with pytest.raises(DataError, match="--eval takes `jprefs eval rm` reports of a reward model"):
        stage_model(run, tmp_path, repo_id="me/p", eval_dirs=[str(own_eval)])


def test_every_snippet_of_a_card_loads_the_revision_it_was_pushed_to(tiny_rm, tmp_path):
    """`--revision exp` pushed to a branch, and the card's code loaded main."""
    from jprefs.publish.dataset import find_source, stage_dataset
    from jprefs.publish.model import stage_model
    from jprefs.publish.snippets import unpinned_calls

    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    st = stage_model(tiny_rm, tmp_path / "a", repo_id="me/ja-rm", revision="exp")
    assert 'RewardModel.from_pretrained("me/ja-rm", revision="exp")' in st.card
    assert 'AutoModelForSequenceClassification.from_pretrained("me/ja-rm", revision="exp")' in st.card
    assert 'AutoTokenizer.from_pretrained("me/ja-rm", revision="exp")' in st.card
    assert unpinned_calls(st.card, "me/ja-rm") == [] and (tmp_path / "a" / "README.md").read_text() == st.card
    assert "revision=" not in stage_model(tiny_rm, tmp_path / "b", repo_id="me/ja-rm", revision="main").card
    ds = stage_dataset(find_source(_split_folder(tmp_path)), tmp_path / "c", repo_id="me/ja-pairs", revision="v2")
    assert 'load_dataset("me/ja-pairs", "pairs", split="train", revision="v2")' in ds.card
    assert unpinned_calls(ds.card, "me/ja-pairs") == [] and (tmp_path / "c" / "README.md").read_text() == ds.card


def test_pin_revision_reaches_every_call_of_the_repo_and_only_those():
    from jprefs.publish.snippets import pin_revision, unpinned_calls

    text = ('rm = RewardModel.from_pretrained("me/x", subfolder="seed-1")   # (a member)\n'
            'p = pipeline("text-classification", model="me/x")\n'
            "f = hf_hub_download('me/x', 'probe.json'); snapshot_download(repo_id=\"me/x\")\n"
            'ok = load_dataset("me/x", revision="v0")\n'
            'other = AutoModel.from_pretrained("me/xy")\n'
            'See [me/x](https://huggingface.co/me/x) (the "me/x" repo).')
    got = pin_revision(text, "me/x", "exp")
    assert unpinned_calls(got, "me/x") == [] and len(unpinned_calls(text, "me/x")) == 4
    assert 'subfolder="seed-1", revision="exp")   # (a member)' in got and 'model="me/x", revision="exp")' in got
    assert "hf_hub_download('me/x', 'probe.json', revision=\"exp\")" in got
    assert 'snapshot_download(repo_id="me/x", revision="exp")' in got
    assert 'load_dataset("me/x", revision="v0")' in got                       # its own revision stays
    assert 'from_pretrained("me/xy")' in got and "(https://huggingface.co/me/x/tree/exp)" in got
    assert '(the "me/x" repo)' in got                                          # prose is no call


def test_the_model_index_files_each_splits_figures_under_the_data_they_were_measured_on():
    from jprefs.classifiers.card import model_card
    from jprefs.classifiers.config import TrainRMConfig

    metrics = {"best_epoch": 1, "selected_by": "accuracy", "center": 0.0, "data": {},
               "eval": {"accuracy": 0.8}, "test": {"accuracy": 0.7}}
    cfg = TrainRMConfig(data="train.jsonl", eval_data="dev.jsonl", test_data="test.jsonl", output_dir="o")
    res = _front(model_card(cfg, metrics))["model-index"][0]["results"]
    assert [(r["dataset"]["name"], [m["name"] for m in r["metrics"]]) for r in res] == [
        ("dev.jsonl", ["eval accuracy"]), ("test.jsonl", ["test accuracy"])]
    split = _front(model_card(TrainRMConfig(data="train.jsonl", output_dir="o"), metrics))["model-index"][0]
    assert split["results"][0]["dataset"] == {"name": "train.jsonl (held-out split)", "type": "custom",
                                              "split": "held-out"}


# ---------------------------------------------------------------- licences: every data file that shaped the weights

def _nc_file(path: Path, n: int = 6) -> str:
    write_jsonl(path, _pairs(n, source="ncsrc", license="cc-by-nc-4.0"))
    return str(path)


def test_a_reward_models_licence_counts_the_data_its_epoch_was_chosen_on_and_every_training_file(tmp_path):
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.publish.licenses import derive
    from jprefs.publish.model import _rm_data

    nc = _nc_file(tmp_path / "nc.jsonl")
    toy = {"data": {"sources": {"toy": {"cc0-1.0": 8}}}, "eval": {"pairwise_accuracy": 0.7}}
    cfg = TrainRMConfig(data="train.jsonl", eval_data=nc, test_data=str(tmp_path / "test.jsonl"), epochs=3)
    comps, named = _rm_data(cfg, tmp_path, "reward-model", [], {**toy, "selected_by": "pairwise_accuracy"})
    assert comps == {"data: toy": "cc0-1.0", "best epoch chosen on: ncsrc": "cc-by-nc-4.0"}
    assert derive({"backbone: x": "mit", **comps}, kind="model").license == "cc-by-nc-4.0"
    assert named == {"test_data: test.jsonl": "evaluated on only (never used for a choice)"}
    # one epoch: nothing was chosen on eval_data, so it is named, not counted
    comps, named = _rm_data(cfg, tmp_path, "reward-model", [], {**toy, "selected_by": "none (one epoch)"})
    assert comps == {"data: toy": "cc0-1.0"} and "eval_data: nc.jsonl" in named
    # no recorded sources and a training file gone: the other files still count (the NC one was dropped)
    cfg = TrainRMConfig(data=str(tmp_path / "gone.jsonl"), extra_data=[nc], eval_fraction=0)
    comps, _ = _rm_data(cfg, tmp_path, "reward-model", [], {})
    assert comps == {"data: ncsrc": "cc-by-nc-4.0", "data: gone.jsonl": ""}          # by name: no local path


@pytest.fixture(scope="module")
def nc_stacks(tmp_path_factory):
    """A fine-tuned stack and a frozen stack trained on cc0-1.0 pairs with a cc-by-nc-4.0 `eval_data`: the
    fine-tuned stack's weights are fit on it, the frozen stack only reads it."""
    pytest.importorskip("torch")
    from jprefs.classifiers.config import TrainRMConfig
    from jprefs.classifiers.stack import train_stack
    from jprefs.config import load_config
    from tests.classifiers.conftest import make_backbone_dir, write_pairs

    d = tmp_path_factory.mktemp("ncstack")
    bb = make_backbone_dir(d / "bb")
    (d / "bb" / "README.md").write_text("---\nlicense: mit\n---\n")
    nc = d / "nc.jsonl"
    rows = [json.loads(x) for x in Path(write_pairs(d / "tmp.jsonl", n=24, seed=3)).read_text().splitlines()]
    nc.write_text("".join(json.dumps({**r, "source": "ncsrc", "license": "cc-by-nc-4.0"}, ensure_ascii=False) + "\n"
                          for r in rows), encoding="utf-8")
    common = dict(data=write_pairs(d / "pairs.jsonl", n=40), eval_data=str(nc), backbone=bb, objective="pairwise",
                  max_length=48, max_prompt_length=16, plots=False, stack_folds=3)
    runs = {"fitted": dict(epochs=1, lr=3e-3, batch_size=8, warmup_ratio=0.0, stack=["probe", "relevance"]),
            "frozen": dict(stack=["probe", "features"], stack_reward=False)}
    for name, kw in runs.items():
        cfg = load_config(TrainRMConfig, None, {**common, **kw, "output_dir": str(d / name)})
        cfg.validate()
        train_stack(cfg, log=lambda *a, **k: None)
    return d


def test_a_stack_fit_on_non_commercial_eval_data_is_not_pushed_under_a_permissive_licence(nc_stacks, tmp_path):
    from jprefs.publish.model import stage_model
    from jprefs.publish.snippets import unpinned_calls

    (tmp_path / "a").mkdir()
    st = stage_model(nc_stacks / "fitted", tmp_path / "a", repo_id="me/ja-stack", revision="exp")
    assert st.licenses.license == "cc-by-nc-4.0" and _front(st.card)["license"] == "cc-by-nc-4.0"
    assert "| stack weights fit on: ncsrc | cc-by-nc-4.0 | cc-by-nc-4.0 |" in st.card
    member = (tmp_path / "a" / "reward" / "README.md").read_text(encoding="utf-8")
    assert _front(member)["license"] == "cc-by-nc-4.0"
    assert "training data: `pairs.jsonl`; licence: **cc0-1.0**" in member     # the training rows' own licence
    # every card of the repo loads the branch it was pushed to (a member with subfolder=)
    assert 'RewardModel.from_pretrained("me/ja-stack", subfolder="reward", revision="exp")' in member
    for card in (st.card, member):
        assert unpinned_calls(card, "me/ja-stack") == []
    # a frozen stack only reads eval_data (its weights are fit on the training pairs): named, not counted
    (tmp_path / "b").mkdir()
    fr = stage_model(nc_stacks / "frozen", tmp_path / "b", repo_id="me/ja-frozen")
    assert fr.licenses.license == "other" and fr.licenses.license_name == "cc0-1.0 AND mit"
    assert "eval_data: nc.jsonl, evaluated on only (nothing was fit or chosen on it)" in fr.card


def test_catalogue_revisions_are_commits_or_carry_their_caveat():
    """A pinned revision that is a branch or a PR ref (refs/pr/3) can move: the entry must say so."""
    from jprefs.classifiers.catalogue import load_catalogue

    for e in load_catalogue():
        if e.revision is not None and not re.fullmatch(r"[0-9a-f]{40}", e.revision):
            assert "Caveat" in e.notes and e.revision in e.notes, e.id
