#!/usr/bin/env bash
# The GPU figures of docs/performance.md, in three device calls that each produce figures (DEVELOPERS.md).
#
#   bash bench/gpu_check.sh [--dry-run] [--data PART] STAGE...
#
# Stages (each writes its JSON under $OUT, default ./gpu_out, as soon as it has figures, and appends to
# $OUT/gpu_check.log):
#   throughput  maelab vs HF ViTMAE in the same process, eager, bf16, batch 1024: keras and vit_tiny_p4
#               (throughput.json, rewritten after each preset)
#   smoke       the probe recipe's path end to end on synthetic images in seconds (pretrain with torch.compile,
#               checkpoint, probe): a crash here is found before the long stage (smoke.json)
#   compiled    vit_tiny_p4 pretraining eager, with the whole step compiled (train.compile_scope=step) and with
#               it replayed as CUDA graphs (train.compile_mode=reduce-overhead), against HF eager
#               (throughput_compiled.json)
#   probe       the probe speedrun on CIFAR-10, final layer and every block (speedrun_probe.json, and the
#               pretraining's and probe's metrics.jsonl copied to $OUT)
#   finetune    the 15-minute fine-tune speedrun, for a machine without the 10-minute command limit
# --data PART   first copy a staged part of CIFAR-10 (bench/gpu_stage_data.sh) into $STAGE_DIR
#               (default /tmp/maelab_data), which becomes MAELAB_DATA_DIR once it exists
# --tree-hash   print the hash of src/ and bench/ that env.txt records, and exit (to tell which code ran there)
# --dry-run     the same stages on the CPU in seconds (micro model, synthetic images; the compiled stage's whole
#               step traced by aot_eager instead of built by inductor, its CUDA-graph row skipped):
#               tests/bench/test_gpu_check.py runs it so that the script cannot rot.
# Rerunnable: every speedrun writes into a fresh temporary folder; files under $OUT are replaced.
#
# The plan on a lent GPU (device `run`; each call within 30 s of the last, so that the machine stays warm):
#   carry [".gpu_data/1", ".whl"]  bash bench/gpu_check.sh --data .gpu_data/1 throughput smoke   (~3 min)
#   carry [".gpu_data/2", ".whl"]  bash bench/gpu_check.sh --data .gpu_data/2 compiled           (~4 min)
#   carry [".gpu_data/3", ".whl"]  bash bench/gpu_check.sh --data .gpu_data/3 probe              (~6 min)
# Prepared here, once, in the repo's root:
#   echo /.whl/ >> .git/info/exclude; echo /.gpu_data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl omegaconf==2.4.0        (the device image lacks omegaconf)
#   bash bench/gpu_stage_data.sh .gpu_data ../shared/data               (CIFAR-10 in three < 64 MiB parts)
set -uo pipefail
cd "$(dirname "$0")/.."
tree_hash() {  # the code the check runs: src/ and bench/, file by file in a fixed order
  find src bench -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.sh' \) | LC_ALL=C sort | xargs cat | sha1sum |
    cut -c1-12
}
[ "${1:-}" = "--tree-hash" ] && { tree_hash; exit 0; }
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
dry=0 part=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --data) part="$2"; shift 2 ;;
    *) break ;;
  esac
done
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(throughput smoke)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
LOG="$OUT/gpu_check.log"
log() { echo "$*" | tee -a "$LOG"; }

if [ "$dry" = 0 ]; then
  for dir in .whl shared/wheels bench/wheels; do
    if compgen -G "$dir/*.whl" > /dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$dir"/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
  done
fi
STAGE_DIR="${STAGE_DIR:-/tmp/maelab_data}"; export STAGE_DIR  # where --data parts go (bench/gpu_stage_data.sh)
if [ -n "$part" ]; then
  bash bench/gpu_stage_data.sh --unpack "$part" >> "$LOG" 2>&1 || { log "could not unpack $part"; exit 2; }
fi
if [ -z "${MAELAB_DATA_DIR:-}" ] && [ -d "$STAGE_DIR/cifar-10-batches-py" ]; then
  export MAELAB_DATA_DIR="$STAGE_DIR"
fi
device=cuda; [ "$dry" = 1 ] && device=cpu

