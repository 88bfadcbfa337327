"""The local Hub of tests/hub/fakehub.py, driven only through the real clients: huggingface_hub
(HfApi, hf_hub_download, snapshot_download) and datasets (load_dataset, get_dataset_config_names).
Everything is checked against what the test wrote itself: bytes, rows, and the commits the server
recorded, so a fake that answered wrongly, or a client that silently re-uploaded, fails here."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from tests.hub.fakehub import git_oid

MIB = 1024 * 1024
# lfs._upload_single_part passes `data=fileobj` to httpx2, which warns; the client's, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


def _folder(root: Path) -> dict[str, bytes]:
    """A model folder: a text file, nested folders, an LFS-tracked binary (by .gitattributes
    pattern) and a binary over 10 MB with an untracked extension (LFS by size)."""
    files = {
        "README.md": "---\nlicense: apache-2.0\nlanguage:\n- ja\n---\n# tiny\n日本語の説明\n".encode(),
        "config.json": b'{"hidden_size": 8}\n',
        "tokenizer/vocab.txt": "[PAD]\n[UNK]\nこんにちは\n".encode(),
        "tokenizer/deep/special.txt": b"<s>\n",
        "メモ/説明 1.txt": "パスも日本語\n".encode(),  # quoted in every URL the client builds
        "model.safetensors": os.urandom(3000),
        "weights.dat": os.urandom(10 * MIB + 5),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_model_push_pull_and_offline_reads_from_the_cache(fake_hub, hub_offline, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    api = HfApi()  # no endpoint, no token: both come from the fixture's patched constants and HF_TOKEN
    src = tmp_path / "src"
    files = _folder(src)
    url = api.create_repo("jprefs-test/tiny-rm")
    assert url == f"{fake_hub.endpoint}/jprefs-test/tiny-rm" and url.repo_id == "jprefs-test/tiny-rm"

    info = api.upload_folder(repo_id="jprefs-test/tiny-rm", folder_path=src, commit_message="first push")
    initial, first = fake_hub.commits("jprefs-test/tiny-rm")
    assert (initial.message, initial.changed) == ("initial commit", [".gitattributes"])
    assert info.oid == first.id and first.parent == initial.id and first.message == "first push"
    assert first.changed == sorted(files)
    # which paths the client sent through LFS is what the preupload answer said: by pattern or size
    lfs = {p for p, e in first.files.items() if e.lfs}
    assert lfs == {"model.safetensors", "weights.dat"}
    assert first.files["weights.dat"].lfs == hashlib.sha256(files["weights.dat"]).hexdigest()
    assert first.files["config.json"].oid == git_oid(files["config.json"])
    # regular files travel base64 inside the commit, LFS files as one PUT each: every byte once
    assert fake_hub.bytes_uploaded == sum(len(b) for b in files.values())
    assert fake_hub.upload_requests == 1 + 2  # the commit + two LFS PUTs

    assert sorted(api.list_repo_files("jprefs-test/tiny-rm")) == sorted([".gitattributes", *files])
    assert api.model_info("jprefs-test/tiny-rm").card_data.license == "apache-2.0"
    for rel, data in files.items():
        assert Path(hf_hub_download("jprefs-test/tiny-rm", rel)).read_bytes() == data, rel
    snap = Path(snapshot_download("jprefs-test/tiny-rm"))
    assert snap.name == first.id
    assert {k: v for k, v in _tree(snap).items() if k != ".gitattributes"} == files

    # offline: the same calls are served from the cache, and not one request reaches the server
    seen = len(fake_hub.requests)
    hub_offline()
    assert Path(hf_hub_download("jprefs-test/tiny-rm", "tokenizer/deep/special.txt")).read_bytes() == b"<s>\n"
    assert _tree(Path(snapshot_download("jprefs-test/tiny-rm"))) == _tree(snap)
    assert len(fake_hub.requests) == seen


def test_second_push_of_an_unchanged_folder_uploads_nothing_and_makes_no_commit(fake_hub, tmp_path, caplog):
    from huggingface_hub import HfApi

    api = HfApi()
    src = tmp_path / "src"
    files = _folder(src)
    api.create_repo("jprefs-test/again")
    api.upload_folder(repo_id="jprefs-test/again", folder_path=src)
    head = fake_hub.commits("jprefs-test/again")[-1]
    bytes0, requests0, n0 = fake_hub.bytes_uploaded, fake_hub.upload_requests, len(fake_hub.requests)

    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        info = api.upload_folder(repo_id="jprefs-test/again", folder_path=src)
    assert fake_hub.commits("jprefs-test/again")[-1] is head and info.oid == head.id
    assert (fake_hub.bytes_uploaded, fake_hub.upload_requests) == (bytes0, requests0)
    assert "No files have been modified since last commit. Skipping to prevent empty commit." in caplog.text
    # how the client knew (after validating the README's YAML twice: upload_folder, create_commit):
    # preupload gave each file's remote oid (git sha1, or sha256 for LFS) and the LFS batch answer
    # had no upload action for objects the server holds; then it read the head sha for its CommitInfo
    assert [r.split(" ")[1] for r in fake_hub.requests[n0:]] == [
        "/api/validate-yaml", "/api/validate-yaml", "/api/models/jprefs-test/again/preupload/main",
        "/jprefs-test/again.git/info/lfs/objects/batch",
        "/api/models/jprefs-test/again/revision/main"]

    # one changed file: one commit holding just that file, and just its bytes uploaded
    (src / "tokenizer" / "vocab.txt").write_bytes(b"[PAD]\n")
    api.upload_folder(repo_id="jprefs-test/again", folder_path=src)
    last = fake_hub.commits("jprefs-test/again")[-1]
    assert last.parent == head.id and last.changed == ["tokenizer/vocab.txt"] and last.deleted == []
    assert fake_hub.bytes_uploaded - bytes0 == len(b"[PAD]\n")
    assert fake_hub.read("jprefs-test/again", "weights.dat") == files["weights.dat"]

    # a file gone from the folder stays on the Hub unless delete_patterns names it (push = mirror)
    (src / "tokenizer" / "deep" / "special.txt").unlink()
    api.upload_folder(repo_id="jprefs-test/again", folder_path=src)
    assert fake_hub.commits("jprefs-test/again")[-1] is last
    before = fake_hub.bytes_uploaded
    api.upload_folder(repo_id="jprefs-test/again", folder_path=src, delete_patterns=["*.txt"])
    gone = fake_hub.commits("jprefs-test/again")[-1]
    assert gone.parent == last.id and gone.deleted == ["tokenizer/deep/special.txt"] and gone.changed == []
    # the client drops the deletes of paths it re-adds, so the unchanged *.txt files are still skipped
    assert fake_hub.bytes_uploaded == before


def test_branch_revision_refs_and_parent_commit(fake_hub, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    api = HfApi()
    api.create_repo("jprefs-test/branchy")
    api.upload_file(path_or_fileobj=b"main v1\n", path_in_repo="notes/a.txt", repo_id="jprefs-test/branchy")
    api.create_branch("jprefs-test/branchy", branch="dev")
    info = api.upload_file(path_or_fileobj=b"dev v2\n", path_in_repo="notes/a.txt", repo_id="jprefs-test/branchy",
                           revision="dev")
    refs = {b.name: b.target_commit for b in api.list_repo_refs("jprefs-test/branchy").branches}
    main = fake_hub.commits("jprefs-test/branchy", branch="main")
    dev = fake_hub.commits("jprefs-test/branchy", branch="dev")
    assert refs == {"main": main[-1].id, "dev": info.oid}
    assert [c.id for c in dev[:-1]] == [c.id for c in main] and dev[-1].parent == main[-1].id
    assert Path(hf_hub_download("jprefs-test/branchy", "notes/a.txt", revision="dev")).read_bytes() == b"dev v2\n"
    assert Path(hf_hub_download("jprefs-test/branchy", "notes/a.txt")).read_bytes() == b"main v1\n"
    assert Path(snapshot_download("jprefs-test/branchy", revision="dev")).name == info.oid
    # a commit id is a revision too
    assert Path(hf_hub_download("jprefs-test/branchy", "notes/a.txt", revision=main[-1].id)).read_bytes() \
        == b"main v1\n"
    assert [c.title for c in api.list_repo_commits("jprefs-test/branchy", revision="dev")] == [
        "Upload notes/a.txt with huggingface_hub", "Upload notes/a.txt with huggingface_hub", "initial commit"]
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("jprefs-test/branchy", "notes/a.txt", revision="nope")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_branch("jprefs-test/branchy", branch="dev")
    assert e.value.response.status_code == 409
    api.create_branch("jprefs-test/branchy", branch="dev", exist_ok=True)
    # parent_commit: refused once the branch has moved on (412), accepted at the head
    with pytest.raises(HfHubHTTPError) as e:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="jprefs-test/branchy",
                        revision="dev", parent_commit=main[-1].id)
    assert e.value.response.status_code == 412
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="jprefs-test/branchy",
                    revision="dev", parent_commit=info.oid)
    api.delete_folder("notes", repo_id="jprefs-test/branchy", revision="dev")
    assert fake_hub.commits("jprefs-test/branchy", branch="dev")[-1].deleted == ["notes/a.txt"]
    assert sorted(api.list_repo_files("jprefs-test/branchy", revision="dev")) == [".gitattributes", "x.txt"]


def test_tree_listing_is_paginated_the_way_the_client_follows(fake_hub):
    from huggingface_hub import CommitOperationAdd, HfApi, RepoFolder

    api = HfApi()
    api.create_repo("jprefs-test/many", repo_type="dataset")
    paths = [f"d{i % 3}/sub/f{i}.txt" for i in range(7)]
    api.create_commit("jprefs-test/many", repo_type="dataset", commit_message="seven files",
                      operations=[CommitOperationAdd(p, p.encode()) for p in paths])
    fake_hub.page_size = 2
    n = len(fake_hub.requests)
    tree = list(api.list_repo_tree("jprefs-test/many", repo_type="dataset", recursive=True))
    folders = {"d0", "d1", "d2", "d0/sub", "d1/sub", "d2/sub"}
    assert sorted(x.path for x in tree) == sorted([".gitattributes", *paths, *folders])
    assert {x.path for x in tree if isinstance(x, RepoFolder)} == folders
    assert len(fake_hub.requests) - n == 7  # 14 entries, 2 per page
    top = list(api.list_repo_tree("jprefs-test/many", repo_type="dataset", path_in_repo="d1"))
    assert [x.path for x in top] == ["d1/sub"]
    info = api.get_paths_info("jprefs-test/many", ["d2/sub/f2.txt", "d2", "missing"], repo_type="dataset")
    assert [(type(x).__name__, x.path) for x in info] == [("RepoFile", "d2/sub/f2.txt"), ("RepoFolder", "d2")]
    assert info[0].size == len(b"d2/sub/f2.txt") and info[0].blob_id == git_oid(b"d2/sub/f2.txt")


def test_private_repos_missing_repos_and_tokens(fake_hub):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError)

    api = HfApi()
    assert api.whoami()["name"] == fake_hub.user
    api.create_repo("jprefs-test/secret", repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"rows\n", path_in_repo="data.txt", repo_id="jprefs-test/secret",
                    repo_type="dataset")
    assert api.dataset_info("jprefs-test/secret").private is True
    assert api.repo_exists("jprefs-test/secret", repo_type="dataset")
    assert not api.repo_exists("jprefs-test/secret")  # a model of that name does not exist
    with pytest.raises(RepositoryNotFoundError):  # private, and no token sent
        HfApi(token=False).dataset_info("jprefs-test/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("jprefs-test/secret", "data.txt", repo_type="dataset", token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("jprefs-test/nothing-here")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("jprefs-test/nothing-here", "config.json")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("jprefs-test/secret", "nope.txt", repo_type="dataset")
    # a wrong token is a 401 the client reports as it is, not as a missing repo
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(token="hf_wrong").upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="jprefs-test/secret",
                                            repo_type="dataset")
    assert e.value.response.status_code == 401 and not isinstance(e.value, RepositoryNotFoundError)
    assert "hf_wrong" not in "\n".join(fake_hub.requests) and fake_hub.token not in "\n".join(fake_hub.requests)
    with pytest.raises(HfHubHTTPError) as e:  # writes need a token
        HfApi(token=False).create_repo("jprefs-test/anon")
    assert e.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo("jprefs-test/secret", repo_type="dataset")
    assert e.value.response.status_code == 409
    assert api.create_repo("jprefs-test/secret", repo_type="dataset", exist_ok=True).repo_id == "jprefs-test/secret"
    assert len(fake_hub.commits("jprefs-test/secret", "dataset")) == 2


CARD = """---
license: cc-by-4.0
language:
- ja
configs:
- config_name: pairs
  data_files:
  - split: train
    path: pairs/train-*.parquet
  - split: test
    path: pairs/test-00000-of-00001.parquet
