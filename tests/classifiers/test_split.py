"""Held-out splits for train-rm: by prompt (text), optionally widened to near-duplicate clusters."""

from __future__ import annotations

import json

import pytest

from jprefs.classifiers.config import TrainRMConfig
from jprefs.classifiers.data import load_rm_data, near_duplicate_clusters, split_by_group
from jprefs.errors import ConfigError

BASE = ["売上高は前年同期比で増加しました", "営業利益は減少いたしました", "受注高は堅調に推移しました",
        "原材料価格の高騰が続きました", "海外事業は順調に拡大しました", "為替の影響で減益となりました"]


def test_clusters_join_near_copies_transitively_and_keep_others_apart():
    texts = ["当期の売上高は前年同期比で大幅に増加しました",
             "当期の売上高は前年同期比で大幅に増加しました。",          # near copy of 0
             "当期の売上高は前年同期比で大幅に増加しましたが、利益は減少",  # near copy of 1 (chain)
             "厳しい経営環境が続いております"]
    assert near_duplicate_clusters(texts, 0.6) == [0, 0, 0, 3]
    assert near_duplicate_clusters(texts, 0.99) == [0, 1, 2, 3]     # only identical 5-gram sets would join
    assert near_duplicate_clusters([], 0.3) == []


def test_clusters_survive_very_common_ngrams():
    # 200 texts share a frequent 5-gram (not indexed); two of them are near copies through rarer ones
    texts = [f"しました。{i:04d}番目の文章です" for i in range(200)] + ["固有の長い文で重複するもの、しました。",
                                                                        "固有の長い文で重複するもの、しました。!"]
    c = near_duplicate_clusters(texts, 0.5)
    assert c[200] == c[201] and len(set(c)) < len(texts)


def _binary(tmp_path):
    rows = []
    for i, base in enumerate(BASE * 5):             # 30 sentences, each base sentence in 5 variants
        rows.append({"response": base + "。" * (i // len(BASE)) + "（注）" * (i % 2), "label": i % 2})
    f = tmp_path / "b.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_rm_data(f)


def test_near_duplicate_split_never_puts_variants_on_both_sides(tmp_path):
    data = _binary(tmp_path)
    base_of = lambda t: next(b for b in BASE if t.startswith(b))  # noqa: E731
    plain_tr, plain_ev = split_by_group(data, 0.3, 0)
    leaked = {base_of(r.response) for r in plain_ev.records} & {base_of(r.response) for r in plain_tr.records}
    assert leaked                                      # by exact text, variants land on both sides
    tr, ev = split_by_group(data, 0.3, 0, near_duplicates=0.5)
    assert len(tr.records) + len(ev.records) == len(data.records) and ev.records
    assert not ({base_of(r.response) for r in ev.records} & {base_of(r.response) for r in tr.records})
    # deterministic
    again = split_by_group(data, 0.3, 0, near_duplicates=0.5)[1]
    assert [r.response for r in again.records] == [r.response for r in ev.records]


def test_eval_near_duplicates_is_validated():
    with pytest.raises(ConfigError, match="eval_near_duplicates"):
        TrainRMConfig(data="x.tsv", output_dir="o", eval_near_duplicates=1.5).validate()


def test_a_prompt_two_files_share_is_on_one_side_in_both(tmp_path):
    """train-rm splits each file by prompt on its own; a prompt in two files was held out of one and trained
    on in the other (the held-out figures then read a prompt the model had trained on)."""
    from jprefs.data.schema import prompt_key

    def pairs(name, prompts, tag):
        f = tmp_path / name
        f.write_text("".join(json.dumps({"prompt": p, "chosen": f"良い{tag}{i}", "rejected": f"悪い{tag}{i}"},
                                        ensure_ascii=False) + "\n" for i, p in enumerate(prompts)), encoding="utf-8")
        return load_rm_data(f)

    shared = [f"共通の質問{i}" for i in range(12)]
    a = pairs("a.jsonl", shared + [f"Aだけの質問{i}" for i in range(12)], "a")
    b = pairs("b.jsonl", shared[::-1] + [f"Bだけの質問{i}" for i in range(12)], "b")
    leaked_before = 0
    for seed in range(5):
        leaks = []
        for sides in (None, {}):                       # without, then with, the shared placements
            (ta, ea), (tb, eb) = (split_by_group(d, 0.25, seed, sides=sides) for d in (a, b))
            train = {prompt_key(r.prompt) for r in ta.records + tb.records}
            held = {prompt_key(r.prompt) for r in ea.records + eb.records}
            leaks.append(train & held)
            assert len(ta.records) + len(ea.records) == 24 and len(tb.records) + len(eb.records) == 24
        assert not leaks[1], seed
        assert eb.records and ea.records
        leaked_before += bool(leaks[0])
    assert leaked_before                                # split apart, the files disagree about shared prompts
