"""GGUF helpers for the fixtures: a readable layout listing and the older DeepSeek-V2 variant."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _gguf():
    import gguf  # gguf-py (same version as llama.cpp's vendored copy)
    return gguf


def _value_repr(field, max_items: int = 8) -> str:
    gguf = _gguf()
    t = field.types
    if not t:
        return "?"
    if t[0] == gguf.GGUFValueType.ARRAY:
        n = len(field.data)
        sub = t[-1].name
        head = field.contents(slice(0, min(n, max_items)))
        more = ", ..." if n > max_items else ""
        return f"[{sub} x {n}] {json.dumps(head, ensure_ascii=True)[1:-1]}{more}"
    v = field.contents()
    if isinstance(v, float):
        v = float(np.float32(v))
    return f"{t[0].name} {json.dumps(v, ensure_ascii=True)}"


def layout(path: Path, with_metadata: bool = True) -> str:
    gguf = _gguf()
    r = gguf.GGUFReader(path)
    lines = [f"== {path.name}  ({path.stat().st_size} bytes, {len(r.tensors)} tensors)"]
    if with_metadata:
        lines.append("-- metadata")
        for k, f in r.fields.items():
            if k.startswith("GGUF."):
                continue
            lines.append(f"{k} = {_value_repr(f)}")
    lines.append("-- tensors: name type shape(ne, GGUF order: row length first)")
    for t in r.tensors:
        shape = [int(x) for x in t.shape]
        lines.append(f"{t.name} {t.tensor_type.name} {shape}")
    return "\n".join(lines)


def write_layout(d: Path, files: list[Path]) -> None:
    """Full listing (metadata + tensors) for each f32 file, tensors only for the others."""
    out = []
    for p in files:
        full = ".f32" in p.name
        out.append(layout(p, with_metadata=full))
        if not full:
            out[-1] += "\n(metadata: same keys as the f32 file, except general.file_type)"
    (d / "gguf_layout.txt").write_text("\n\n".join(out) + "\n")


def write_kvb_variant(src: Path, dst: Path, hf: Path, cfg: dict) -> None:
    """Rewrite a converter-made deepseek2 GGUF in the layout of older files (before llama.cpp
    split kv_b for absorbed MLA): one `blk.N.attn_kv_b.weight` [n_head*(qk_nope+v), kv_lora]
    instead of `attn_k_b` + `attn_v_b`, key_length = qk_nope + qk_rope, value_length = v_head_dim,
    and no `*.key_length_mla` / `*.value_length_mla` keys."""
    gguf = _gguf()
    from safetensors.torch import load_file

    hf_tensors = {}
    for f in sorted(hf.glob("*.safetensors")):
        hf_tensors.update(load_file(f))
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    replaced = {
        f"{arch}.attention.key_length": cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"],
        f"{arch}.attention.value_length": cfg["v_head_dim"],
    }
    dropped = {f"{arch}.attention.key_length_mla", f"{arch}.attention.value_length_mla"}
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or k in dropped:
            continue
        main = f.types[0]
        if k in replaced:
            w.add_key_value(k, replaced[k], main)
        elif main == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), main, sub_type=f.types[-1])
        else:
            w.add_key_value(k, f.contents(), main)
    for t in r.tensors:
        if t.name.endswith("attn_v_b.weight"):
            continue
        if t.name.endswith("attn_k_b.weight"):
            bid = int(t.name.split(".")[1])
            kvb = hf_tensors[f"model.layers.{bid}.self_attn.kv_b_proj.weight"].float().numpy()
            w.add_tensor(f"blk.{bid}.attn_kv_b.weight", np.ascontiguousarray(kvb))
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        data = np.asarray(t.data).reshape([int(x) for x in reversed(t.shape)])
        w.add_tensor(t.name, np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
