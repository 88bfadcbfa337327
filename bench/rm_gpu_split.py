"""Where ``RewardModel.logits``' time goes: encoding (the tokenizer, on CPU) against the whole call, by batch size.

On a GPU the e5-small forward is nearly free, so the tokenizer can be the cost (BENCHMARKS.md, "On a
GPU"). Every chosen and rejected answer of the judged set, the model folder's architecture with seeded
random weights (as ``rm_score_bench.py --model config:DIR``), bf16 then fp32; median of 3 per figure.

    python bench/rm_gpu_split.py cuda [MODEL_DIR] [PAIRS]     # defaults: .gpu/model .gpu/ja_mt_bench_turn1_pairs.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from jprefs.classifiers.data import load_rm_data
    from jprefs.classifiers.reward_model import RewardConfig, RewardModel

    argv = sys.argv[1:] if argv is None else argv
    dev = argv[0] if argv else "cuda"
    src = argv[1] if len(argv) > 1 else ".gpu/model"
    data = argv[2] if len(argv) > 2 else ".gpu/ja_mt_bench_turn1_pairs.jsonl"
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    pairs = load_rm_data(data).pairs()
    prompts = [p.prompt_text for p in pairs for _ in (0, 1)]
    answers = [a for p in pairs for a in (p.chosen, p.rejected)]
    res: dict = {"inputs": len(answers), "device": dev}
    for dt, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(src))
        rm = RewardModel(model.to(device=dev, dtype=dtype), AutoTokenizer.from_pretrained(src),
                         RewardConfig.from_dict(json.loads(Path(src, "jprefs_reward.json").read_text())))
        rm.config.max_length, rm.config.max_prompt_length, rm.config.input = 512, 500, "pair"
        rm.dedupe_inputs = False               # every row through the model: the forward's full cost
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            enc = rm.encode(prompts, answers)
            t.append(time.perf_counter() - t0)
        res["encode_s"], res["tokens"] = statistics.median(t), int(sum(enc.lengths))
        rm.logits(prompts[:64], answers[:64])     # warm-up
        for bs in (32, 64, 128, 256, 512):
            t = []
            for _ in range(3):
                sync()
                t0 = time.perf_counter()
                rm.logits(prompts, answers, batch_size=bs)
                sync()
                t.append(time.perf_counter() - t0)
            res[f"{dt}_b{bs}_s"] = statistics.median(t)
            print(f"{dt} batch {bs}: {res[f'{dt}_b{bs}_s']:.3f} s (encoding alone {res['encode_s']:.3f} s)", flush=True)
        del model, rm
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
