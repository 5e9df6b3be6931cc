#!/usr/bin/env bash
# One call of a lent GPU window (DEVELOPERS.md): stage a part of CIFAR-10, the speed figures still owed, then an
# ablation suite's next runs until the call's budget, its results packed into $OUT/suite.tgz.
#
#   bash bench/gpu_window.sh [--dry-run] [--data PART] [--figures "STAGE..."] [--suite SUITE.yaml]
#                            [--budget SECONDS] [--workers W] [--seeds N|auto] [--carry ARCHIVE] [--margin SECONDS]
#
# --data PART       decode a packed part of CIFAR-10 (.gpu_data/1 or 2, bench/gpu_stage_data.sh) into $STAGE_DIR
# --figures STAGES  bench/gpu_check.sh's stages first (their files under $OUT, as that script documents)
# --suite FILE      then `maelab ablate FILE --time-budget` into $SUITE_DIR (default /tmp/maelab_suite: it stays
#                   on a warm machine between calls), the budget being what the call has left
# --budget S        the whole call's seconds (default 300): figures, suite and packing; give the call's timeout
#                   less ~30 s for the machine to return the files
# --workers W       runs sharing the GPU at once (default 1; a small model's step leaves most of an H100 idle)
# --seeds N|auto    maelab ablate's --seeds (default: the suite's; auto: a 3-seed pilot, then the planned seeds)
# --carry ARCHIVE   an archive of the suite carried in (the local folder packed: `maelab ablate --out DIR
#                   --archive FILE`); merged into $SUITE_DIR first, so a fresh machine goes on where the last
#                   window stopped (a warm one already holds it: the merge then changes nothing)
# --margin S        seconds kept back at the end for packing (default 30)
# --dry-run         the same on the CPU: gpu_check's dry run, the suite's runs on the CPU (tests/bench/
#                   test_gpu_window.py runs two simulated windows with a merge between them)
# Files back: window.log, suite.tgz (the suite folder without finished runs' checkpoints, TensorBoard, feature
# caches or claims; an unfinished run's checkpoint travels, to resume next window), and the figures' files.
# Here: `maelab ablate --merge gpu_out/suite.tgz --out runs/ablate/<suite>` takes it in (nothing is lost).
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
dry=0 part="" figures="" suite="" budget=300 workers=1 carry="" margin=30 seeds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --data) part="$2"; shift 2 ;;
    --figures) figures="$2"; shift 2 ;;
    --suite) suite="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --seeds) seeds=(--seeds "$2"); shift 2 ;;
    --carry) carry="$2"; shift 2 ;;
    --margin) margin="$2"; shift 2 ;;
    *) echo "gpu_window.sh: unknown argument $1 (see the top of the script)"; exit 2 ;;
  esac
done
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
OUT="${OUT:-$PWD/gpu_out}"; mkdir -p "$OUT"; export OUT
STAGE_DIR="${STAGE_DIR:-/tmp/maelab_data}"; export STAGE_DIR
SUITE_DIR="${SUITE_DIR:-/tmp/maelab_suite}"
LOG="$OUT/window.log"
log() { echo "$(date -u +%T) $*" | tee -a "$LOG"; }
[ -z "$suite" ] || [ -f "$suite" ] || { log "no suite file $suite"; exit 2; }
[ "$dry" = 0 ] && source bench/gpu_wheels.sh
log "window call: dry_run=$dry data=${part:-none} figures=${figures:-none} suite=${suite:-none} budget=${budget}s"

if [ -n "$figures" ]; then  # gpu_check stages the part itself, before its stages
  args=(); [ "$dry" = 1 ] && args+=(--dry-run); [ -n "$part" ] && args+=(--data "$part")
  # shellcheck disable=SC2086  # the stages are words
  bash bench/gpu_check.sh "${args[@]}" $figures >> "$LOG" 2>&1 || log "figures: a stage failed or met its limit"
elif [ -n "$part" ]; then
  bash bench/gpu_stage_data.sh --unpack "$part" >> "$LOG" 2>&1 || { log "could not unpack $part"; exit 2; }
fi
if [ -z "${MAELAB_DATA_DIR:-}" ] && [ -d "$STAGE_DIR/cifar-10-batches-py" ]; then
  export MAELAB_DATA_DIR="$STAGE_DIR"
fi
[ -n "$suite" ] || { log "done (no suite)"; exit 0; }

if [ -n "$carry" ]; then
  if [ -f "$carry" ]; then
    "$PY" -m maelab ablate --merge "$carry" --out "$SUITE_DIR" >> "$LOG" 2>&1 ||
      { log "could not merge $carry into $SUITE_DIR (window.log says why)"; exit 2; }
  else
    log "no $carry: the suite starts from $SUITE_DIR as it is"
  fi
fi
left=$((started + budget - margin - $(date +%s)))
status=0
if [ "$left" -gt 0 ]; then
  log "suite: $suite, ${left}s left for its runs, $workers worker(s)"
  "$PY" -m maelab ablate "$suite" --out "$SUITE_DIR" --time-budget "$left" --workers "$workers" "${seeds[@]}" \
    --archive "$OUT/suite.tgz" >> "$LOG" 2>&1 || status=$?
else
  log "no time left for the suite's runs: packing it as it is"
  "$PY" -m maelab ablate --out "$SUITE_DIR" --archive "$OUT/suite.tgz" >> "$LOG" 2>&1 || status=$?
fi
log "done: exit $status; $(tail -n 1 "$LOG" | cut -c1-200)"
exit "$status"
