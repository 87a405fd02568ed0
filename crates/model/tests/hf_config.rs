//! `config.json` parsing for Hugging Face checkpoint directories: the keys real checkpoints
//! use, transformers 5's `rope_parameters`, and clear errors on bad input.

use mixture_model::hf;
use mixture_model::spec::{Gating, RopeScaling, RopeStyle};
use mixture_model::{Arch, ModelError, ModelSpec};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "mixture-hf-config-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn llama_config() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 320,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "intermediate_size": 96,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": null,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": false,
        "bos_token_id": 1,
        "eos_token_id": 2
    })
}

fn deepseek_v3_config() -> Value {
    // Shaped like the hub's DeepSeek-V3 config.json, scaled down.
    json!({
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": 512,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "n_routed_experts": 16,
        "n_shared_experts": 1,
        "num_experts_per_tok": 4,
        "n_group": 4,
        "topk_group": 2,
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid",
        "norm_topk_prob": true,
        "routed_scaling_factor": 2.5,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "q_lora_rank": 48,
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
        "head_dim": 8,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn"
        },
        "max_position_embeddings": 163840,
        "tie_word_embeddings": false,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "quantization_config": {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [128, 128]
        }
    })
}

fn spec_of(cfg: &Value) -> Result<ModelSpec, ModelError> {
    let d = TempDir::new("spec");
    d.write("config.json", &cfg.to_string());
    hf::read_spec(d.path())
}

fn err_of(cfg: &Value) -> String {
    match spec_of(cfg) {
        Ok(s) => panic!("expected an error, got {:?}", s.hparams),
        Err(e) => e.to_string(),
    }
}

#[test]
fn llama_keys_and_defaults() {
    let d = TempDir::new("llama");
    d.write("config.json", &llama_config().to_string());
    d.write(
        "generation_config.json",
        r#"{"bos_token_id": 1, "eos_token_id": [2, 7]}"#,
    );
    let s = hf::read_spec(d.path()).unwrap();
    assert_eq!(s.arch, Arch::Llama);
    assert_eq!(s.format, "Hugging Face safetensors");
    assert_eq!(s.tokenizer, "none");
    assert_eq!(s.name, d.path().file_name().unwrap().to_string_lossy());
    assert_eq!(s.bos_token_id, Some(1));
    assert_eq!(s.eos_token_ids, vec![2, 7]);
    let h = &s.hparams;
    assert_eq!(
        (h.vocab_size, h.hidden, h.n_layers, h.n_heads, h.n_kv_heads),
        (320, 64, 2, 8, 2)
    );
    assert_eq!(h.head_dim, 8, "hidden / heads without head_dim");
    assert_eq!(h.ffn_hidden, 96);
    assert_eq!(h.rms_eps, 1e-5);
    assert_eq!(h.context_length, 2048);
    assert_eq!(h.rope.theta, 500000.0);
    assert_eq!(h.rope.dims, 8);
    assert_eq!(h.rope.style, RopeStyle::Neox);
    assert_eq!(h.rope.scaling, RopeScaling::None);
    assert!(h.moe.is_none() && h.mla.is_none());

    d.write("tokenizer.json", "{}");
    assert_eq!(hf::read_spec(d.path()).unwrap().tokenizer, "tokenizer.json");
}

#[test]
fn defaults_for_absent_keys() {
    let mut c = llama_config();
    let m = c.as_object_mut().unwrap();
    for k in ["num_key_value_heads", "rope_theta", "rope_scaling"] {
        m.remove(k);
    }
    m.insert("head_dim".into(), json!(16));
    let h = spec_of(&c).unwrap().hparams;
    assert_eq!(h.n_kv_heads, 8);
    assert_eq!(h.head_dim, 16);
    assert_eq!(h.rope.dims, 16);
    assert_eq!(h.rope.theta, 10000.0);
}

#[test]
fn rope_scaling_llama3() {
    let mut c = llama_config();
    c["rope_scaling"] = json!({
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
    });
    let h = spec_of(&c).unwrap().hparams;
    assert_eq!(
        h.rope.scaling,
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192
        }
    );
    // Missing a required llama3 key names it.
    c["rope_scaling"]
        .as_object_mut()
        .unwrap()
        .remove("low_freq_factor");
    assert!(err_of(&c).contains("rope_scaling.low_freq_factor"));
}

