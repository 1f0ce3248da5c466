#!/usr/bin/env bash
# Installs every Debian package switchyard needs, and only those that are missing.
# Idempotent: a second run with everything present does no network access and exits quickly.
# Usage: scripts/install-deps.sh          (as root, or with sudo available)
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config git
  # numerics: oneDNN sgemm (OpenMP runtime) is our BLAS; OpenBLAS (OpenMP flavour) for
  # measurement and as the fallback behind the same gemm wrapper
  libdnnl-dev libopenblas-dev libopenblas0-openmp
  # libraries
  libtomlplusplus-dev nlohmann-json3-dev libcli11-dev libfmt-dev libssl-dev
  liblemon-dev  # min-cost flow (NetworkSimplex) for the optimal-assignment oracle
  # data parallelism: `mpirun -np R switchyard train ...` (src/dist/mpi_communicator.h)
  openmpi-bin libopenmpi-dev
  # tokenizer: SentencePiece library (training and encoding) and its CLI tools
  libsentencepiece-dev sentencepiece
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # reference tests and the PyTorch peer benchmark (Debian's python, not a pyenv one)
  python3 python3-numpy python3-torch libtcmalloc-minimal4
  # run reports (scripts/report.py): PNG plots drawn by matplotlib, Agg backend
  python3-matplotlib
  # experiment statistics (scripts/stats.py: t-intervals) and the report's browser test
  python3-scipy chromium
  # lint
  clang-format clang-tidy
  # fuzzing (scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes, and clang's OpenMP
  # (libomp-dev also brings Archer, which ThreadSanitizer needs: scripts/run-sanitizers.sh)
  clang libclang-rt-14-dev libomp-dev
  # corpus text (scripts/corpus/): groff renders man pages; the heavy readers (R, bible-kjv)
  # are installed by scripts/corpus/build_text.py on first use
  groff-base
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2; exit 1
  fi
fi

echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
