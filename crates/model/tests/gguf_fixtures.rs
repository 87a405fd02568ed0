//! Real converter output (tests/fixtures/<name>/, written by llama.cpp's convert_hf_to_gguf.py
//! from the tiny HF checkpoints beside them): the spec we derive from GGUF metadata must match
//! the HF config.json, and tensors we map must equal the HF tensors they come from.
//! Fixtures not present in this checkout are skipped (with a note on stderr).

use mixture_model::gguf;
use mixture_model::spec::{Gating, RopeScaling, RopeStyle};
use mixture_model::{Arch, LoadedModel};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn cfg<'a>(c: &'a Json, keys: &[&str]) -> Option<&'a Json> {
    keys.iter().find_map(|k| {
        c.get(*k)
            .or_else(|| c.get("rope_parameters").and_then(|r| r.get(*k)))
            .filter(|v| !v.is_null())
    })
}

fn cfg_usize(c: &Json, keys: &[&str]) -> Option<usize> {
    cfg(c, keys).and_then(Json::as_u64).map(|v| v as usize)
}

fn cfg_f64(c: &Json, keys: &[&str]) -> Option<f64> {
    cfg(c, keys).and_then(Json::as_f64)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1e-6)
}

/// All HF tensors of a fixture as f32.
fn hf_tensors(dir: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            let data = view.data();
            let vals: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                _ => continue,
            };
            out.insert(name.to_string(), (view.shape().to_vec(), vals));
        }
    }
    out
}

/// HF names a canonical tensor comes from, unchanged by the converter (no permutation).
fn hf_candidates(canonical: &str) -> Vec<String> {
    let parts: Vec<&str> = canonical.split('.').collect();
    match parts.as_slice() {
        ["token_embd", "weight"] => vec!["model.embed_tokens.weight".into()],
        ["output_norm", "weight"] => vec!["model.norm.weight".into()],
        ["output", "weight"] => vec!["lm_head.weight".into()],
        ["blk", l, "exp", e, mat, "weight"] => {
            let (mixtral, hf) = match *mat {
                "ffn_gate" => ("w1", "gate_proj"),
                "ffn_up" => ("w3", "up_proj"),
                _ => ("w2", "down_proj"),
            };
            vec![
                format!("model.layers.{l}.block_sparse_moe.experts.{e}.{mixtral}.weight"),
                format!("model.layers.{l}.mlp.experts.{e}.{hf}.weight"),
            ]
        }
        ["blk", l, name, kind] => {
            let hf = match *name {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "attn_kv_a_norm" => "self_attn.kv_a_layernorm",
                "attn_q_a_norm" => "self_attn.q_a_layernorm",
                "attn_q_a" => "self_attn.q_a_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                "ffn_gate_shexp" => "mlp.shared_experts.gate_proj",
                "ffn_up_shexp" => "mlp.shared_experts.up_proj",
                "ffn_down_shexp" => "mlp.shared_experts.down_proj",
                "exp_probs_b" => "mlp.gate.e_score_correction_bias",
                "ffn_gate_inp" => {
                    return vec![
                        format!("model.layers.{l}.block_sparse_moe.gate.weight"),
                        format!("model.layers.{l}.mlp.gate.weight"),
                    ]
                }
                _ => return vec![],
            };
            let kind = if *name == "exp_probs_b" { "" } else { kind };
            if kind.is_empty() {
                vec![format!("model.layers.{l}.{hf}")]
            } else {
                vec![format!("model.layers.{l}.{hf}.{kind}")]
            }
        }
        _ => vec![],
    }
}

