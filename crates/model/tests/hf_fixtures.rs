//! The Hugging Face fixture directories under tests/fixtures/<name>/hf (tiny random models
//! saved by transformers, see tools/make_fixtures.py): each loads, its spec agrees with its
//! config.json read independently here, every tensor maps to a canonical name, and the
//! architecture builds from it. Fixtures not generated yet are reported and skipped.

use mixture_model::spec::{Gating, RopeScaling, RopeStyle};
use mixture_model::{arch, hf, Arch};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel);
    if p.join("config.json").is_file() {
        Some(p)
    } else {
        eprintln!("skipping: fixture {} not present", p.display());
        None
    }
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn uint(c: &Value, k: &str) -> usize {
    c[k].as_u64().unwrap_or_else(|| panic!("config.json `{k}`")) as usize
}

/// `rope_theta` at top level (hub) or in `rope_parameters` (transformers 5).
fn theta(c: &Value) -> f64 {
    c.get("rope_theta")
        .and_then(Value::as_f64)
        .or_else(|| c["rope_parameters"]["rope_theta"].as_f64())
        .unwrap_or(10000.0)
}

fn check(rel: &str, arch_want: Arch) {
    let Some(dir) = fixture(rel) else { return };
    let c = config(&dir);
    let m = hf::load(&dir).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let s = &m.spec;
    let h = &s.hparams;
    assert_eq!(s.arch, arch_want, "{rel}");
    assert_eq!(s.format, "Hugging Face safetensors");
    assert_eq!(
        s.tokenizer,
        if dir.join("tokenizer.json").is_file() {
            "tokenizer.json"
        } else {
            "none"
        }
    );
    assert_eq!(h.vocab_size, uint(&c, "vocab_size"), "{rel}");
    assert_eq!(h.hidden, uint(&c, "hidden_size"), "{rel}");
    assert_eq!(h.n_layers, uint(&c, "num_hidden_layers"), "{rel}");
    assert_eq!(h.n_heads, uint(&c, "num_attention_heads"), "{rel}");
    let kv = c["num_key_value_heads"]
        .as_u64()
        .map_or(h.n_heads, |v| v as usize);
    assert_eq!(h.n_kv_heads, kv, "{rel}");
    assert_eq!(h.ffn_hidden, uint(&c, "intermediate_size"), "{rel}");
    assert_eq!(
        h.context_length,
        uint(&c, "max_position_embeddings"),
        "{rel}"
    );
    assert_eq!(
        h.rms_eps,
        c["rms_norm_eps"].as_f64().unwrap() as f32,
        "{rel}"
    );
    assert_eq!(h.rope.theta, theta(&c) as f32, "{rel}");
    if let Some(b) = c["bos_token_id"].as_u64() {
        assert_eq!(s.bos_token_id, Some(b as u32), "{rel}");
    }
    if let Some(e) = c["eos_token_id"].as_u64() {
        assert!(s.eos_token_ids.contains(&(e as u32)), "{rel}");
    }
    let scaling = c
        .get("rope_scaling")
        .filter(|v| !v.is_null())
        .or_else(|| c.get("rope_parameters"));
    let kind = scaling.and_then(|s| s.get("rope_type").or_else(|| s.get("type")));
    match kind.and_then(Value::as_str) {
        None | Some("default") => assert_eq!(h.rope.scaling, RopeScaling::None, "{rel}"),
        Some("llama3") => assert!(matches!(h.rope.scaling, RopeScaling::Llama3 { .. })),
        Some("yarn") => assert!(matches!(h.rope.scaling, RopeScaling::Yarn { .. })),
        Some("linear") => assert!(matches!(h.rope.scaling, RopeScaling::Linear { .. })),
        Some(other) => panic!("{rel}: fixture uses rope scaling {other}"),
    }

    match arch_want {
        Arch::Deepseek2 => {
            let mla = h.mla.as_ref().expect("MLA params");
            assert_eq!(mla.kv_lora_rank, uint(&c, "kv_lora_rank"));
            assert_eq!(mla.qk_nope_dim, uint(&c, "qk_nope_head_dim"));
            assert_eq!(mla.qk_rope_dim, uint(&c, "qk_rope_head_dim"));
            assert_eq!(mla.v_head_dim, uint(&c, "v_head_dim"));
            assert_eq!(
                mla.q_lora_rank,
                c["q_lora_rank"].as_u64().map(|v| v as usize)
            );
            assert_eq!(h.rope.dims, mla.qk_rope_dim);
            let interleave = c["rope_interleave"].as_bool().unwrap_or(true);
            assert_eq!(
                h.rope.style,
                if interleave {
                    RopeStyle::Interleaved
                } else {
                    RopeStyle::Neox
                }
            );
            let moe = h.moe.as_ref().expect("MoE params");
            assert_eq!(moe.n_experts, uint(&c, "n_routed_experts"));
            assert_eq!(moe.n_experts_used, uint(&c, "num_experts_per_tok"));
            assert_eq!(moe.expert_ffn, uint(&c, "moe_intermediate_size"));
            assert_eq!(moe.first_dense, uint(&c, "first_k_dense_replace"));
            if let Some(f) = c["scoring_func"].as_str() {
                let g = if f == "sigmoid" {
                    Gating::Sigmoid
                } else {
                    Gating::Softmax
                };
                assert_eq!(moe.gating, g);
            }
            if let Some(f) = c["routed_scaling_factor"].as_f64() {
                assert_eq!(moe.routed_scale, f as f32);
            }
            // kv_b was split for every layer (MTP layers included).
            for l in 0..h.n_layers {
                assert!(m.weights.contains(&format!("blk.{l}.attn_k_b.weight")));
                assert!(m.weights.contains(&format!("blk.{l}.attn_v_b.weight")));
            }
        }
        _ => {
            assert_eq!(h.rope.style, RopeStyle::Neox);
            assert_eq!(h.rope.dims, h.head_dim);
            if let Some(hd) = c["head_dim"].as_u64() {
                assert_eq!(h.head_dim, hd as usize);
            }
        }
    }
    match arch_want {
        Arch::Mixtral => {
            let moe = h.moe.as_ref().unwrap();
            assert_eq!(moe.n_experts, uint(&c, "num_local_experts"));
            assert_eq!(moe.expert_ffn, uint(&c, "intermediate_size"));
        }
        Arch::Qwen3Moe => {
            let moe = h.moe.as_ref().unwrap();
            let n = c["num_experts"]
                .as_u64()
                .or_else(|| c["num_local_experts"].as_u64())
                .unwrap() as usize;
            assert_eq!(moe.n_experts, n);
            assert_eq!(moe.expert_ffn, uint(&c, "moe_intermediate_size"));
            assert_eq!(
                moe.norm_topk,
                c["norm_topk_prob"].as_bool().unwrap_or(false)
            );
        }
        _ => {}
    }
    if let (true, Some(moe)) = (arch_want != Arch::Deepseek2, h.moe.as_ref()) {
        for l in 0..h.n_layers {
            for e in 0..moe.n_experts {
                for p in ["ffn_gate", "ffn_up", "ffn_down"] {
                    let n = format!("blk.{l}.exp.{e}.{p}.weight");
                    assert!(m.weights.contains(&n), "{rel}: {n}");
                }
            }
        }
    }
    if !c["tie_word_embeddings"].as_bool().unwrap_or(false) {
        assert!(
            m.weights.contains("output.weight"),
            "{rel}: untied without output"
        );
    }
    // Nothing left under an HF name.
    for name in m.weights.tensors.keys() {
        assert!(
            !name.starts_with("model.") && !name.starts_with("lm_head"),
            "{rel}: `{name}` was not mapped"
        );
    }
    arch::build(m).unwrap_or_else(|e| panic!("{rel}: build: {e}"));
}

