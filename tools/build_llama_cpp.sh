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
# Needs a C/C++ compiler and make; CMake is installed with pip if `cmake` is not on PATH.
# Time: the library alone is several minutes on 2 cores; llama-bench + llama-quantize + llama-cli
# about 15 minutes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MIXTURE_CACHE:-$HOME/.cache/mixture}"
BUILD="$CACHE/llama.cpp-build"
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

# AMX is off: on the Sapphire Rapids VMs we get, the CPU advertises AMX and -march=native enables
# ggml's AMX kernels, but they die with SIGILL (`tilezero` in tinygemm_kernel_amx) when a Q4_1 model
# runs; our engine has no AMX path either, so the build we compare against should not use it.
# Explicit -mno-* flags win over -march=native in GCC and Clang; they are harmless on CPUs without AMX.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
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
