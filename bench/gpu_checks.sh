#!/usr/bin/env bash
# The GPU checks as one prepared run, for a session that is lent a GPU (the `device` tool):
# the three GPU test files, then the scoring benchmark (RewardModel.score vs the transformers
# pipeline, issue 4) in bf16 and in fp32 on the GPU.
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
    [ -f "$model/config.json" ] || { echo "no $model/config.json: give a trained reward-model dir" >&2; exit 2; }
    [ -f "$data" ] || { echo "no $data (set JPREFS_SHARED_DATA)" >&2; exit 2; }
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    mkdir -p .gpu/model
    cp "$model"/{config.json,tokenizer.json,tokenizer_config.json,jprefs_reward.json} .gpu/model/
    cp "$data" .gpu/
    du -sh .gpu
    ;;
run)
    out=${OUT:-/tmp/jprefs-gpu-out}
    mkdir -p "$out"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
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
    ;;
*)
    echo "usage: bash bench/gpu_checks.sh prepare [MODEL_DIR] | run" >&2
    exit 2
    ;;
esac
