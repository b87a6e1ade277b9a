#!/usr/bin/env bash
# The `full` profile for one architecture on one CUDA GPU: its ReLU and its QCFS ANN are trained and evaluated
# side by side, two processes writing into one results folder (rows are merged under a lock). The fast recipe
# starts the QCFS ANN from its trained ReLU twin, so the QCFS process waits for the ReLU one's training (a lock
# on the checkpoint), then trains while the ReLU methods run. Each process is resumable: run the script again
# and it reuses the checkpoints and skips the points already measured.
#
#   tools/full_gpu.sh ARCH DATA_ROOT [OUT]      ARCH: vgg16 or resnet20; OUT defaults to results/full
#   ICSNN_TIME_LIMIT=540 tools/full_gpu.sh ...   stop each process after that many seconds (what it measured stays)
set -euo pipefail
arch=${1:?usage: tools/full_gpu.sh vgg16|resnet20 DATA_ROOT [OUT]}
data=${2:?usage: tools/full_gpu.sh vgg16|resnet20 DATA_ROOT [OUT]}
out=${3:-results/full}
limit=${ICSNN_TIME_LIMIT:-0}  # 0: no limit
python=${PYTHON:-python3}
mkdir -p "$out/logs"
# extract the archive once, before two processes would both try
"$python" -c "import sys; from pathlib import Path; from icsnn_core.data import cache_dir, extract_archive
p = Path(sys.argv[1]); p.is_file() and extract_archive(p, cache_dir())" "$data"
pids=()
for act in relu qcfs; do
  PYTHONUNBUFFERED=1 timeout "$limit" "$python" -m icsnn_core.cli reproduce --profile full --arch "$arch" \
    --activation "$act" --data-root "$data" --out "$out" --device cuda --quiet > "$out/logs/$arch-$act.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit "$status"
