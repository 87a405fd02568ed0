"""Apply to a transformers model the rounding the converter applies to a GGUF's weights.

The converter (see gguf_layout.txt) stores 1-D tensors (norms, biases, e_score_correction_bias)
and the MoE router (`ffn_gate_inp`) as F32 in every outtype, and every other weight as BF16 / Q8_0.
Q8_0 blocks run along the GGUF row (ne0), which is the HF `in_features` axis for every linear,
except DeepSeek's `attn_k_b`: the converter splits `kv_b_proj` per head into k_b (transposed, so
its rows run along qk_nope) and v_b (rows along kv_lora). Quantization uses gguf-py's own
reference code, the code the converter runs, so the simulated weights are bit-identical.
"""
from __future__ import annotations

import numpy as np
import torch


def _q8_0(w: torch.Tensor) -> torch.Tensor:
    from gguf import quants, GGMLQuantizationType as T
    a = w.detach().float().numpy()
    out = quants.dequantize(quants.quantize(a, T.Q8_0), T.Q8_0)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).reshape(w.shape)


def _bf16(w: torch.Tensor) -> torch.Tensor:
    from gguf import quants, GGMLQuantizationType as T
    a = w.detach().float().numpy()
    out = quants.dequantize(quants.quantize(a, T.BF16), T.BF16)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).reshape(w.shape)


def is_router(name: str) -> bool:
    return name.endswith(".gate.weight")


@torch.no_grad()
def apply(model: torch.nn.Module, kind: str, cfg: dict) -> list[str]:
    """Round `model`'s weights in place as outtype `kind` ("bf16" or "q8_0") would."""
    f = {"bf16": _bf16, "q8_0": _q8_0}[kind]
    done = []
    for name, p in model.named_parameters():
        if p.ndim < 2 or is_router(name):
            continue
        if kind == "q8_0" and name.endswith("kv_b_proj.weight"):
            h = cfg["num_attention_heads"]
            nope, v = cfg["qk_nope_head_dim"], cfg["v_head_dim"]
            kvb = p.view(h, nope + v, p.shape[-1])
            k_b = kvb[:, :nope, :].transpose(1, 2).contiguous()  # [h, kv_lora, nope]
            v_b = kvb[:, nope:, :].contiguous()                  # [h, v, kv_lora]
            kvb[:, :nope, :] = f(k_b).transpose(1, 2)
            kvb[:, nope:, :] = f(v_b)
        else:
            p.copy_(f(p))
        done.append(name)
    return done
