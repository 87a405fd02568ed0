#!/usr/bin/env python3
"""Random-weight DeepSeek GGUFs (llama.cpp architecture `deepseek2`) at real sizes, for benchmarks.

    python3 tools/make_deepseek2_gguf.py --preset v2-lite --dtype f16 \
        --out ~/.cache/mixture/bench/deepseek-v2-lite-random.f16.gguf
    python3 tools/make_deepseek2_gguf.py --preset v3-small --out /tmp/v3-small.f16.gguf
    python3 tools/make_deepseek2_gguf.py --preset v3-small --layers 8 --dtype bf16 --out ...

What it writes: the tensor names, shapes, types and metadata keys that llama.cpp's own converter
(`convert_hf_to_gguf.py`, `DeepseekV2Model` in `conversion/deepseek.py` of the vendored
llama.cpp) writes for a DeepSeek-V2/V3 checkpoint, in the current layout where `kv_b_proj` is
split into `attn_k_b` (transposed, per head) and `attn_v_b`. Like the converter with
`--outtype f16|bf16|f32`, every 2-D/3-D weight gets that type except `ffn_gate_inp` (router),
`exp_probs_b` and the norms, which stay F32. The tokenizer is a synthetic byte-level BPE ("gpt2",
pre-tokenizer "gpt-2") with exactly the preset's vocabulary size: the 256 byte tokens, two- and
three-character merges, BOS/EOS at the real model's ids, padding tokens after them. It is a
valid vocabulary, not DeepSeek's: good for llama-bench and our `mixture bench`, meaningless as text.

Weights: N(0, 0.02) from one pre-generated pool (64 Mi values) sliced at random offsets, so each
chunk differs but nothing costs more than a memcpy; norms are 1.0; `exp_probs_b` is 0.
The file is written tensor by tensor in 64 MiB chunks (header, metadata and tensor infos first),
so memory stays well under 1 GB whatever the model size.

Presets (widths from the real DeepSeek-V2-Lite config.json):
  v2-lite   27 layers, hidden 2048, 16 heads, no q_lora, kv_lora_rank 512, qk_nope 128,
            qk_rope 64, v_head 128, 64 routed experts top-6 (n_group 1, topk_group 1),
            2 shared experts, moe intermediate 1408, dense intermediate 10944 (first layer),
            vocab 102400, softmax gating, routed_scaling_factor 1.0, no top-k renormalisation,
            yarn rope (factor 40, original context 4096, mscale_all_dim 0.707), context 163840.
            ~15.7 B parameters: ~31 GB in F16.
  v3-small  the DeepSeek-V3 layout at V2-Lite widths, 4 layers: q_lora_rank 1536 (so llama.cpp
            does not take it for a "Lite" model), sigmoid gating with `exp_probs_b`, n_group 8 /
            topk_group 4, 1 shared expert, routed_scaling_factor 2.5, top-k renormalised, yarn
            with mscale_all_dim 1.0. Same vocab (102400), experts (64, top-6) and FFN widths
            as v2-lite. ~2.2 B parameters (4.5 GB in F16).

`--layers N` overrides the layer count (the first layer stays dense). Caveat from llama.cpp:
a deepseek2 GGUF without q_lora_rank (v2-lite) only loads there with 26 or 27 layers (it infers
"Lite" from the layer count); other counts are fine for v3-small.

Needs numpy and llama.cpp's gguf-py: the copy vendored in the llama-cpp-python sdist
(`tools/fetch_llama_cpp_sdist.sh`, looked for under $MIXTURE_CACHE, default ~/.cache/mixture)
or `LLAMA_CPP_DIR` pointing at a llama.cpp checkout. Time: v2-lite in F16 is bounded by disk
write speed (31 GB).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np


def _find_gguf_py() -> Path:
    cands = []
    if os.environ.get("LLAMA_CPP_DIR"):
        cands.append(Path(os.environ["LLAMA_CPP_DIR"]) / "gguf-py")
    cache = Path(os.environ.get("MIXTURE_CACHE", Path.home() / ".cache" / "mixture"))
    cands += [Path(p) / "vendor" / "llama.cpp" / "gguf-py"
              for p in sorted(glob.glob(str(cache / "llama_cpp_python-*")), reverse=True)]
    for c in cands:
        if (c / "gguf" / "__init__.py").is_file():
            return c
    sys.exit("gguf-py not found: run tools/fetch_llama_cpp_sdist.sh or set LLAMA_CPP_DIR")


sys.path.insert(0, str(_find_gguf_py()))
import gguf  # noqa: E402

PRESETS: dict[str, dict] = {
    "v2-lite": dict(
        name="mixture-bench-deepseek-v2-lite-random",
        n_layer=27, hidden=2048, n_head=16, q_lora_rank=None, kv_lora_rank=512,
        qk_nope=128, qk_rope=64, v_head=128,
        n_expert=64, n_expert_used=6, n_group=1, topk_group=1, n_shared=2,
        moe_ff=1408, dense_ff=10944, first_k_dense=1, vocab=102400,
        gating="softmax", routed_scaling=1.0, norm_topk=False,
        ctx=163840, rope_theta=10000.0, rms_eps=1e-6,
        yarn=dict(factor=40.0, orig_ctx=4096, beta_fast=32.0, beta_slow=1.0, mscale_all_dim=0.707),
        bos=100000, eos=100001, add_bos=True,
    ),
    "v3-small": dict(
        name="mixture-bench-deepseek-v3-small-random",
        n_layer=4, hidden=2048, n_head=16, q_lora_rank=1536, kv_lora_rank=512,
        qk_nope=128, qk_rope=64, v_head=128,
        n_expert=64, n_expert_used=6, n_group=8, topk_group=4, n_shared=1,
        moe_ff=1408, dense_ff=10944, first_k_dense=1, vocab=102400,
        gating="sigmoid", routed_scaling=2.5, norm_topk=True,
        ctx=163840, rope_theta=10000.0, rms_eps=1e-6,
        yarn=dict(factor=40.0, orig_ctx=4096, beta_fast=32.0, beta_slow=1.0, mscale_all_dim=1.0),
        bos=100000, eos=100001, add_bos=True,
    ),
}

DTYPES = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16, 2),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16, 2),
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32, 4),
}
F32 = gguf.GGMLQuantizationType.F32
CHUNK = 32 * 1024 * 1024          # values per write (64 MiB at 2 bytes)
POOL = 64 * 1024 * 1024           # values in the random pool


def tensor_plan(p: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape = reversed GGUF ne, kind) in the converter's order; kind is
    'w' (weight, output dtype), 'f32' (random, kept F32), 'one' (norm) or 'zero'."""
    H, nh = p["hidden"], p["n_head"]
    kv, rope, nope, vh = p["kv_lora_rank"], p["qk_rope"], p["qk_nope"], p["v_head"]
    ne, ff, mff, sh = p["n_expert"], p["dense_ff"], p["moe_ff"], p["n_shared"]
    t: list[tuple[str, tuple[int, ...], str]] = [
        ("output.weight", (p["vocab"], H), "w"),
        ("token_embd.weight", (p["vocab"], H), "w"),
    ]
    for i in range(p["n_layer"]):
        b = f"blk.{i}."
        t.append((b + "attn_norm.weight", (H,), "one"))
        if i < p["first_k_dense"]:
            t += [(b + "ffn_down.weight", (H, ff), "w"),
                  (b + "ffn_gate.weight", (ff, H), "w"),
                  (b + "ffn_up.weight", (ff, H), "w")]
        else:
            t += [(b + "ffn_down_exps.weight", (ne, H, mff), "w"),
                  (b + "ffn_gate_exps.weight", (ne, mff, H), "w"),
                  (b + "ffn_up_exps.weight", (ne, mff, H), "w")]
            if p["gating"] == "sigmoid":
                t.append((b + "exp_probs_b.bias", (ne,), "zero"))
            t += [(b + "ffn_gate_inp.weight", (ne, H), "f32"),
                  (b + "ffn_down_shexp.weight", (H, mff * sh), "w"),
                  (b + "ffn_gate_shexp.weight", (mff * sh, H), "w"),
                  (b + "ffn_up_shexp.weight", (mff * sh, H), "w")]
        t += [(b + "ffn_norm.weight", (H,), "one"),
              (b + "attn_kv_a_norm.weight", (kv,), "one"),
              (b + "attn_kv_a_mqa.weight", (kv + rope, H), "w"),
              (b + "attn_k_b.weight", (nh, kv, nope), "w"),     # ne [nope, kv_lora, n_head]
              (b + "attn_v_b.weight", (nh, vh, kv), "w"),       # ne [kv_lora, v_head, n_head]
              (b + "attn_output.weight", (H, nh * vh), "w")]
        if p["q_lora_rank"]:
            q = p["q_lora_rank"]
            t += [(b + "attn_q_a_norm.weight", (q,), "one"),
                  (b + "attn_q_a.weight", (q, H), "w"),
                  (b + "attn_q_b.weight", (nh * (nope + rope), q), "w")]
        else:
            t.append((b + "attn_q.weight", (nh * (nope + rope), H), "w"))
    t.append(("output_norm.weight", (H,), "one"))
    return t