#[test]
fn fixture_llama() {
    check("llama/hf", Arch::Llama);
}

#[test]
fn fixture_qwen2() {
    check("qwen2/hf", Arch::Qwen2);
}

#[test]
fn fixture_qwen3moe() {
    check("qwen3moe/hf", Arch::Qwen3Moe);
}

#[test]
fn fixture_mixtral() {
    check("mixtral/hf", Arch::Mixtral);
}

#[test]
fn fixture_deepseek2() {
    check("deepseek2/hf", Arch::Deepseek2);
}

#[test]
fn fixture_deepseek3() {
    check("deepseek3/hf", Arch::Deepseek2);
}

/// The FP8 variant dequantizes to the same model shape, every FP8 weight to F32.
#[test]
fn fixture_deepseek3_fp8() {
    let Some(dir) = fixture("deepseek3/hf_fp8") else {
        return;
    };
    check("deepseek3/hf_fp8", Arch::Deepseek2);
    let m = hf::load(&dir).unwrap();
    assert!(
        !m.weights.tensors.keys().any(|k| k.ends_with("_scale_inv")),
        "scales are consumed"
    );
    for (k, t) in &m.weights.tensors {
        assert_ne!(t.dtype, mixture_kernels::DType::F8E4M3, "{k} left as FP8");
    }
    // Against the f32 checkpoint it was quantized from: same tensors; each value within the
    // E4M3 rounding bound. With scale = amax / 448 per block, the largest half-step of E4M3
    // (16, between 256 and 448) times the scale is amax / 28.
    let Some(orig_dir) = fixture("deepseek3/hf") else {
        return;
    };
    let orig = hf::load(&orig_dir).unwrap();
    assert_eq!(
        m.weights.tensors.keys().collect::<Vec<_>>(),
        orig.weights.tensors.keys().collect::<Vec<_>>()
    );
    for (k, t) in &orig.weights.tensors {
        let q = m.weights.get(k).unwrap();
        assert_eq!(q.shape, t.shape, "{k}");
        let (a, b) = (t.to_f32().unwrap(), q.to_f32().unwrap());
        // attn_k_b and attn_v_b are two parts of one quantized kv_b_proj: its blocks' amax
        // is the larger of the two.
        let amax_of = |t: &mixture_model::Tensor| {
            t.to_f32().unwrap().iter().fold(0f32, |m, v| m.max(v.abs()))
        };
        let amax = match k
            .strip_suffix("attn_k_b.weight")
            .or(k.strip_suffix("attn_v_b.weight"))
        {
            Some(p) => ["attn_k_b.weight", "attn_v_b.weight"]
                .iter()
                .map(|s| amax_of(orig.weights.get(&format!("{p}{s}")).unwrap()))
                .fold(0f32, f32::max),
            None => amax_of(t),
        };
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= amax / 28.0 + 1e-7,
            "{k}: max error {worst}, amax {amax}"
        );
    }
}
