#!/usr/bin/env python3
"""Reference vectors for mixture's dequantizers (crates/kernels/tests/dequant_reference.rs).

Needs: Python 3.10+, `pip install gguf numpy torch` (gguf-py provides the quantizers and
dequantizers; torch provides the FP8 E4M3 table). No network access.

Run from the repository root:

    python3 tools/make_dequant_vectors.py            # writes crates/kernels/tests/data/dequant/
    python3 tools/make_dequant_vectors.py --check    # regenerate in memory, compare to the files

For every type it writes two files to crates/kernels/tests/data/dequant/:

    <TYPE>.bin  raw block bytes exactly as they sit in a GGUF tensor
    <TYPE>.f32  little-endian f32 reference values, `gguf.quants.dequantize(<TYPE>.bin)`

Where the blocks come from:
  * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16: gguf-py's own quantizers applied to deterministic
    pseudo-random data (varied per-block scales, one all-zero block, outliers). F16 and BF16 also
    get special values (+-0, +-inf, subnormals, extremes) and raw random 16-bit patterns (which
    include NaNs).
  * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: gguf-py (0.19) cannot quantize K-quants, so these are random
    block bytes with the f16 super-block scales (`d`, `dmin`) overwritten by small finite values;
    gguf-py still dequantizes them. All bit fields (6-bit scales, high bits, masks) are random.
  * Q8_K: gguf-py has neither a quantizer nor a dequantizer for it (it is ggml's intermediate
    type for dot products). Blocks are random int8 quants with a random f32 `d` and consistent
    `bsums`; the reference is computed here with numpy as ggml's `dequantize_row_q8_K`
    defines it: `y = d * (float)q` in f32.
  * F8_E4M3: all 256 byte values in order; the reference is torch's float8_e4m3fn -> float32.

If a built ggml is found (libggml-base.so under ${MIXTURE_CACHE:-~/.cache/mixture}/llama.cpp-build,
or $GGML_BASE_LIB), the script also runs ggml's own `dequantize_row_*` on the same blocks and
reports how many values differ from gguf-py (informational; the committed reference is gguf-py).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
import gguf.quants

OUT_DIR = Path(__file__).resolve().parent.parent / "crates/kernels/tests/data/dequant"
SEED = 20240601

LEGACY_BLOCKS = 8
K_BLOCKS = 4


def f32_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def gguf_dequant(raw: np.ndarray, qtype: T) -> np.ndarray:
    out = gguf.quants.dequantize(raw, qtype)
    return np.asarray(out, dtype=np.float32).reshape(-1)


def legacy_data(rng: np.random.Generator, n_blocks: int, block: int) -> np.ndarray:
    """Deterministic pseudo-random weights with varied per-block scales and a few edge blocks."""
    x = rng.standard_normal((n_blocks, block)).astype(np.float32)
    scales = np.float32(10.0) ** rng.uniform(-3, 1, size=(n_blocks, 1)).astype(np.float32)
    x *= scales
    x[0] = 0.0  # all-zero block: d == 0
    x[1, 5] = 40.0  # one large positive outlier
    x[2, 17] = -40.0  # one large negative outlier
    x[3] = np.abs(x[3])  # all non-negative (min == smallest value, useful for Q4_1 / Q5_1)
    return x


def make_legacy(rng: np.random.Generator, qtype: T) -> tuple[bytes, np.ndarray]:
    block, size = GGML_QUANT_SIZES[qtype]
    x = legacy_data(rng, LEGACY_BLOCKS, block).reshape(1, -1)
    raw = gguf.quants.quantize(x, qtype)
    assert raw.dtype == np.uint8 and raw.size == LEGACY_BLOCKS * size, (qtype, raw.shape)
    return raw.tobytes(), gguf_dequant(raw, qtype)


def make_kquant(rng: np.random.Generator, qtype: T) -> tuple[bytes, np.ndarray]:
    """Random K-quant blocks with sane f16 super-block scales (gguf-py cannot quantize these)."""
    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(K_BLOCKS, size), dtype=np.uint8)
    # Byte offsets of the f16 fields, from ggml-common.h.
    if qtype in (T.Q4_K, T.Q5_K):
        fields = {"d": 0, "dmin": 2}
    elif qtype == T.Q2_K:
        fields = {"d": size - 4, "dmin": size - 2}
    elif qtype in (T.Q3_K, T.Q6_K):
        fields = {"d": size - 2}
    else:
        raise ValueError(qtype)
    for name, off in fields.items():
        mag = np.float32(10.0) ** rng.uniform(-5, -2, size=K_BLOCKS).astype(np.float32)
        sign = np.where(rng.random(K_BLOCKS) < 0.25, -1.0, 1.0).astype(np.float32)
        val = (mag * sign).astype(np.float16)
        if name == "dmin":
            val[1] = 0.0  # one block without an offset
        raw[:, off : off + 2] = val.view(np.uint8).reshape(K_BLOCKS, 2)
    raw = raw.reshape(1, -1)
    return raw.tobytes(), gguf_dequant(raw, qtype)


def make_q8k(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Q8_K blocks: f32 d, 256 int8 quants, 16 int16 bsums (sum of each group of 16 quants)."""
    block, size = GGML_QUANT_SIZES[T.Q8_K]
    blocks = []
    refs = []
    for i in range(K_BLOCKS):
        qs = rng.integers(-127, 128, size=block, dtype=np.int8)
        if i == 0:
            qs[:4] = [-128, 127, 0, -1]
        d = np.float32(rng.uniform(1e-4, 1e-1) * (-1.0 if i == 2 else 1.0))
        bsums = qs.astype(np.int16).reshape(16, 16).sum(axis=1).astype("<i2")
        b = np.array([d], dtype="<f4").tobytes() + qs.tobytes() + bsums.tobytes()
        assert len(b) == size
        blocks.append(b)
        refs.append(np.float32(d) * qs.astype(np.float32))  # ggml: x[i].d * x[i].qs[j]
    return b"".join(blocks), np.concatenate(refs).astype(np.float32)