{
  date -u; [ "$dry" = 0 ] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
  "$PY" -c "import omegaconf as o; print('omegaconf', o.__version__)
try:
    import transformers as t; print('transformers', t.__version__)
except ImportError: print('transformers: not installed (the HF rows are skipped)')"
  echo "MAELAB_DATA_DIR=${MAELAB_DATA_DIR:-unset} dry_run=$dry part=${part:-none} stages: ${stages[*]}"
  git log --oneline -1 2>/dev/null  # the device copy's .git can be older than its files: the tree hash says
  echo "tree $(tree_hash) (bash bench/gpu_check.sh --tree-hash here gives the same for the same files)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$LOG"

has_cifar() {  # every part staged: the five training batches and the test batch
  [ -n "${MAELAB_DATA_DIR:-}" ] && for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 \
    test_batch batches.meta; do [ -f "$MAELAB_DATA_DIR/cifar-10-batches-py/$f" ] || return 1; done
}
run_stage() {  # run_stage LIMIT_S COMMAND...: the command under a time limit, its output into the log
  local limit=$1; shift
  # a dry run's limits guard against a hang only (they size GPU minutes): 4x, for a loaded 2-core CI machine
  [ "$dry" = 1 ] && limit=$((limit * 4))
  log "== $(date -u +%T) $* (limit ${limit} s)"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "== $(date -u +%T) exit $rc"
}
throughput() {  # throughput JSON LIMIT_S EXTRA...
  local json=$1 limit=$2; shift 2
  if [ "$dry" = 1 ]; then
    local extra=(--variants pretrain)  # the stage's own arguments are the GPU's; the dry run keeps to micro
    # the compiled stage's whole step, traced by aot_eager: its path on the CPU in seconds
    [ "$json" = throughput_compiled.json ] && extra=(--variants pretrain whole-step --compile-backend aot_eager)
    run_stage 120 "$PY" bench/throughput.py --device cpu --preset micro --batch 32 --rounds 1 --steps 1 \
      --warmup 1 --hf-attn sdpa --json "$OUT/$json" "${extra[@]}"
  else
    run_stage "$limit" "$PY" bench/throughput.py --device cuda --batch 1024 --rounds 5 --steps 10 --warmup 3 \
      --hf-attn sdpa --json "$OUT/$json" "$@"
  fi
}
speedrun() {  # speedrun NAME LIMIT_S ARGS...: a speedrun in a fresh folder; its JSON and metrics to $OUT
  local name=$1 limit=$2; shift 2
  local dir; dir=$(mktemp -d /tmp/speedrun.XXXXXX)
  [ "$dry" = 1 ] && set -- "$@" --smoke
  run_stage "$limit" "$PY" bench/speedrun.py --device "$device" --out "$dir" --json "$OUT/$name.json" "$@"
  for m in "$dir"/*/metrics.jsonl "$dir"/*/*/metrics.jsonl; do
    [ -f "$m" ] && cp "$m" "$OUT/${name}_$(basename "$(dirname "$m")")_metrics.jsonl"
  done
}

for stage in "${stages[@]}"; do
  case "$stage" in
    throughput) throughput throughput.json 150 --preset keras vit_tiny_p4 --variants pretrain ;;
    compiled)
      throughput throughput_compiled.json 200 --preset vit_tiny_p4 --variants pretrain whole-step \
        whole-step-cudagraphs ;;
    smoke)
      speedrun smoke 150 --recipe probe --set data.name=synthetic data.synthetic_train=4096 \
        data.synthetic_test=1024 optim.epochs=2 optim.warmup_epochs=1 probe.epochs=2 probe.layers=all ;;
    probe|finetune)
      if [ "$dry" = 0 ] && ! has_cifar; then
        log "speedrun $stage skipped: CIFAR-10 is not staged whole (the three --data parts; see the top)"
        continue
      fi
      limit=$([ "$stage" = probe ] && echo 420 || echo 1200)
      extra=(); [ "$stage" = probe ] && extra=(--set-eval probe.layers=all)
      speedrun "speedrun_$stage" "$limit" --recipe "$stage" "${extra[@]}" ;;
    *) log "unknown stage $stage (throughput, smoke, compiled, probe, finetune)"; exit 2 ;;
  esac
done
ls -la "$OUT"
