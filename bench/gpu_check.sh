#!/usr/bin/env bash
# The GPU figures of docs/performance.md, in device calls that each produce figures (DEVELOPERS.md).
#
#   bash bench/gpu_check.sh [--dry-run] [--data PART] STAGE...
#
# Stages (each writes its files under $OUT, default ./gpu_out, as soon as it has figures, and appends to
# $OUT/gpu_check.log; the device returns 8 files a call: env.txt, gpu_check.log and the stages' files below).
# Every throughput JSON is rewritten after each warm-up start, after the warm-up and after every round, with
# "complete", "rounds_done", each contender's compile seconds and torch.compile counters (bench/throughput_record.py):
#   throughput  maelab vs HF ViTMAE in the same process, eager, bf16, batch 1024: keras and vit_tiny_p4
#               (throughput.json)
#   smoke       the probe recipe's path end to end on synthetic images in seconds (pretrain with torch.compile,
#               checkpoint, probe): a crash here is found before the long stage (smoke.json, 1 metrics.jsonl)
#   cudagraphs  vit_tiny_p4 pretraining eager, and its whole step compiled (train.compile_scope=step) and replayed
#               as CUDA graphs (train.compile_mode=reduce-overhead), against HF eager (throughput_cudagraphs.json;
#               the row is "failed" unless CUDA graphs ran: no skip, at least one recorded)
#   compiled    the same with the whole step compiled without CUDA graphs (throughput_compiled.json)
#   train       the CLI's training path: maelab pretrain, vit_tiny_p4, aug mae, a linear mask schedule 0 -> 1, the
#               whole step as CUDA graphs, batch 1024, 2 epochs, then --resume for a third (bench/train_smoke.py;
#               CIFAR-10 when staged whole, else synthetic images): train_smoke.json, train_metrics.jsonl
#   probe       the probe speedrun on CIFAR-10, final layer and every block (speedrun_probe.json, and the
#               probe's metrics.jsonl copied to $OUT)
#   finetune    the 15-minute fine-tune speedrun, for a machine without the 10-minute command limit
# --data PART   first decode a packed part of CIFAR-10 (.gpu_data/1 or .gpu_data/2: bench/gpu_stage_data.sh, each
#               file checked by md5; ~7 s a part) into $STAGE_DIR/cifar-10-batches-py (default /tmp/maelab_data),
#               which becomes MAELAB_DATA_DIR once it exists; a corrupt part stops the call (exit 2) before any stage
# --tree-hash   print the hash of src/ and bench/ that env.txt records, and exit (to tell which code ran there)
# --dry-run     the same stages on the CPU in seconds (micro model, synthetic images; the whole step traced by
#               aot_eager instead of built by inductor, so the cudagraphs row runs without CUDA graphs and is
#               failed; the train stage a handful of steps): tests/bench/test_gpu_check.py runs it, so that the
#               script cannot rot.
# Rerunnable: every speedrun and training run writes into a fresh temporary folder; files under $OUT are replaced.
#
# The plan on a lent GPU (device `run`; each call within 30 s of the last, so that the machine stays warm): 12.9
# minutes at most with the machine's start (~1.5 min), the timeouts summed. A call's timeout is its stage's limit
# (the comments at the stages say where each number comes from) + 25 s (the first call: wheel, env.txt) or + 15 s:
#   1. carry [".whl"]  bash bench/gpu_check.sh cudagraphs   timeout_s 265  (~2-4 min; 3 files back)
#   2. carry [".whl"]  bash bench/gpu_check.sh train        timeout_s 255  (~2-3 min; 5 files back)
#   3. carry [".whl"]  bash bench/gpu_check.sh compiled     timeout_s 165  (~1.5-2.5 min; 3 files back)
# The earlier figures (throughput, smoke, probe: 2026-11-30): probe needs CIFAR-10 whole, staged by a window's first
# two calls, one part each (each carry ~48 MiB of the 64: a part ~44 MiB, the tree ~3.5 MB, the wheel; + 15 s each
# to decode the part), probe in the second, on the same warm machine (DEVELOPERS.md):
#   1. carry [".gpu_data/1", ".whl"]  bash bench/gpu_check.sh --data .gpu_data/1 smoke   timeout_s 190
#   2. carry [".gpu_data/2", ".whl"]  bash bench/gpu_check.sh --data .gpu_data/2 probe   timeout_s 450
#   3. carry [".whl"]                 bash bench/gpu_check.sh throughput                 timeout_s 165 (if time is left)
# Prepared here, once, in the repo's root:
#   echo /.whl/ >> .git/info/exclude; echo /.gpu_data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl omegaconf==2.4.0        (the device image lacks omegaconf)
#   bash bench/gpu_stage_data.sh .gpu_data ../shared/data   (CIFAR-10 packed losslessly in two ~44 MiB parts)
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
STAGES="throughput smoke cudagraphs compiled train probe finetune"
files_of() {  # the files a stage leaves under $OUT (the device returns 8 a call, env.txt and the log included)
  case "$1" in smoke|probe) echo 2 ;; train|finetune) echo 3 ;; *) echo 1 ;; esac
}
files=2
for stage in "${stages[@]}"; do  # every stage known before any runs: a typo costs no device minutes
  [[ " $STAGES " == *" $stage "* ]] || { log "unknown stage $stage (${STAGES// /, })"; exit 2; }
  files=$((files + $(files_of "$stage")))
