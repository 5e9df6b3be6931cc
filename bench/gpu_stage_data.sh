#!/usr/bin/env bash
# Stage CIFAR-10 onto the device machine in two calls, each carrying under 64 MiB (see bench/gpu_check.sh).
#   here:   bash bench/gpu_stage_data.sh DEST [DATA_DIR]   pack DATA_DIR/cifar-10-batches-py (default ../shared/data)
#           losslessly into DEST/1 (data_batch_1-3) and DEST/2 (data_batch_4-5, test_batch, batches.meta), ~44 MiB
#           each, with bench/cifar_pack.py (a 2-D pixel predictor and rANS; ~35 s on 2 cores, every file decoded
#           and compared before it is written); DEST must be ignored by git (/.gpu_data/ in .git/info/exclude)
#   there:  bash bench/gpu_stage_data.sh --unpack DEST/N   decode one part into $STAGE_DIR/cifar-10-batches-py
#           (default /tmp/maelab_data), each file checked against its original's md5 (~7 s a part); a corrupt
#           part exits 2 and writes nothing
# Needs python3 with numpy ($PYTHON overrides), nothing else: the device's bare image has them.
set -euo pipefail
pack="$(dirname "$0")/cifar_pack.py"
PY="${PYTHON:-python3}"
if [ "${1:-}" = "--unpack" ]; then
  target="${STAGE_DIR:-/tmp/maelab_data}/cifar-10-batches-py"
  "$PY" "$pack" unpack "${2:?usage: gpu_stage_data.sh --unpack PART}" "$target"
  ls "$target"
  exit 0
fi
dest="${1:?usage: gpu_stage_data.sh DEST [DATA_DIR] | --unpack PART}"
src="${2:-../shared/data}/cifar-10-batches-py"
[ -f "$src/test_batch" ] || { echo "no CIFAR-10 in $src"; exit 2; }
"$PY" "$pack" pack "$src" "$dest" --parts 2
du -sh "$dest"/*