#[test]
fn rope_scaling_linear_and_default() {
    let mut c = llama_config();
    c["rope_scaling"] = json!({"type": "linear", "factor": 4});
    assert_eq!(
        spec_of(&c).unwrap().hparams.rope.scaling,
        RopeScaling::Linear { factor: 4.0 }
    );
    c["rope_scaling"] = json!({"type": "default"});
    assert_eq!(spec_of(&c).unwrap().hparams.rope.scaling, RopeScaling::None);
    c["rope_scaling"] = json!({"type": "dynamic", "factor": 2.0});
    assert!(err_of(&c).contains("dynamic"));
    c["rope_scaling"] = json!({"factor": 2.0});
    assert!(err_of(&c).contains("rope_scaling"));
}

#[test]
fn deepseek_v3_hub_config() {
    let s = spec_of(&deepseek_v3_config()).unwrap();
    assert_eq!(s.arch, Arch::Deepseek2);
    let h = &s.hparams;
    assert_eq!(
        h.head_dim,
        16 + 8,
        "qk_nope + qk_rope, not the config's head_dim"
    );
    assert_eq!(h.rope.dims, 8);
    assert_eq!(h.rope.style, RopeStyle::Interleaved);
    assert_eq!(
        h.rope.scaling,
        RopeScaling::Yarn {
            factor: 40.0,
            original_context: 4096,
            beta_fast: 32.0,
            beta_slow: 1.0,
            mscale: 1.0,
            mscale_all_dim: 1.0
        }
    );
    let mla = h.mla.as_ref().unwrap();
    assert_eq!(mla.q_lora_rank, Some(48));
    assert_eq!(
        (
            mla.kv_lora_rank,
            mla.qk_nope_dim,
            mla.qk_rope_dim,
            mla.v_head_dim
        ),
        (32, 16, 8, 16)
    );
    let moe = h.moe.as_ref().unwrap();
    assert_eq!(moe.n_experts, 16);
    assert_eq!(moe.n_experts_used, 4);
    assert_eq!(moe.n_shared, 1);
    assert_eq!(moe.expert_ffn, 32);
    assert_eq!(moe.gating, Gating::Sigmoid);
    assert!(moe.norm_topk);
    assert_eq!(moe.routed_scale, 2.5);
    assert_eq!((moe.n_group, moe.topk_group), (4, 2));
    assert_eq!(moe.first_dense, 1);
    assert_eq!(h.ffn_hidden, 128);
}

#[test]
fn deepseek_v3_rope_interleave_false_is_neox() {
    let mut c = deepseek_v3_config();
    c["rope_interleave"] = json!(false);
    assert_eq!(spec_of(&c).unwrap().hparams.rope.style, RopeStyle::Neox);
}

