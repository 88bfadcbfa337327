"""The probe's training pairs for a train-rm folder: the pairs of its data file whose prompt is NOT in
``OUT/eval_split.jsonl`` (train-rm holds out by prompt, so these are the pairs the model trained on).

Rows are copied as they are (only rows the data layer reads as pairs; rejected rows are skipped and
counted); prompts are compared with :func:`jprefs.classifiers.data.group_key`, train-rm's split key.

    python bench/probe_train_split.py ../shared/data/ja_mt_bench/ja_mt_bench_turn1_pairs.jsonl \\
        /work/artifacts/rm-ja-mt-bench/eval_split.jsonl /tmp/probe-train.jsonl
    # 862 pairs read (1 rejected rows), 180 held out on 15 prompts: wrote 682 pairs on 62 prompts to /tmp/...
"""

from __future__ import annotations

import argparse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="the JSONL file the reward model was trained on (train-rm's data=)")
    ap.add_argument("eval_split", help="train-rm's OUT/eval_split.jsonl")
    ap.add_argument("out", help="where to write the training pairs (JSONL)")
    args = ap.parse_args()

    from jprefs.classifiers.data import group_key, load_rm_data
    from jprefs.data.io import atomic_write_text

    data = load_rm_data(args.data)
    held = {group_key(p) for p in load_rm_data(args.eval_split).pairs()}
    bad = {r["line"] for r in data.rejects if "line" in r}
    lines = [line for i, line in enumerate(open(args.data, encoding="utf-8"), 1) if i not in bad and line.strip()]
    pairs = data.pairs()
    if len(lines) != len(pairs):
        raise SystemExit(f"{args.data}: {len(lines)} rows but {len(pairs)} pairs (rank lists?); this script copies "
                         f"pair rows only")
    keep = [(line, group_key(p)) for line, p in zip(lines, pairs) if group_key(p) not in held]
    atomic_write_text(args.out, "".join(x if x.endswith("\n") else x + "\n" for x, _ in keep))
    print(f"{len(pairs)} pairs read ({len(data.rejects)} rejected rows), {len(pairs) - len(keep)} held out on "
          f"{len(held)} prompts: wrote {len(keep)} pairs on {len({k for _, k in keep})} prompts to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
