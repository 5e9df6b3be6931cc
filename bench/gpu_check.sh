#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one command, on a lent GPU (device tool `run`, or any CUDA machine).
#
#   bash bench/gpu_check.sh [throughput] [probe] [finetune]      (default: throughput probe)
#
# Runs the project from source (PYTHONPATH=src) with the machine's python3 (torch with CUDA), and writes under
# $OUT (default ./gpu_out): env.txt (GPU, driver, torch), throughput.log/.json (micro, keras, vit_tiny_p4:
# maelab against HF ViTMAE in the same process, bf16, batch 1024; then vit_tiny_p4 pretraining with
# torch.compile on both sides), speedrun.log/.json (time to accuracy; needs CIFAR-10, see below).
# Each stage has a time limit: throughput 150 s + 180 s (compiled), probe 330 s. The device tool stops a
# command at 10 minutes (timeout_s=600), so there run it as two calls on the warm machine:
# `bash bench/gpu_check.sh throughput`, then `bash bench/gpu_check.sh probe` (OUT is emptied between calls).
# The finetune recipe's goal is 15 minutes: it does not fit one such command, so it is a stage of its own for a
# machine without that limit.
#
# Packages. The device image has torch, numpy, transformers, tqdm, pyyaml, tensorboard, safetensors, pillow
# and matplotlib, but not omegaconf. Wheels found in .whl/, shared/wheels/ or bench/wheels/ are installed first
# (into /tmp/site, no index). The lead prepares them here, once, in the repo's root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl omegaconf==2.4.0
#   (omegaconf 2.4.0 needs only PyYAML, which the image has: one 254 kB wheel)
# and names .whl in the run's carry.
#
# Data. CIFAR-10 (178 MB) is over the device tool's 64 MiB per call, so it is staged in /tmp over the first
# calls on the same warm machine (each within 30 s of the last), two batch files a call:
#   bash bench/gpu_stage_data.sh .gpu_data ../shared/data      (here, once: .gpu_data/1, 2, 3, each < 64 MiB;
#                                                               echo /.gpu_data/ >> .git/info/exclude)
#   run carry=[".gpu_data/1"]          command: bash bench/gpu_stage_data.sh --unpack .gpu_data/1
#   run carry=[".gpu_data/2"]          command: bash bench/gpu_stage_data.sh --unpack .gpu_data/2
#   run carry=[".gpu_data/3", ".whl"]  command: bash bench/gpu_stage_data.sh --unpack .gpu_data/3 &&
#                                               bash bench/gpu_check.sh throughput
#   run carry=[".whl"]                 command: bash bench/gpu_check.sh probe
# Without CIFAR-10 (no $MAELAB_DATA_DIR/cifar-10-batches-py and nothing staged) the speedrun stages are skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(throughput probe)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

for dir in .whl shared/wheels bench/wheels; do
  if compgen -G "$dir/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$dir"/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
done
if [ -z "${MAELAB_DATA_DIR:-}" ] && [ -d /tmp/maelab_data/cifar-10-batches-py ]; then
  export MAELAB_DATA_DIR=/tmp/maelab_data
fi

{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import torch, sys
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)
print(torch.cuda.get_device_name(0))"
  "$PY" -c "import transformers as t, omegaconf as o; print('transformers', t.__version__, 'omegaconf', o.__version__)"
  echo "MAELAB_DATA_DIR=${MAELAB_DATA_DIR:-unset}"; echo "stages: ${stages[*]}"; git log --oneline -1 2>/dev/null
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

has_cifar() { [ -n "${MAELAB_DATA_DIR:-}" ] && [ -f "$MAELAB_DATA_DIR/cifar-10-batches-py/test_batch" ]; }

for stage in "${stages[@]}"; do
  case "$stage" in
    throughput)
      timeout 150 "$PY" bench/throughput.py --device cuda --preset micro keras vit_tiny_p4 --batch 1024 \
        --rounds 5 --steps 10 --warmup 3 --hf-attn sdpa --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"
      timeout 180 "$PY" bench/throughput.py --device cuda --preset vit_tiny_p4 --batch 1024 --rounds 5 --steps 10 \
        --warmup 3 --variants pretrain --hf-attn sdpa --compile --json "$OUT/throughput_compiled.json" \
        2>&1 | tee "$OUT/throughput_compiled.log"
      ;;
    probe|finetune)
      if ! has_cifar; then
        echo "speedrun $stage skipped: CIFAR-10 not staged (see the top of this script)" | tee -a "$OUT/speedrun.log"
        continue
      fi
      limit=$([ "$stage" = probe ] && echo 330 || echo 1200)
      timeout "$limit" "$PY" bench/speedrun.py --device cuda --recipe "$stage" --out /tmp/speedrun \
        --json "$OUT/speedrun_$stage.json" 2>&1 | tee -a "$OUT/speedrun.log"
      ;;
    *) echo "unknown stage $stage (throughput, probe, finetune)"; exit 2 ;;
  esac
done
ls -la "$OUT"
