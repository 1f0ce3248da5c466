#!/usr/bin/env bash
# Runs the PyTorch peer benchmark in the best environment PERF-NOTES.md found for it:
#   * no OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: OpenBLAS picks its own AVX-512 kernels (the machine's
#     environment forces Haswell = AVX2, half speed);
#   * the OpenMP build of OpenBLAS, so BLAS and PyTorch share one OpenMP thread pool (Debian's default
#     libblas.so.3 is the pthread build, and two pools fight);
#   * tcmalloc, so large temporaries are not mmap'd and page-faulted afresh every step;
#   * torch.set_num_threads(--threads) inside the script (and OMP_NUM_THREADS to match).
# Usage: bench/run_torch_peer.sh [--threads 2] [--steps 10] [--warmup 3] [--config small]
# It uses every core it is given: on the shared machine, run it under the lock:
#   flock /tmp/sy-build.lock bench/run_torch_peer.sh --threads 2 --steps 10 --warmup 3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
threads=2
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[i]}" == "--threads" && $((i + 1)) -lt ${#args[@]} ]]; then threads="${args[i+1]}"; fi
  if [[ "${args[i]}" == --threads=* ]]; then threads="${args[i]#--threads=}"; fi
done
openmp_blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
for f in "$openmp_blas/libblas.so.3" "$tcmalloc"; do
  [[ -e "$f" ]] || { echo "run_torch_peer.sh: $f not found (apt-get install libopenblas0-openmp libtcmalloc-minimal4)" >&2; exit 2; }
done
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  OMP_NUM_THREADS="$threads" \
  LD_LIBRARY_PATH="$openmp_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  LD_PRELOAD="$tcmalloc" \
  /usr/bin/python3 "$here/torch_moe_bench.py" "$@"
