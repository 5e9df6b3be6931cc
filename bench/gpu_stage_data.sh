#!/usr/bin/env bash
# Stage CIFAR-10 onto the device machine in parts that fit its 64 MiB per call (see bench/gpu_check.sh).
#   here:   bash bench/gpu_stage_data.sh DEST [DATA_DIR]   split DATA_DIR/cifar-10-batches-py (default ../shared/data)
#           into DEST/1, DEST/2, DEST/3 (two 31 MB batch files each; add DEST to .git/info/exclude)
#   there:  bash bench/gpu_stage_data.sh --unpack DEST/N   copy one part into /tmp/maelab_data/cifar-10-batches-py
set -euo pipefail
if [ "${1:-}" = "--unpack" ]; then
  target="${STAGE_DIR:-/tmp/maelab_data}/cifar-10-batches-py"
  mkdir -p "$target" && cp "$2"/* "$target"/ && ls "$target"
  exit 0
fi
dest="${1:?usage: gpu_stage_data.sh DEST [DATA_DIR] | --unpack PART}"
src="${2:-../shared/data}/cifar-10-batches-py"
[ -f "$src/test_batch" ] || { echo "no CIFAR-10 in $src"; exit 2; }
mkdir -p "$dest/1" "$dest/2" "$dest/3"
cp "$src/data_batch_1" "$src/data_batch_2" "$dest/1/"
cp "$src/data_batch_3" "$src/data_batch_4" "$dest/2/"
cp "$src/data_batch_5" "$src/test_batch" "$src/batches.meta" "$dest/3/"
du -sh "$dest"/*
