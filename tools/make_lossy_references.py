#!/usr/bin/env python3
"""Exact transformers references for the lossy GGUF fixtures (bf16, f16, q8_0, ...).

For every fixture tests/fixtures/<name>/ that has hf/, reference.json and model.f32.gguf, and for
every non-f32 GGUF beside them (model.bf16.gguf, model.q8_0.gguf, model.f16.gguf, ...):

  1. read the GGUF with gguf-py's GGUFReader and dequantize every tensor to float32 with
     gguf-py's own `gguf.quants.dequantize`;
  2. map every tensor back to the HF checkpoint tensor(s) it came from, undoing what llama.cpp's
     convert_hf_to_gguf.py did: the converter's own name map (gguf.get_tensor_name_map), the
     rope row permutation of q_proj/k_proj (LlamaModel, also used for Mixtral), experts stacked
     into 3-D ffn_{gate,up,down}_exps (sliced per expert), DeepSeek's kv_b_proj split into
     attn_k_b [n_head, kv_lora, qk_nope] (transposed per head) + attn_v_b [n_head, v, kv_lora],
     `e_score_correction_bias` -> exp_probs_b.bias, a missing output.weight -> token_embd (tied);
  3. write those tensors, under the checkpoint's own names, to a temporary copy of hf/ (same
     config.json; for DeepSeek-V3 the config the GGUF describes, see below) and load it with
     transformers in float32, eager attention -- transformers' own loader turns the per-expert
     checkpoint names into its fused parameters, exactly as it does for hf/;
  4. score reference.json's `ids` and greedy-decode after its `greedy_prompt` with the very
     functions tools/make_fixtures.py used for reference.json (`score`, `greedy`: eos disabled,
     max_new_tokens = len(greedy_ids), checked against a cache-free argmax loop).

Output: tests/fixtures/<name>/reference_lossy.json =
    {"model.q8_0.gguf": {"token_logprobs": [...], "greedy_ids": [...]}, "model.bf16.gguf": ...}
token_logprobs[i] = log p(ids[i+1] | ids[:i+1]), as in reference.json.

DeepSeek-V3 (a yarn `mscale` != `mscale_all_dim`): GGUF cannot carry `mscale` (the converter
writes only yarn_log_multiplier = 0.1*mscale_all_dim), so the GGUF files describe the model with
mscale = mscale_all_dim; reference.json's `reference_gguf` is transformers on that config, and so
are this script's references for those files (the config is patched the same way).

Self-check, mandatory and printed per fixture: the same mapping applied to model.f32.gguf must
give back every tensor of hf/*.safetensors bit for bit (max abs diff 0, no tensor left
unassigned, no GGUF tensor left unused), the model loaded from it must equal the model loaded from
hf/ (every parameter and buffer, diff 0), and its log-probs / greedy ids must reproduce
reference.json's (`reference_gguf` where present) within 1e-5 / exactly. The script stops at the
first failure. It also prints, for information, each lossy file's distance from the f32
reference and from the simulated `reference_<kind>` entries of reference.json if present.

Needs: python3 with torch 2.x, transformers 5.x, safetensors, numpy, and gguf-py. The gguf-py
used is the one vendored with llama.cpp's converter that made the files (LLAMA_CPP_DIR=..., or
the path printed by tools/fetch_llama_cpp_sdist.sh); the installed `gguf` package is the
fallback. CPU only, about a minute on 2 cores.

Run from the repository root:
    python3 tools/make_lossy_references.py                 # every fixture present
    python3 tools/make_lossy_references.py mixtral qwen2   # only these
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = ROOT / "tests" / "fixtures"
LOGPROB_TOL = 1e-5
# tensors the converter generates rather than converts (transformers computes them itself)
GENERATED = {"rope_freqs.weight"}


def _use_vendored_gguf() -> str:
    """Put llama.cpp's vendored gguf-py (the converter's) first on sys.path, if available."""
    d = os.environ.get("LLAMA_CPP_DIR")
    if not d:
        try:
            d = subprocess.run([str(ROOT / "tools" / "fetch_llama_cpp_sdist.sh")], check=True,
                               capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            d = ""
    if d and (Path(d) / "gguf-py" / "gguf").is_dir():
        sys.path.insert(0, str(Path(d) / "gguf-py"))
        return "vendored"
    return "installed"


GGUF_SOURCE = _use_vendored_gguf()
import gguf  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from make_fixtures import score, greedy  # noqa: E402  (exactly how reference.json was made)


# --------------------------------------------------------------------------------------------
# GGUF side
# --------------------------------------------------------------------------------------------
def read_gguf(paths: Path | list[Path]) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(architecture, {name: float32 array in numpy/PyTorch order}, {name: ggml type name});
    several paths = the parts of one split file."""
    arch, out, types = None, {}, {}
    for path in [paths] if isinstance(paths, Path) else paths:
        r = gguf.GGUFReader(path)
        if arch is None:
            arch = r.fields["general.architecture"].contents()
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape)]  # ggml ne order -> row-major order
            a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            out[t.name] = np.ascontiguousarray(a, dtype=np.float32).reshape(shape)
            types[t.name] = t.tensor_type.name
    return arch, out, types