fn check_spec(name: &str, m: &LoadedModel, c: &Json) {
    let hp = &m.spec.hparams;
    let model_type = c["model_type"].as_str().unwrap_or("");
    let expected_arch = match model_type {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3_moe" => Arch::Qwen3Moe,
        "mixtral" => Arch::Mixtral,
        "deepseek_v2" | "deepseek_v3" => Arch::Deepseek2,
        other => panic!("{name}: unexpected model_type {other}"),
    };
    assert_eq!(m.spec.arch, expected_arch, "{name}");
    let eq = |what: &str, ours: usize, keys: &[&str]| {
        if let Some(v) = cfg_usize(c, keys) {
            assert_eq!(ours, v, "{name}: {what}");
        }
    };
    eq("vocab", hp.vocab_size, &["vocab_size"]);
    eq("hidden", hp.hidden, &["hidden_size"]);
    eq("layers", hp.n_layers, &["num_hidden_layers"]);
    eq("heads", hp.n_heads, &["num_attention_heads"]);
    eq("context", hp.context_length, &["max_position_embeddings"]);
    let rope_theta = cfg_f64(c, &["rope_theta"]).unwrap_or(10000.0);
    assert!(
        close(hp.rope.theta as f64, rope_theta),
        "{name}: rope theta"
    );
    let eps = cfg_f64(c, &["rms_norm_eps"]).unwrap();
    assert!(
        close(hp.rms_eps as f64, eps),
        "{name}: eps {} vs {eps}",
        hp.rms_eps
    );
    assert_eq!(
        hp.rope.style,
        match expected_arch {
            Arch::Qwen2 | Arch::Qwen3Moe => RopeStyle::Neox,
            _ => RopeStyle::Interleaved,
        }
    );
    if expected_arch != Arch::Deepseek2 {
        eq("kv heads", hp.n_kv_heads, &["num_key_value_heads"]);
        eq("head dim", hp.head_dim, &["head_dim"]);
        if cfg(c, &["head_dim"]).is_none() {
            assert_eq!(hp.head_dim, hp.hidden / hp.n_heads, "{name}");
        }
        eq("ffn", hp.ffn_hidden, &["intermediate_size"]);
        assert_eq!(hp.rope.dims, hp.head_dim, "{name}: rope dims");
    } else {
        let mla = hp.mla.as_ref().expect("deepseek has MLA");
        eq("kv_lora", mla.kv_lora_rank, &["kv_lora_rank"]);
        eq("qk_nope", mla.qk_nope_dim, &["qk_nope_head_dim"]);
        eq("qk_rope", mla.qk_rope_dim, &["qk_rope_head_dim"]);
        eq("v_head", mla.v_head_dim, &["v_head_dim"]);
        assert_eq!(mla.q_lora_rank, cfg_usize(c, &["q_lora_rank"]), "{name}");
        assert_eq!(hp.rope.dims, mla.qk_rope_dim);
        assert_eq!(hp.head_dim, mla.qk_nope_dim + mla.qk_rope_dim);
        // HF's num_key_value_heads (the converter writes 1 for the absorbed form).
        eq("kv heads", hp.n_kv_heads, &["num_key_value_heads"]);
        eq("dense ffn", hp.ffn_hidden, &["intermediate_size"]);
    }
    match &hp.moe {
        None => assert!(
            cfg(c, &["num_local_experts", "num_experts", "n_routed_experts"]).is_none(),
            "{name}: MoE config but no MoE spec"
        ),
        Some(moe) => {
            eq(
                "experts",
                moe.n_experts,
                &["num_local_experts", "num_experts", "n_routed_experts"],
            );
            eq("experts used", moe.n_experts_used, &["num_experts_per_tok"]);
            eq(
                "expert ffn",
                moe.expert_ffn,
                &["moe_intermediate_size", "intermediate_size"],
            );
            eq("shared", moe.n_shared, &["n_shared_experts"]);
            eq("groups", moe.n_group, &["n_group"]);
            eq("topk groups", moe.topk_group, &["topk_group"]);
            eq("first dense", moe.first_dense, &["first_k_dense_replace"]);
            if let Some(n) = cfg(c, &["norm_topk_prob"]).and_then(Json::as_bool) {
                assert_eq!(moe.norm_topk, n, "{name}: norm_topk");
            }
            if let Some(s) = cfg_f64(c, &["routed_scaling_factor"]) {
                assert!(close(moe.routed_scale as f64, s), "{name}: routed scale");
            }
            let sigmoid = cfg(c, &["scoring_func"]).and_then(Json::as_str) == Some("sigmoid");
            assert_eq!(
                moe.gating,
                if sigmoid {
                    Gating::Sigmoid
                } else {
                    Gating::Softmax
                },
                "{name}: gating"
            );
        }
    }
    let scaling = c.get("rope_scaling").filter(|v| !v.is_null()).or_else(|| {
        c.get("rope_parameters")
            .filter(|r| r.get("factor").is_some())
    });
    match (scaling, &hp.rope.scaling) {
        (None, RopeScaling::None) => {}
        (
            Some(s),
            RopeScaling::Yarn {
                factor,
                original_context,
                mscale,
                mscale_all_dim,
                beta_fast,
                beta_slow,
            },
        ) => {
            let f = |k: &str| s.get(k).and_then(Json::as_f64);
            assert!(
                close(*factor as f64, f("factor").unwrap()),
                "{name}: factor"
            );
            assert_eq!(
                Some(*original_context as f64),
                f("original_max_position_embeddings"),
                "{name}"
            );
            assert!(close(*beta_fast as f64, f("beta_fast").unwrap_or(32.0)));
            assert!(close(*beta_slow as f64, f("beta_slow").unwrap_or(1.0)));
            let all = f("mscale_all_dim").unwrap_or(0.0);
            assert!(
                (*mscale_all_dim as f64 - all).abs() < 1e-5,
                "{name}: mscale_all_dim"
            );
            // GGUF does not carry HF's `mscale`; we follow llama.cpp (mscale = mscale_all_dim),
            // which is exact when the config has them equal.
            if let Some(ms) = f("mscale") {
                if all != 0.0 && (ms - all).abs() < 1e-9 {
                    assert!((*mscale as f64 - ms).abs() < 1e-5, "{name}: mscale");
                }
            }
        }
        // Llama 3 scaling is not metadata in GGUF: the converter writes per-frequency factors
        // as `rope_freqs.weight`, which the architecture divides the frequencies by.
        (Some(s), RopeScaling::None)
            if s.get("rope_type").and_then(Json::as_str) == Some("llama3") =>
        {
            check_llama3_rope_freqs(name, m, s);
        }
        (s, ours) => panic!("{name}: rope scaling {s:?} vs ours {ours:?}"),
    }
    let bos = cfg_usize(c, &["bos_token_id"]).map(|v| v as u32);
    if bos.is_some() {
        assert_eq!(m.spec.bos_token_id, bos, "{name}: bos");
    }
}

