#!/usr/bin/env bash
# Fetch the llama-cpp-python sdist from PyPI (it vendors the full llama.cpp source: the
# converter, gguf-py, tokenizer test vocabularies and chat templates), check its sha256, and
# unpack it into the cache. Prints the path of the unpacked `vendor/llama.cpp`.
#
#   tools/fetch_llama_cpp_sdist.sh            # -> $MIXTURE_CACHE/llama_cpp_python-0.3.36/vendor/llama.cpp
#
# MIXTURE_CACHE defaults to ~/.cache/mixture. Needs pip; nothing is installed.
set -euo pipefail
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE="${MIXTURE_CACHE:-$HOME/.cache/mixture}"
DEST="$CACHE/llama_cpp_python-$VERSION"
if [ ! -f "$DEST/.complete" ]; then
  mkdir -p "$CACHE/downloads"
  TARBALL="$CACHE/downloads/llama_cpp_python-$VERSION.tar.gz"
  if [ ! -f "$TARBALL" ]; then
    echo "fetching llama-cpp-python==$VERSION sdist (77 MB)..." >&2
    # Only this package as source; its build requirements may come as wheels.
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$VERSION" -d "$CACHE/downloads" >&2
  fi
  echo "$SHA256  $TARBALL" | sha256sum -c --quiet - >&2
  tar -xzf "$TARBALL" -C "$CACHE"
  touch "$DEST/.complete"
fi
echo "$DEST/vendor/llama.cpp"