def name_map(arch: str, n_blocks: int) -> gguf.TensorNameMap:
    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    return gguf.get_tensor_name_map(by_name[arch], n_blocks)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of the converter's LlamaModel.permute (rope halves -> interleaved rows)."""
    r = w.shape[0]
    return (w.reshape(n_head, r // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


class Rebuilder:
    """Builds HF checkpoint tensors (names as in hf/*.safetensors) from one GGUF's tensors."""

    def __init__(self, cfg: dict, arch: str, tensors: dict[str, np.ndarray]):
        self.cfg, self.arch, self.t = cfg, arch, tensors
        self.tmap = name_map(arch, cfg["num_hidden_layers"])
        self.used: set[str] = set()
        # the converter's LlamaModel (llama, mixtral) permutes q/k rows for ggml's rope
        self.permute = arch == "llama"

    def gguf_name(self, conv_name: str) -> str:
        n = self.tmap.get_name(conv_name, try_suffixes=(".weight", ".bias"))
        if n is None:
            raise KeyError(f"converter name map has no entry for {conv_name!r}")
        return n

    def get(self, gname: str) -> np.ndarray:
        if gname not in self.t:
            raise KeyError(f"GGUF has no tensor {gname!r}")
        self.used.add(gname)
        return self.t[gname]

    def tensor(self, key: str) -> np.ndarray:
        cfg = self.cfg
        # experts: the converter stacks experts.{x}.{w} into one 3-D tensor per block
        if m := re.match(r"(.*)\.experts\.(\d+)\.(\w+)\.weight$", key):
            prefix, x, w = m.group(1), int(m.group(2)), m.group(3)
            cands = [f"{prefix}.experts.{w}.weight"]
            if bm := re.match(r"model\.layers\.(\d+)\.block_sparse_moe$", prefix):  # Mixtral
                cands.append(f"layers.{bm.group(1)}.feed_forward.experts.{w}.weight")
            for c in cands:
                if (g := self.tmap.get_name(c, try_suffixes=(".weight",))) is not None:
                    return self.get(g)[x]
            raise KeyError(f"no merged-expert name for {key!r} (tried {cands})")
        # DeepSeek MLA: kv_b_proj -> attn_k_b (transposed per head) + attn_v_b
        if key.endswith("kv_b_proj.weight"):
            gk = self.gguf_name(key.replace("kv_b_proj", "k_b_proj"))
            gv = self.gguf_name(key.replace("kv_b_proj", "v_b_proj"))
            if gk in self.t and gv in self.t:
                k_b, v_b = self.get(gk), self.get(gv)  # [h, kv_lora, nope], [h, v, kv_lora]
                h, nope, v = (cfg["num_key_value_heads"], cfg["qk_nope_head_dim"],
                              cfg["v_head_dim"])
                assert k_b.shape[0] == h and k_b.shape[2] == nope and v_b.shape[1] == v
                kvb = np.concatenate([k_b.transpose(0, 2, 1), v_b], axis=1)
                return kvb.reshape(h * (nope + v), k_b.shape[1])
            return self.get(self.gguf_name(key))  # older layout: one attn_kv_b
        conv = key
        if conv.endswith("e_score_correction_bias"):  # converter's filter_tensors rename
            conv = conv.replace("e_score_correction_bias", "e_score_correction.bias")
        g = self.gguf_name(conv)
        if g == "output.weight" and g not in self.t:  # tied: the converter skips lm_head
            g = "token_embd.weight"
        w = self.get(g)
        if self.permute and key.endswith(("q_proj.weight", "q_proj.bias")):
            w = unpermute(w, cfg["num_attention_heads"])
        elif self.permute and key.endswith(("k_proj.weight", "k_proj.bias")):
            w = unpermute(w, cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
        return w

    def unused(self) -> list[str]:
        return sorted(set(self.t) - self.used - GENERATED)


# --------------------------------------------------------------------------------------------
# HF side
# --------------------------------------------------------------------------------------------
def hf_checkpoint(hf: Path) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for f in sorted(hf.glob("*.safetensors")):
        sd.update(load_file(f))
    return {k: v.float() for k, v in sd.items()}


def gguf_config(hf_cfg: dict, ref: dict) -> dict:
    """The config the GGUF files describe: yarn mscale := mscale_all_dim (GGUF has no mscale)."""
    cfg = json.loads(json.dumps(hf_cfg))
    rs = cfg.get("rope_scaling") or {}
    if "mscale" in rs and "mscale_all_dim" in rs and rs["mscale"] != rs["mscale_all_dim"]:
        assert "reference_gguf" in ref, "mscale != mscale_all_dim but no reference_gguf"
        rs["mscale"] = rs["mscale_all_dim"]
    return cfg


def load_model(hf: Path, cfg: dict, tensors: dict[str, torch.Tensor] | None, tmp: Path):
    """transformers float32 / eager model: hf/ with `cfg` and (if given) these checkpoint
    tensors instead of hf/'s weights. Refuses any missing or unexpected key."""
    from transformers import AutoModelForCausalLM
    d = tmp / "model"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    for f in hf.iterdir():
        if f.is_file() and not f.name.startswith("model") and f.name != "config.json":
            shutil.copy(f, d / f.name)  # tokenizer, generation_config
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    if tensors is None:
        tensors = hf_checkpoint(hf)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "model.safetensors"))
    m, info = AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading {hf}: {bad}"
    return m.eval()


def max_diff(a: list[float], b: list[float]) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def dump_json(obj: dict) -> str:
    items = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


def rebuild(path: Path | list[Path], cfg: dict, want: dict[str, torch.Tensor]):
    arch, tensors, types = read_gguf(path)
    label = path.name if isinstance(path, Path) else f"{path[0].name} (+{len(path) - 1} parts)"
    rb = Rebuilder(cfg, arch, tensors)
    out = {}
    for k, ref in want.items():
        w = rb.tensor(k)
        if tuple(w.shape) != tuple(ref.shape):
            raise ValueError(f"{label}: {k} rebuilt as {w.shape}, checkpoint has "
                             f"{tuple(ref.shape)}")
        out[k] = torch.from_numpy(np.array(w, dtype=np.float32, copy=True))
    if unused := rb.unused():
        raise ValueError(f"{label}: GGUF tensors not mapped to any HF tensor: {unused}")
    return arch, out, types


def other_f32_files(d: Path) -> list[list[Path]]:
    """f32 variants besides model.f32.gguf: e.g. model.f32.kvb.gguf, split model.f32-*-of-*."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(d.glob("model.f32*.gguf")):
        if p.name == "model.f32.gguf":
            continue
        key = re.sub(r"-\d{5}-of-\d{5}", "", p.name)
        groups.setdefault(key, []).append(p)
    return list(groups.values())


def lossy_files(d: Path) -> list[Path]:
    fs = []
    for p in sorted(d.glob("model.*.gguf")):
        kind = p.name[len("model."):-len(".gguf")]
        if not kind.startswith("f32"):
            fs.append(p)
    return fs


def process(name: str) -> dict | None:
    d = FIXTURES_DIR / name
    hf, ref_path, f32 = d / "hf", d / "reference.json", d / "model.f32.gguf"
    if not (hf.is_dir() and ref_path.is_file() and f32.is_file()):
        print(f"{name}: skipped (needs hf/, reference.json and model.f32.gguf)")
        return None
    ref = json.loads(ref_path.read_text())
    hf_cfg = json.loads((hf / "config.json").read_text())
    cfg = gguf_config(hf_cfg, ref)
    target = ref.get("reference_gguf", ref)  # what a model with the GGUF's config gives
    target_name = "reference_gguf" if "reference_gguf" in ref else "reference"
    ids, prompt, n_new = ref["ids"], ref["greedy_prompt"], len(ref["greedy_ids"])
    ckpt = hf_checkpoint(hf)

    with tempfile.TemporaryDirectory(prefix=f"lossy-{name}-") as tmp_s:
        tmp = Path(tmp_s)
        # ---- self-check on model.f32.gguf
        arch, rebuilt, _ = rebuild(f32, cfg, ckpt)
        worst = max(float((rebuilt[k] - ckpt[k]).abs().max()) for k in ckpt)
        assert worst == 0.0, f"{name}: f32 GGUF -> HF max abs diff {worst}"
        m_gguf = load_model(hf, cfg, rebuilt, tmp)
        m_hf = load_model(hf, cfg, None, tmp)
        sd_a, sd_b = m_gguf.state_dict(), m_hf.state_dict()
        assert sd_a.keys() == sd_b.keys(), f"{name}: state dict keys differ"
        sd_worst = max(float((sd_a[k].float() - sd_b[k].float()).abs().max()) for k in sd_a)
        assert sd_worst == 0.0, f"{name}: model from f32 GGUF differs from hf/ ({sd_worst})"
        del m_hf
        lps = score(m_gguf, ids)
        g = greedy(m_gguf, prompt, n_new)
        lp_dev = max_diff(lps, target["token_logprobs"])
        assert lp_dev <= LOGPROB_TOL, f"{name}: f32 GGUF log-probs off {target_name} by {lp_dev}"
        assert g == target["greedy_ids"], f"{name}: f32 GGUF greedy {g} != {target['greedy_ids']}"
        print(f"{name} [{arch}]: self-check model.f32.gguf: {len(ckpt)} HF tensors rebuilt, "
              f"max abs diff 0, all GGUF tensors used; {len(sd_a)} model params+buffers equal "
              f"to hf/'s; log-probs vs {target_name} max |d| {lp_dev:.2e} (tol {LOGPROB_TOL}), "
              f"greedy ids equal")
        del m_gguf
        for parts in other_f32_files(d):
            _, rb, _ = rebuild(parts, cfg, ckpt)
            w = max(float((rb[k] - ckpt[k]).abs().max()) for k in ckpt)
            assert w == 0.0, f"{name}: {parts[0].name} -> HF max abs diff {w}"
            print(f"  self-check {', '.join(p.name for p in parts)}: all {len(ckpt)} HF tensors "
                  f"rebuilt exactly, all GGUF tensors used")

        # ---- lossy files
        out = {}
        for p in lossy_files(d):
            _, rebuilt, types = rebuild(p, cfg, ckpt)
            kinds = sorted(set(types.values()))
            changed = sum(int(not torch.equal(rebuilt[k], ckpt[k])) for k in ckpt)
            m = load_model(hf, cfg, rebuilt, tmp)
            lps = score(m, ids)
            g = greedy(m, prompt, n_new)
            del m
            out[p.name] = {"token_logprobs": lps, "greedy_ids": g}
            info = (f"  {p.name}: types {kinds}, {changed}/{len(ckpt)} HF tensors differ from "
                    f"f32; vs {target_name}: max |d logprob| "
                    f"{max_diff(lps, target['token_logprobs']):.3e}, greedy "
                    f"{'same' if g == target['greedy_ids'] else 'DIFFERS'}")
            kind = p.name[len("model."):-len(".gguf")]
            if (sim := ref.get(f"reference_{kind}")) and "token_logprobs" in sim:
                info += (f"; vs simulated reference_{kind}: max |d| "
                         f"{max_diff(lps, sim['token_logprobs']):.3e}, greedy "
                         f"{'same' if g == sim['greedy_ids'] else 'DIFFERS'}")
            print(info)
    if not out:
        print(f"{name}: no lossy GGUF files")
        return None
    (d / "reference_lossy.json").write_text(dump_json(out))
    return out


def main(argv: list[str]) -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    print(f"gguf-py: {GGUF_SOURCE} ({Path(gguf.__file__).parent})")
    names = argv or sorted(p.name for p in FIXTURES_DIR.iterdir() if (p / "hf").is_dir())
    for n in names:
        process(n)


if __name__ == "__main__":
    main(sys.argv[1:])