#[test]
fn yarn_defaults_follow_transformers() {
    let mut c = deepseek_v3_config();
    c["rope_scaling"] = json!({"type": "yarn", "factor": 4.0});
    match spec_of(&c).unwrap().hparams.rope.scaling {
        RopeScaling::Yarn {
            factor,
            original_context,
            beta_fast,
            beta_slow,
            mscale,
            mscale_all_dim,
        } => {
            assert_eq!(factor, 4.0);
            assert_eq!(original_context, 163840);
            assert_eq!((beta_fast, beta_slow), (32.0, 1.0));
            // Absent = 0, as transformers treats None: rope uses mscale(factor, 1) and the
            // softmax scale is left alone.
            assert_eq!((mscale, mscale_all_dim), (0.0, 0.0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deepseek_v2_lite_config() {
    let mut c = deepseek_v3_config();
    let m = c.as_object_mut().unwrap();
    m.insert("architectures".into(), json!(["DeepseekV2ForCausalLM"]));
    m.insert("q_lora_rank".into(), Value::Null);
    m.insert("topk_method".into(), json!("greedy"));
    m.insert("scoring_func".into(), json!("softmax"));
    m.insert("n_group".into(), json!(1));
    m.insert("topk_group".into(), json!(1));
    m.insert("norm_topk_prob".into(), json!(false));
    m.insert("routed_scaling_factor".into(), json!(1.0));
    m.insert(
        "rope_scaling".into(),
        json!({"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
               "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}),
    );
    let h = spec_of(&c).unwrap().hparams;
    assert_eq!(h.mla.as_ref().unwrap().q_lora_rank, None);
    assert_eq!(h.rope.style, RopeStyle::Interleaved);
    let moe = h.moe.unwrap();
    assert_eq!(moe.gating, Gating::Softmax);
    assert!(!moe.norm_topk);
    assert_eq!((moe.n_group, moe.topk_group), (1, 1));
    assert_eq!(moe.routed_scale, 1.0);
    match h.rope.scaling {
        RopeScaling::Yarn {
            mscale,
            mscale_all_dim,
            ..
        } => assert_eq!((mscale, mscale_all_dim), (0.707, 0.707)),
        other => panic!("{other:?}"),
    }

    // V2 full: group-limited greedy keeps the groups.
    c["topk_method"] = json!("group_limited_greedy");
    c["n_group"] = json!(4);
    c["topk_group"] = json!(3);
    let moe = spec_of(&c).unwrap().hparams.moe.unwrap();
    assert_eq!((moe.n_group, moe.topk_group), (4, 3));
}

#[test]
fn rope_parameters_from_transformers5() {
    // What save_pretrained writes: no rope_theta / rope_scaling at top level.
    let mut c = llama_config();
    let m = c.as_object_mut().unwrap();
    m.remove("rope_theta");
    m.remove("rope_scaling");
    m.insert(
        "rope_parameters".into(),
        json!({"rope_theta": 1000000.0, "rope_type": "default"}),
    );
    let h = spec_of(&c).unwrap().hparams;
    assert_eq!(h.rope.theta, 1000000.0);
    assert_eq!(h.rope.scaling, RopeScaling::None);

    c["rope_parameters"] = json!({
        "rope_theta": 50000.0, "rope_type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 512, "beta_fast": 16, "beta_slow": 2,
        "mscale": 0.707, "mscale_all_dim": 0.707
    });
    let h = spec_of(&c).unwrap().hparams;
    assert_eq!(h.rope.theta, 50000.0);
    assert_eq!(
        h.rope.scaling,
        RopeScaling::Yarn {
            factor: 4.0,
            original_context: 512,
            beta_fast: 16.0,
            beta_slow: 2.0,
            mscale: 0.707,
            mscale_all_dim: 0.707
        }
    );

    c["rope_parameters"] = json!({
        "rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192
    });
    let h = spec_of(&c).unwrap().hparams;
    assert_eq!(h.rope.theta, 500000.0);
    assert!(matches!(
        h.rope.scaling,
        RopeScaling::Llama3 { factor, .. } if factor == 32.0
    ));
}

#[test]
fn moe_families() {
    // Qwen3-MoE as on the hub (`num_experts`) and as transformers 5 saves it
    // (`num_local_experts`); norm_topk_prob defaults to false.
    let mut c = llama_config();
    let m = c.as_object_mut().unwrap();
    m.insert("architectures".into(), json!(["Qwen3MoeForCausalLM"]));
    m.insert("num_experts".into(), json!(8));
    m.insert("num_experts_per_tok".into(), json!(2));
    m.insert("moe_intermediate_size".into(), json!(24));
    m.insert("head_dim".into(), json!(16));
    let moe = spec_of(&c).unwrap().hparams.moe.unwrap();
    assert_eq!(
        (moe.n_experts, moe.n_experts_used, moe.expert_ffn),
        (8, 2, 24)
    );
    assert!(!moe.norm_topk);
    assert_eq!(moe.gating, Gating::Softmax);
    c["norm_topk_prob"] = json!(true);
    assert!(spec_of(&c).unwrap().hparams.moe.unwrap().norm_topk);
    let m = c.as_object_mut().unwrap();
    m.remove("num_experts");
    m.insert("num_local_experts".into(), json!(6));
    assert_eq!(spec_of(&c).unwrap().hparams.moe.unwrap().n_experts, 6);
    c["mlp_only_layers"] = json!([0]);
    assert!(err_of(&c).contains("every layer is MoE"));
    c["mlp_only_layers"] = json!([]);
    c["decoder_sparse_step"] = json!(2);
    assert!(err_of(&c).contains("decoder_sparse_step"));

    // Mixtral: intermediate_size is the expert width; weights renormalised.
    let mut c = llama_config();
    c["architectures"] = json!(["MixtralForCausalLM"]);
    c["num_local_experts"] = json!(8);
    c["num_experts_per_tok"] = json!(2);
    let s = spec_of(&c).unwrap();
    assert_eq!(s.arch, Arch::Mixtral);
    let moe = s.hparams.moe.unwrap();
    assert_eq!((moe.n_experts, moe.expert_ffn), (8, 96));
    assert!(moe.norm_topk);
    c["num_experts_per_tok"] = json!(9);
    assert!(err_of(&c).contains("num_experts_per_tok"));
}

#[test]
fn architectures_and_model_type() {
    for (a, arch) in [
        ("LlamaForCausalLM", Arch::Llama),
        ("Qwen2ForCausalLM", Arch::Qwen2),
        ("MixtralForCausalLM", Arch::Mixtral),
    ] {
        let mut c = llama_config();
        c["architectures"] = json!([a]);
        c["num_local_experts"] = json!(4);
        c["num_experts_per_tok"] = json!(2);
        assert_eq!(spec_of(&c).unwrap().arch, arch);
    }
    let mut c = llama_config();
    c.as_object_mut().unwrap().remove("architectures");
    c["model_type"] = json!("qwen2");
    assert_eq!(spec_of(&c).unwrap().arch, Arch::Qwen2);

    c["architectures"] = json!(["GPT2LMHeadModel"]);
    let e = err_of(&c);
    assert!(e.contains("GPT2LMHeadModel"), "{e}");
}

/// (what, edit of a valid config, text the error must contain)
type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

#[test]
fn bad_configs_are_errors_naming_the_problem() {
    let cases: Vec<Case> = vec![
        (
            "missing key",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("hidden_size");
            }),
            "hidden_size",
        ),
        (
            "zero size",
            Box::new(|c| c["num_hidden_layers"] = json!(0)),
            "num_hidden_layers",
        ),
        (
            "negative size",
            Box::new(|c| c["vocab_size"] = json!(-5)),
            "vocab_size",
        ),
        (
            "fractional size",
            Box::new(|c| c["vocab_size"] = json!(3.5)),
            "vocab_size",
        ),
        (
            "string size",
            Box::new(|c| c["hidden_size"] = json!("64")),
            "hidden_size",
        ),
        (
            "kv heads",
            Box::new(|c| c["num_key_value_heads"] = json!(3)),
            "num_key_value_heads",
        ),
        (
            "hidden % heads",
            Box::new(|c| c["hidden_size"] = json!(60)),
            "hidden_size",
        ),
        (
            "eps",
            Box::new(|c| c["rms_norm_eps"] = json!(-1.0)),
            "rms_norm_eps",
        ),
        (
            "theta",
            Box::new(|c| c["rope_theta"] = json!(0)),
            "rope_theta",
        ),
        (
            "odd rope",
            Box::new(|c| c["head_dim"] = json!(7)),
            "head_dim",
        ),
        (
            "eos",
            Box::new(|c| c["eos_token_id"] = json!("x")),
            "eos_token_id",
        ),
        (
            "tie",
            Box::new(|c| c["tie_word_embeddings"] = json!(1)),
            "tie_word_embeddings",
        ),
        (
            "scaling",
            Box::new(|c| c["rope_scaling"] = json!(3)),
            "rope_scaling",
        ),
        (
            "yarn factor",
            Box::new(|c| c["rope_scaling"] = json!({"type": "linear", "factor": 0})),
            "factor",
        ),
        (
            "architectures",
            Box::new(|c| c["architectures"] = json!([])),
            "architectures",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut c = llama_config();
        edit(&mut c);
        let e = err_of(&c);
        assert!(e.contains(needle), "{what}: `{e}` does not name `{needle}`");
        assert!(
            e.contains("config.json"),
            "{what}: `{e}` does not name the file"
        );
    }

    let cases: Vec<Case> = vec![
        (
            "kv_lora",
            Box::new(|c| c["kv_lora_rank"] = json!(0)),
            "kv_lora_rank",
        ),
        ("n_group", Box::new(|c| c["n_group"] = json!(3)), "n_group"),
        (
            "topk_group",
            Box::new(|c| c["topk_group"] = json!(5)),
            "topk_group",
        ),
        (
            "first dense",
            Box::new(|c| c["first_k_dense_replace"] = json!(9)),
            "first_k_dense_replace",
        ),
        (
            "scoring",
            Box::new(|c| c["scoring_func"] = json!("relu")),
            "scoring_func",
        ),
        (
            "topk method",
            Box::new(|c| c["topk_method"] = json!("magic")),
            "topk_method",
        ),
        (
            "block size",
            Box::new(|c| c["quantization_config"]["weight_block_size"] = json!([128, 0])),
            "weight_block_size",
        ),
        (
            "odd rope dim",
            Box::new(|c| c["qk_rope_head_dim"] = json!(5)),
            "qk_rope_head_dim",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut c = deepseek_v3_config();
        edit(&mut c);
        let e = err_of(&c);
        assert!(e.contains(needle), "{what}: `{e}` does not name `{needle}`");
    }
}

#[test]
fn unreadable_directories() {
    let d = TempDir::new("empty");
    let e = hf::read_spec(d.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    let e = match mixture_model::load(d.path()) {
        Ok(_) => panic!("loaded a directory without config.json"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("config.json"), "{e}");

    d.write("config.json", "{ not json");
    let e = hf::read_spec(d.path()).unwrap_err().to_string();
    assert!(e.contains("not valid JSON"), "{e}");

    d.write("config.json", "[1, 2]");
    let e = hf::read_spec(d.path()).unwrap_err().to_string();
    assert!(e.contains("JSON object"), "{e}");

    d.write("config.json", &llama_config().to_string());
    d.write("generation_config.json", "nope");
    let e = hf::read_spec(d.path()).unwrap_err().to_string();
    assert!(e.contains("generation_config.json"), "{e}");
}