- config_name: binary
  data_files:
  - split: train
    path: binary/train-00000-of-00001.parquet
---
# jprefs test pairs
"""


def test_datasets_load_dataset_reads_every_config_with_the_rows_written(fake_hub, hub_offline, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi

    pairs = {"train": [{"prompt": f"質問{i}", "chosen": f"良い{i}", "rejected": f"悪い{i}"} for i in range(5)],
             "test": [{"prompt": "問", "chosen": "はい", "rejected": "いいえ"}]}
    binary = [{"prompt": "問", "completion": "はい", "label": True},
              {"prompt": "問", "completion": "x", "label": False}]
    src = tmp_path / "ds"
    (src / "pairs").mkdir(parents=True)
    (src / "binary").mkdir()
    (src / "README.md").write_text(CARD, encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(pairs["train"][:3]), src / "pairs" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(pairs["train"][3:]), src / "pairs" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(pairs["test"]), src / "pairs" / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(binary), src / "binary" / "train-00000-of-00001.parquet")
    api = HfApi()
    api.create_repo("jprefs-test/pairs-ja", repo_type="dataset")
    api.upload_folder(repo_id="jprefs-test/pairs-ja", repo_type="dataset", folder_path=src)
    head = fake_hub.commits("jprefs-test/pairs-ja", "dataset")[-1]
    assert {p for p, e in head.files.items() if e.lfs} == {p for p in head.files if p.endswith(".parquet")}

    assert datasets.get_dataset_config_names("jprefs-test/pairs-ja") == ["pairs", "binary"]
    dd = datasets.load_dataset("jprefs-test/pairs-ja", "pairs")
    assert sorted(dd) == ["test", "train"]
    assert dd["train"].to_list() == pairs["train"] and dd["test"].to_list() == pairs["test"]
    train = datasets.load_dataset("jprefs-test/pairs-ja", "binary", split="train")
    assert train.to_list() == binary and train.features["label"].dtype == "bool"
    assert datasets.load_dataset("jprefs-test/pairs-ja", "pairs", revision=head.id, split="test").to_list() \
        == pairs["test"]
    # offline, datasets reloads what it cached
    hub_offline()
    seen = len(fake_hub.requests)
    assert datasets.load_dataset("jprefs-test/pairs-ja", "binary", split="train").to_list() == binary
    assert len(fake_hub.requests) == seen


@pytest.mark.parametrize("run", ["first", "again"])  # "again": a fresh hub, same repo id, after transformers
def test_transformers_from_pretrained_reads_a_pushed_tiny_model(run, fake_hub, hub_offline, tmp_path,
                                                                 one_torch_thread):  # kept its HfApi
    import torch
    from huggingface_hub import HfApi
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16, num_labels=1)
    local = tmp_path / "rm"
    BertForSequenceClassification(cfg).eval().save_pretrained(local)
    api = HfApi()
    api.create_repo("jprefs-test/bert-rm")
    api.upload_folder(repo_id="jprefs-test/bert-rm", folder_path=local)
    ids = torch.tensor([[2, 5, 7, 3, 9]])
    want = AutoModelForSequenceClassification.from_pretrained(local).eval()(input_ids=ids).logits
    n = len(fake_hub.requests)
    got = AutoModelForSequenceClassification.from_pretrained("jprefs-test/bert-rm").eval()(input_ids=ids).logits
    assert torch.equal(got, want)
    # transformers resolved "main" through its shared HfApi against THIS server (not a stale port)
    assert "GET /api/models/jprefs-test/bert-rm" in fake_hub.requests[n:]
    hub_offline()  # cached now: loads with no server round trip
    seen = len(fake_hub.requests)
    cached = AutoModelForSequenceClassification.from_pretrained("jprefs-test/bert-rm").eval()(input_ids=ids).logits
    assert torch.equal(cached, want) and len(fake_hub.requests) == seen


def test_hub_env_points_a_subprocess_at_the_server(fake_hub, tmp_path):
    """What a test of the jprefs CLI in a subprocess does: env vars only, nothing patched."""
    import subprocess
    import sys

    from tests.hub.fakehub import hub_env

    script = (
        "from huggingface_hub import HfApi, hf_hub_download\n"
        "api = HfApi()\n"
        "api.create_repo('jprefs-test/from-child', repo_type='dataset')\n"
        "api.upload_file(path_or_fileobj=b'child\\n', path_in_repo='c.txt', repo_id='jprefs-test/from-child',"
        " repo_type='dataset')\n"
        "print(open(hf_hub_download('jprefs-test/from-child', 'c.txt', repo_type='dataset')).read(), end='')\n"
    )
    home = tmp_path / "child_home"
    with hub_env(fake_hub, home=home):
        out = subprocess.run([sys.executable, "-c", script], env=os.environ, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "child\n"
    assert fake_hub.commits("jprefs-test/from-child", "dataset")[-1].changed == ["c.txt"]
    assert any((home / "hub").glob("datasets--jprefs-test--from-child/snapshots/*/c.txt"))
    assert fake_hub.token not in out.stdout + out.stderr