/// `rope_freqs` must hold the Llama 3 factors computed from the HF config.
fn check_llama3_rope_freqs(name: &str, m: &LoadedModel, s: &Json) {
    let f = |k: &str| s.get(k).and_then(Json::as_f64).unwrap();
    let (factor, low, high, old) = (
        f("factor"),
        f("low_freq_factor"),
        f("high_freq_factor"),
        f("original_max_position_embeddings"),
    );
    let hp = &m.spec.hparams;
    let dims = hp.rope.dims;
    let got = m.weights.get_f32("rope_freqs.weight", dims / 2).unwrap();
    for (i, g) in got.iter().enumerate() {
        let freq = 1.0 / (hp.rope.theta as f64).powf(2.0 * i as f64 / dims as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let want = if wavelen < old / high {
            1.0
        } else if wavelen > old / low {
            factor
        } else {
            let smooth = (old / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        };
        assert!(
            (*g as f64 - want).abs() < 1e-4 * want,
            "{name}: rope_freqs[{i}] = {g}, llama3 formula gives {want}"
        );
    }
}

fn check_weights(
    name: &str,
    m: &LoadedModel,
    hf: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    c: &Json,
) {
    let mut compared = 0;
    for (canonical, t) in &m.weights.tensors {
        let Some((shape, vals)) = hf_candidates(canonical).iter().find_map(|n| hf.get(n)) else {
            continue;
        };
        assert_eq!(&t.shape, shape, "{name}: {canonical}");
        assert_eq!(&t.to_f32().unwrap(), vals, "{name}: {canonical}");
        compared += 1;
    }
    // MLA: attn_k_b / attn_v_b against HF kv_b_proj.
    if let Some(mla) = &m.spec.hparams.mla {
        let (nh, nope, vd, lora) = (
            m.spec.hparams.n_heads,
            mla.qk_nope_dim,
            mla.v_head_dim,
            mla.kv_lora_rank,
        );
        for l in 0..m.spec.hparams.n_layers {
            let Some((_, kv_b)) = hf.get(&format!("model.layers.{l}.self_attn.kv_b_proj.weight"))
            else {
                continue;
            };
            let k_b = m
                .weights
                .get_shaped(&format!("blk.{l}.attn_k_b.weight"), &[nh, lora, nope])
                .unwrap()
                .to_f32()
                .unwrap();
            let v_b = m
                .weights
                .get_shaped(&format!("blk.{l}.attn_v_b.weight"), &[nh, vd, lora])
                .unwrap()
                .to_f32()
                .unwrap();
            for h in 0..nh {
                let row = |r: usize| &kv_b[(h * (nope + vd) + r) * lora..][..lora];
                for li in 0..lora {
                    for d in 0..nope {
                        assert_eq!(k_b[(h * lora + li) * nope + d], row(d)[li], "{name}: k_b");
                    }
                }
                for j in 0..vd {
                    assert_eq!(
                        &v_b[(h * vd + j) * lora..][..lora],
                        row(nope + j),
                        "{name}: v_b"
                    );
                }
            }
            compared += 2;
        }
    }
    let n_experts =
        cfg_usize(c, &["num_local_experts", "num_experts", "n_routed_experts"]).unwrap_or(0);
    assert!(
        compared >= 3 + n_experts,
        "{name}: compared only {compared} tensors with HF"
    );
    eprintln!("{name}: {compared} tensors equal to HF");
}

#[test]
fn fixtures_match_their_hf_configs() {
    let root = fixtures_root();
    let Ok(entries) = std::fs::read_dir(&root) else {
        eprintln!("no fixtures at {}; skipped", root.display());
        return;
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let f32_path = dir.join("model.f32.gguf");
        let config = dir.join("hf/config.json");
        if !f32_path.is_file() || !config.is_file() {
            eprintln!("{name}: no model.f32.gguf or hf/config.json; skipped");
            continue;
        }
        let c: Json = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let m = gguf::load(&f32_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_spec(&name, &m, &c);
        check_weights(&name, &m, &hf_tensors(&dir.join("hf")), &c);

        // Every other GGUF of the fixture (other types, split sets) gives the same model.
        let mut others: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.ends_with(".gguf") && n != "model.f32.gguf" && !n.contains("-0000")
                    || n.contains("-00001-of-")
            })
            .collect();
        others.sort();
        for p in others {
            let o = gguf::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(o.spec.hparams, m.spec.hparams, "{}", p.display());
            let a: Vec<_> = o.weights.tensors.keys().collect();
            let b: Vec<_> = m.weights.tensors.keys().collect();
            assert_eq!(a, b, "{}", p.display());
            if p.to_string_lossy().contains("-of-") {
                assert!(o.files.len() > 1);
                for (k, t) in &m.weights.tensors {
                    assert_eq!(o.weights.get(k).unwrap().bytes(), t.bytes(), "{k}");
                }
            }
            eprintln!("{name}: {} loads the same model", p.display());
        }
    }
}
