#!/usr/bin/env bash
# Build llama.cpp (the copy vendored in the llama-cpp-python sdist, see
# tools/fetch_llama_cpp_sdist.sh) into $MIXTURE_CACHE/llama.cpp-build, only the targets asked for.
#
#   tools/build_llama_cpp.sh                           # shared library `llama` (for the Python bindings)
#   tools/build_llama_cpp.sh llama-bench llama-quantize
#
# Binaries and shared libraries (libllama.so, libggml*.so) land in $MIXTURE_CACHE/llama.cpp-build/bin;
# the script prints that folder on its last line. Idempotent: a configured build folder is reused
# and make rebuilds nothing that is up to date.
#
# MIXTURE_CACHE defaults to ~/.cache/mixture; MIXTURE_JOBS (default 2) sets the parallelism.
# LLAMA_AMX=1 builds with ggml's AMX kernels instead, into $MIXTURE_CACHE/llama.cpp-build-amx (see
# below; for comparisons on Intel Xeons with AMX, where mixture's prefill uses it).
# Needs a C/C++ compiler and make; CMake is installed with pip if `cmake` is not on PATH.
# Time: the library alone is several minutes on 2 cores; llama-bench + llama-quantize + llama-cli
# about 15 minutes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MIXTURE_CACHE:-$HOME/.cache/mixture}"
BUILD="$CACHE/llama.cpp-build"
if [ "${LLAMA_AMX:-0}" = 1 ]; then
  BUILD="$CACHE/llama.cpp-build-amx"
fi
JOBS="${MIXTURE_JOBS:-2}"
if [ "$#" -eq 0 ]; then
  set -- llama
fi

SRC="$("$HERE/fetch_llama_cpp_sdist.sh")"

if command -v cmake >/dev/null 2>&1; then
  CMAKE="$(command -v cmake)"
else
  if ! python3 -c "import cmake" >/dev/null 2>&1; then
    echo "cmake not found; installing it with pip..." >&2
    python3 -m pip install --quiet cmake >&2
  fi
  CMAKE="$(python3 -c 'import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, "cmake"))')"
fi

# AMX is off by default: on a Sapphire Rapids VM of an earlier session, -march=native enabled ggml's
# AMX kernels and they died with SIGILL (`tilezero` in tinygemm_kernel_amx) when a Q4_1 model ran.
# LLAMA_AMX=1 builds it anyway (ggml's AMX takes plain matmuls of Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K,
# IQ4_XS; not MoE experts, which go through MUL_MAT_ID). On the Xeon VM of 2026-12-07, where Linux
# grants the tile state and mixture's own AMX kernel runs, that build still died: SIGILL on the
# first `tileloadd` of tinygemm_kernel_amx<block_q8_1, block_q4_1> (gdb, llama-bench on SmolLM2
# Q4_1); tileloadd faults so when no tile configuration is loaded. Not dug into further.
# Explicit -mno-* flags win over -march=native in GCC and Clang; they are harmless on CPUs without AMX.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
if [ "${LLAMA_AMX:-0}" = 1 ]; then
  NO_AMX=""
fi
# Configure every time (a few seconds; nothing is rebuilt unless a setting changed).
echo "configuring llama.cpp in $BUILD..." >&2
"$CMAKE" -S "$SRC" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_TOOLS=ON \
  -DGGML_CCACHE=OFF \
  -DCMAKE_C_FLAGS="$NO_AMX" \
  -DCMAKE_CXX_FLAGS="$NO_AMX" >/dev/null

# The compiler's output (tens of thousands of lines of warnings) goes to a log, not the terminal.
LOG="$BUILD/build.log"
echo "building llama.cpp targets: $* (-j$JOBS, log: $LOG)..." >&2
if ! "$CMAKE" --build "$BUILD" --config Release -j"$JOBS" --target "$@" >"$LOG" 2>&1; then
  tail -n 40 "$LOG" >&2
  echo "llama.cpp build failed; full log: $LOG" >&2
  exit 1
fi
echo "$BUILD/bin"
