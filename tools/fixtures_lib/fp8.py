"""DeepSeek-V3's native FP8 checkpoint layout for a tiny model.

Every 2-D linear weight inside the decoder layers (attention projections, dense MLP, shared and
routed experts; not embeddings, norms, the router `mlp.gate.weight` or lm_head) is stored as
float8_e4m3fn `weight` plus float32 `weight_scale_inv` of shape [ceil(out/128), ceil(in/128)],
one value per 128x128 block, with w = q.float() * scale_inv (the block's amax maps to 448).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

BLOCK = 128
FP8_MAX = 448.0
QUANT_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": [BLOCK, BLOCK]}


def is_quantized(name: str, t: torch.Tensor) -> bool:
    return (name.startswith("model.layers.") and name.endswith(".weight") and t.ndim == 2
            and "norm" not in name and not name.endswith("mlp.gate.weight"))


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (q float8_e4m3fn, scale_inv f32 [ceil(r/128), ceil(c/128)], dequantized f32)."""
    w = w.float()
    r, c = w.shape
    br, bc = math.ceil(r / BLOCK), math.ceil(c / BLOCK)
    scale = torch.ones(br, bc, dtype=torch.float32)
    q = torch.empty(r, c, dtype=torch.float8_e4m3fn)
    deq = torch.empty(r, c, dtype=torch.float32)
    for i in range(br):
        for j in range(bc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            amax = float(blk.abs().max())
            s = amax / FP8_MAX if amax > 0 else 1.0
            scale[i, j] = s
            qb = (blk / scale[i, j]).to(torch.float8_e4m3fn)
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = qb
            deq[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = qb.float() * scale[i, j]
    return q, scale, deq


def write_fp8_dir(hf: Path, fp8_dir: Path, deq_dir: Path) -> list[str]:
    """Write `fp8_dir` (the FP8 checkpoint) and `deq_dir` (same model, dequantized, f32)."""
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(hf.glob("*.safetensors")):
        tensors.update(load_file(f))
    q_out: dict[str, torch.Tensor] = {}
    d_out: dict[str, torch.Tensor] = {}
    quantized = []
    for name in sorted(tensors):
        t = tensors[name]
        assert t.ndim <= 2 or not name.startswith("model.layers."), f"fused tensor {name}"
        if is_quantized(name, t):
            q, s, deq = quantize(t)
            q_out[name] = q
            q_out[name.removesuffix(".weight") + ".weight_scale_inv"] = s
            d_out[name] = deq
            quantized.append(name)
        else:
            q_out[name] = t
            d_out[name] = t
    for d, ts in ((fp8_dir, q_out), (deq_dir, d_out)):
        d.mkdir(parents=True)
        for f in hf.iterdir():
            if f.suffix == ".json" and not f.name.startswith("model.safetensors"):
                shutil.copy(f, d / f.name)
        save_file(ts, str(d / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((fp8_dir / "config.json").read_text())
    cfg["quantization_config"] = QUANT_CONFIG
    (fp8_dir / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    return quantized