done
[ "$files" -gt 8 ] && log "warning: ${stages[*]} leave $files files under \$OUT; a device call returns 8"
status=0 mult=1; [ "$dry" = 1 ] && mult=4  # a dry run's limits guard against a hang only: 4x, for a loaded CPU

[ "$dry" = 0 ] && source bench/gpu_wheels.sh  # the wheels the bare device image lacks (omegaconf)
STAGE_DIR="${STAGE_DIR:-/tmp/maelab_data}"; export STAGE_DIR  # where --data parts go (bench/gpu_stage_data.sh)
if [ -n "$part" ]; then
  bash bench/gpu_stage_data.sh --unpack "$part" >> "$LOG" 2>&1 ||
    { log "could not unpack $part (corrupt or incomplete: nothing of it staged; see gpu_check.log)"; exit 2; }
fi
if [ -z "${MAELAB_DATA_DIR:-}" ] && [ -d "$STAGE_DIR/cifar-10-batches-py" ]; then
  export MAELAB_DATA_DIR="$STAGE_DIR"
fi
device=cuda; [ "$dry" = 1 ] && device=cpu

{
  date -u; [ "$dry" = 0 ] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -c "import torch, sys
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')
import omegaconf as o; print('omegaconf', o.__version__)
try:
    import transformers as t; print('transformers', t.__version__)
except ImportError: print('transformers: not installed (the HF rows are skipped)')"
  echo "MAELAB_DATA_DIR=${MAELAB_DATA_DIR:-unset} dry_run=$dry part=${part:-none} stages: ${stages[*]}"
  git log --oneline -1 2>/dev/null  # the device copy's .git can be older than its files: the tree hash says
  echo "tree $(tree_hash) (bash bench/gpu_check.sh --tree-hash here gives the same for the same files)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$LOG"

has_cifar() {  # both parts staged (each file written only once its md5 matched): five training batches, test, meta
  [ -n "${MAELAB_DATA_DIR:-}" ] && for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 \
    test_batch batches.meta; do [ -f "$MAELAB_DATA_DIR/cifar-10-batches-py/$f" ] || return 1; done
}
run_stage() {  # run_stage LIMIT_S COMMAND...: the command under a time limit, its output into the log
  local limit=$((${1} * mult)); shift
  log "== $(date -u +%T) $* (limit ${limit} s)"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "== $(date -u +%T) exit $rc"
  [ "$rc" = 0 ] || status=1  # the script's exit status: 1 when a stage failed or met its limit (124)
}
throughput() {  # throughput JSON LIMIT_S EXTRA...
  local json=$1 limit=$2; shift 2
  if [ "$dry" = 1 ]; then
    local extra=(--variants pretrain)  # the stage's own arguments are the GPU's; the dry run keeps to micro
    case "$json" in  # the whole step traced by aot_eager: its path on the CPU in seconds
      throughput_compiled.json) extra=(--variants pretrain whole-step --compile-backend aot_eager) ;;
      throughput_cudagraphs.json) extra=(--variants pretrain whole-step-cudagraphs --compile-backend aot_eager) ;;
    esac
    run_stage 120 "$PY" bench/throughput.py --device cpu --preset micro --batch 32 --rounds 2 --steps 1 \
      --warmup 2 --hf-attn sdpa --json "$OUT/$json" "${extra[@]}"
  else
    run_stage "$limit" "$PY" bench/throughput.py --device cuda --batch 1024 --rounds 5 --steps 10 --warmup 3 \
      --hf-attn sdpa --json "$OUT/$json" "$@"
  fi
}
train_smoke() {  # train_smoke FIRST_S RESUME_S: maelab pretrain, then --resume, each under its own limit
  local first=$1 resume=$2 dir; dir=$(mktemp -d /tmp/train_smoke.XXXXXX)
  # a linear schedule 0 -> 1 over the 3 epochs, one ratio an epoch: 0, 0.5, 1 (K = L - 1, L / 2, then 1 in the
  # resumed epoch: the two sizes the compiled step once specialised, and the K = 1 rebuild under CUDA graphs)
  local args=(aug.preset=mae mask.schedule=linear mask.min=0 mask.max=1 train.progress=false
              train.tensorboard=false)
  if [ "$dry" = 1 ]; then  # the same path in seconds: aot_eager traces the step (inductor's C++ build takes minutes)
    args+=(model.preset=micro data.name=synthetic data.synthetic_train=256 data.synthetic_test=64
           optim.batch_size=64 train.compile=true train.compile_scope=step train.compile_backend=aot_eager
           train.device=cpu train.log_every=2)
  else  # no compile setting: CUDA's default plan, the whole step as CUDA graphs (the run's first line says so);
    # its inductor artifacts come back in compile_cache.bin, to be carried into the next window
    args+=(model.preset=vit_tiny_p4 optim.batch_size=1024 train.device=cuda train.log_every=5
           "train.compile_cache=$OUT/compile_cache.bin")
    if has_cifar; then args+=(data.name=cifar10)
    else args+=(data.name=synthetic data.synthetic_train=20480 data.synthetic_test=1024); fi  # 20 steps an epoch
  fi
  # a cache carried in from the last window (compile_cache.bin in the tree's root) is loaded: a warm start
  [ "$dry" = 0 ] && [ -f compile_cache.bin ] && cp compile_cache.bin "$OUT/compile_cache.bin"
  # the stage's limit: both invocations', SIGTERM-to-SIGKILL grace twice (10 s each), 10 s to start and read
  run_stage $((first + resume + 30)) "$PY" bench/train_smoke.py --run-dir "$dir/run" --json "$OUT/train_smoke.json" \
    --metrics-copy "$OUT/train_metrics.jsonl" --limits $((first * mult)) $((resume * mult)) --grace 10 "${args[@]}"
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

# Stage limits (GPU seconds; measured on an H200 on 2026-11-30 unless "est."): a throughput process starts, builds
# its runs and HF's model and times 5 rounds in ~30 s; a cold inductor build of vit_tiny_p4 took 57 s (the model
# compiled, the smoke's first epoch), a warm one 6 s. The whole step compiled: forward+backward, and the fused AdamW
# update as a second graph, est. 60-120 s each cold (torch 2.13 on the CPU leaves the fused update to eager: one
# build; the JSON's compile.graphs says which on the GPU).
for stage in "${stages[@]}"; do
  case "$stage" in
    throughput) throughput throughput.json 150 --preset keras vit_tiny_p4 --variants pretrain ;;
    cudagraphs)  # ~30 s + two cold builds (est. up to 100 s each) + CUDA-graph recording: the first call of a session
      throughput throughput_cudagraphs.json 240 --preset vit_tiny_p4 --variants pretrain whole-step-cudagraphs ;;
    compiled)  # after cudagraphs on the same machine: its Triton kernels are cached (inductor's graph cache is not:
      # the CUDA-graph setting is in its key), so ~30 s + two builds of est. 30-60 s; cold it may stop at the limit
      throughput throughput_compiled.json 150 --preset vit_tiny_p4 --variants pretrain whole-step ;;
    train)  # first: ~20 s to start and draw the data, a cold build of the aug-mae step (its K dynamic; est. 60-100 s),
      # 2 epochs of 20 steps; the resume: ~20 s to start, the build from the caches (est. 20-40 s), 1 epoch
      train_smoke 135 75 ;;
    smoke)
      speedrun smoke 150 --recipe probe --set data.name=synthetic data.synthetic_train=4096 \
        data.synthetic_test=1024 optim.epochs=2 optim.warmup_epochs=1 probe.epochs=2 probe.layers=all ;;
    probe|finetune)
      if [ "$dry" = 0 ] && ! has_cifar; then
        log "speedrun $stage skipped: CIFAR-10 is not staged whole (--data .gpu_data/1, then 2; see the top)"
        continue
      fi
      limit=$([ "$stage" = probe ] && echo 420 || echo 1200)
      extra=(); [ "$stage" = probe ] && extra=(--set-eval probe.layers=all)
      speedrun "speedrun_$stage" "$limit" --recipe "$stage" "${extra[@]}" ;;
  esac
done
ls -la "$OUT"
left=$(find "$OUT" -maxdepth 1 -type f | wc -l)
[ "$left" -gt 8 ] && log "warning: $left files under \$OUT; a device call returns 8"
exit "$status"