def make_f16(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    x = (rng.standard_normal(256) * 10.0 ** rng.uniform(-8, 5, size=256)).astype(np.float32)
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, 65504.0, -65504.0, 65520.0, 1e-8, 6e-8, -6e-8, 6.1e-5, 1.0, -2.5],
        dtype=np.float32,
    )
    with np.errstate(over="ignore"):  # values past 65504 are meant to become +-inf
        h = gguf.quants.quantize(np.concatenate([x, specials]), T.F16)
    assert h.dtype == np.float16
    pats = rng.integers(0, 1 << 16, size=243, dtype=np.uint16)
    pats[:6] = [0x7C01, 0xFC01, 0x7E00, 0xFFFF, 0x0001, 0x83FF]  # sNaN, -sNaN, qNaN, -NaN, subnormals
    raw = np.concatenate([h.view(np.uint16), pats]).astype("<u2").view(np.uint8)
    return raw.tobytes(), gguf_dequant(raw.view(np.float16), T.F16)


def make_bf16(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    x = (rng.standard_normal(256) * 10.0 ** rng.uniform(-30, 30, size=256)).astype(np.float32)
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, 3.0e38, 1e-40, -1e-45, 1.0, -2.5, np.nan], dtype=np.float32
    )
    b = gguf.quants.quantize(np.concatenate([x, specials]), T.BF16)
    assert b.dtype == np.uint8
    pats = rng.integers(0, 1 << 16, size=246, dtype=np.uint16)
    pats[:4] = [0x7F81, 0xFF81, 0x7FC0, 0x0001]  # sNaN, -sNaN, qNaN, subnormal
    raw = np.concatenate([b.view(np.uint16), pats]).astype("<u2").view(np.uint8)
    return raw.tobytes(), gguf_dequant(raw, T.BF16)


def make_fp8() -> tuple[bytes, np.ndarray]:
    import torch

    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    vals = codes.view(torch.float8_e4m3fn).to(torch.float32).numpy()
    return bytes(range(256)), vals.astype(np.float32)


def ggml_lib() -> ctypes.CDLL | None:
    cand = os.environ.get("GGML_BASE_LIB")
    if not cand:
        cache = Path(os.environ.get("MIXTURE_CACHE", Path.home() / ".cache/mixture"))
        cand = str(cache / "llama.cpp-build/bin/libggml-base.so")
    if not Path(cand).exists():
        return None
    try:
        return ctypes.CDLL(cand)
    except OSError:
        return None


def ggml_crosscheck(lib: ctypes.CDLL, name: str, raw: bytes, ref: np.ndarray) -> str:
    fn = getattr(lib, "dequantize_row_" + name.lower().replace("_k", "_K"), None)
    if fn is None:
        return "no symbol"
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    src = ctypes.create_string_buffer(raw, len(raw))
    out = np.zeros(ref.size, dtype=np.float32)
    fn(src, out.ctypes.data_as(ctypes.c_void_p), ref.size)
    a, b = out.view(np.uint32).astype(np.int64), ref.view(np.uint32).astype(np.int64)
    diff = int(np.count_nonzero(a != b))
    ulps = int(np.max(np.abs(a - b))) if diff else 0
    return f"ggml differs from gguf-py in {diff}/{ref.size} values (max {ulps} ulp)"


def build() -> dict[str, tuple[bytes, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    out: dict[str, tuple[bytes, np.ndarray]] = {}
    out["F16"] = make_f16(rng)
    out["BF16"] = make_bf16(rng)
    for t in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        out[t.name] = make_legacy(rng, t)
    for t in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        out[t.name] = make_kquant(rng, t)
    out["Q8_K"] = make_q8k(rng)
    out["F8_E4M3"] = make_fp8()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args()

    vectors = build()
    lib = ggml_lib()
    bad = 0
    total = 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, (raw, ref) in vectors.items():
        ref_b = f32_bytes(ref)
        total += len(raw) + len(ref_b)
        note = ""
        if lib is not None and name.startswith("Q"):
            note = "  [" + ggml_crosscheck(lib, name, raw, ref) + "]"
        if args.check:
            same = (OUT_DIR / f"{name}.bin").read_bytes() == raw and (
                OUT_DIR / f"{name}.f32"
            ).read_bytes() == ref_b
            bad += not same
            print(f"{name:8} {'ok' if same else 'DIFFERS'}{note}")
        else:
            (OUT_DIR / f"{name}.bin").write_bytes(raw)
            (OUT_DIR / f"{name}.f32").write_bytes(ref_b)
            print(f"{name:8} {len(raw):6} B blocks, {ref.size:5} values{note}")
    print(f"total {total} bytes in {OUT_DIR}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