def byte_unicode() -> list[str]:
    """GPT-2's byte -> printable character table, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def synthetic_vocab(vocab: int, bos: int, eos: int) -> tuple[list[str], list[int], list[str]]:
    """Byte-level BPE vocabulary of exactly `vocab` tokens: bytes, then merged two- and
    three-character tokens up to `bos`, BOS, EOS, then padding tokens."""
    assert 256 < bos < eos < vocab and eos == bos + 1
    chars = byte_unicode()
    tokens, merges = list(chars), []
    seen = set(tokens)
    want = bos - 256
    # two-character tokens (a, b) and then three-character ones (ab, c), each from its merge
    pairs = ((a, b) for a in chars for b in chars)
    for a, b in pairs:
        if len(merges) == want:
            break
        tokens.append(a + b)
        merges.append(f"{a} {b}")
    two = tokens[256:]
    for ab in two:
        for c in chars:
            if len(merges) == want:
                break
            if ab + c in seen:
                continue
            tokens.append(ab + c)
            merges.append(f"{ab} {c}")
        if len(merges) == want:
            break
    assert len(tokens) == bos and len(set(tokens)) == len(tokens)
    types = [gguf.TokenType.NORMAL] * bos
    tokens += ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]
    types += [gguf.TokenType.CONTROL] * 2
    for i in range(eos + 1, vocab):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    return tokens, [int(t) for t in types], merges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="v2-lite")
    ap.add_argument("--layers", type=int, help="override the preset's layer count")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f16")
    ap.add_argument("--out", required=True, help="output .gguf path")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    p = dict(PRESETS[args.preset])
    if args.layers is not None:
        if args.layers < 1:
            sys.exit("--layers must be >= 1")
        p["n_layer"] = args.layers
        p["first_k_dense"] = min(p["first_k_dense"], args.layers)
        p["name"] += f"-{args.layers}L"
    if not p["q_lora_rank"] and p["n_layer"] not in (26, 27):
        print(f"warning: {p['n_layer']} layers without q_lora_rank: llama.cpp will refuse this "
              "file (it infers 'Lite' from 26/27 layers); our engine reads the metadata",
              file=sys.stderr)
    qtype, ftype, wbytes = DTYPES[args.dtype]

    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.DEEPSEEK2])

    plan = tensor_plan(p)
    total_bytes = 0
    for name, shape, kind in plan:
        tt = qtype if kind == "w" else F32
        nbytes = int(np.prod(shape)) * (wbytes if kind == "w" else 4)
        total_bytes += nbytes
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=tt)
    n_total, n_shared_p, n_expert_p, expert_count = w.get_total_parameter_count()

    # metadata, in the order the converter writes it
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(p["name"])
    w.add_size_label(gguf.size_label(n_total, n_shared_p, n_expert_p, expert_count))
    w.add_block_count(p["n_layer"])
    w.add_context_length(p["ctx"])
    w.add_embedding_length(p["hidden"])
    w.add_feed_forward_length(p["dense_ff"])
    w.add_head_count(p["n_head"])
    w.add_head_count_kv(1)  # MLA is written as MQA with one latent "head"
    y = p["yarn"]
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(y["factor"])
    w.add_rope_scaling_orig_ctx_len(y["orig_ctx"])
    w.add_rope_scaling_yarn_beta_fast(y["beta_fast"])
    w.add_rope_scaling_yarn_beta_slow(y["beta_slow"])
    w.add_rope_freq_base(p["rope_theta"])
    w.add_layer_norm_rms_eps(p["rms_eps"])
    w.add_expert_count(p["n_expert"])
    w.add_expert_used_count(p["n_expert_used"])
    w.add_expert_group_count(p["n_group"])
    w.add_expert_group_used_count(p["topk_group"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if p["gating"] == "sigmoid"
                             else gguf.ExpertGatingFuncType.SOFTMAX)
    w.add_file_type(ftype)
    w.add_leading_dense_block_count(p["first_k_dense"])
    w.add_vocab_size(p["vocab"])
    if p["q_lora_rank"]:
        w.add_q_lora_rank(p["q_lora_rank"])
    w.add_kv_lora_rank(p["kv_lora_rank"])
    w.add_key_length(p["kv_lora_rank"] + p["qk_rope"])
    w.add_value_length(p["kv_lora_rank"])
    w.add_key_length_mla(p["qk_nope"] + p["qk_rope"])
    w.add_value_length_mla(p["v_head"])
    w.add_expert_feed_forward_length(p["moe_ff"])
    w.add_expert_shared_count(p["n_shared"])
    w.add_expert_weights_scale(p["routed_scaling"])
    if p["norm_topk"]:
        w.add_expert_weights_norm(True)
    w.add_rope_dimension_count(p["qk_rope"])
    w.add_rope_scaling_yarn_log_mul(0.1 * y["mscale_all_dim"])  # the converter's convention
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types, merges = synthetic_vocab(p["vocab"], p["bos"], p["eos"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(p["bos"])
    w.add_eos_token_id(p["eos"])
    w.add_pad_token_id(p["eos"])
    w.add_add_bos_token(p["add_bos"])
    w.add_add_eos_token(False)

    print(f"{args.preset}: {p['n_layer']} layers, {len(plan)} tensors, {n_total / 1e9:.2f} B "
          f"params, {total_bytes / 1e9:.2f} GB of tensor data -> {out}", file=sys.stderr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None and len(w.fout) == 1
    f = w.fout[0]
    align = w.data_alignment

    rng = np.random.default_rng(args.seed)
    pool32 = (rng.standard_normal(POOL, dtype=np.float32) * np.float32(0.02))
    if args.dtype == "f16":
        pool = pool32.astype(np.float16)
    elif args.dtype == "bf16":
        u = pool32.view(np.uint32)
        pool = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    else:
        pool = pool32
    ones = np.ones(max(s[0] for _, s, k in plan if k == "one"), dtype=np.float32)

    def pad() -> None:
        n = (-f.tell()) % align
        if n:
            f.write(b"\0" * n)

    t0 = time.time()
    done, next_report = 0, 2e9
    pad()
    for idx, (name, shape, kind) in enumerate(plan):
        n = int(np.prod(shape))
        if kind == "one":
            ones[:n].tofile(f)
        elif kind == "zero":
            np.zeros(n, dtype=np.float32).tofile(f)
        else:
            src = pool32 if kind == "f32" else pool
            left = n
            while left:
                k = min(left, CHUNK, POOL // 2)
                off = int(rng.integers(0, POOL - k + 1))
                src[off:off + k].tofile(f)
                left -= k
        done += n * (4 if kind != "w" else wbytes)
        pad()
        if done >= next_report or idx == len(plan) - 1:
            next_report += 2e9
            el = time.time() - t0
            print(f"  {done / 1e9:7.2f} / {total_bytes / 1e9:.2f} GB  {el:6.0f} s "
                  f"({done / 1e6 / max(el, 1e-9):.0f} MB/s)", file=sys.stderr, flush=True)
    f.flush()
    os.fsync(f.fileno())
    w.close()
    print(f"done: {out} ({out.stat().st_size / 1e9:.2f} GB) in {time.time() - t0:.0f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
