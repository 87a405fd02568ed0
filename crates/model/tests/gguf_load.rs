//! GGUF → ModelSpec + canonical weights, on small files written here.

#[path = "common/gguf_writer.rs"]
mod gguf_writer;

use gguf_writer::{s, temp_dir, tiny_llama, Gguf};
use mixture_model::gguf;
use mixture_model::spec::{Gating, MlaParams, RopeScaling, RopeStyle};
use mixture_model::{Arch, LoadedModel, Storage};
use std::path::Path;

fn load(g: &Gguf) -> LoadedModel {
    let path = g.write("model.gguf");
    match gguf::load(&path) {
        Ok(m) => m,
        Err(e) => panic!("load failed: {e}"),
    }
}

fn load_err(g: &Gguf) -> String {
    let path = g.write("model.gguf");
    match gguf::load(&path) {
        Ok(_) => panic!("load should fail"),
        Err(e) => e.to_string(),
    }
}

fn seq(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| seed + i as f32 * 0.01).collect()
}

#[test]
fn tiny_llama_spec_and_weights() {
    let g = tiny_llama();
    let path = g.write("tiny.gguf");
    let m = gguf::load(&path).unwrap();
    // also through the format-dispatching entry point
    let m2 = mixture_model::load(&path).unwrap();
    assert_eq!(m2.spec.hparams, m.spec.hparams);
    assert_eq!(m.files, vec![path.clone()]);

    let sp = &m.spec;
    assert_eq!(sp.arch, Arch::Llama);
    assert_eq!(sp.name, "tiny");
    assert_eq!(sp.format, "GGUF v3");
    assert_eq!(sp.tokenizer, "gpt2");
    assert_eq!(sp.bos_token_id, Some(1));
    assert_eq!(sp.eos_token_ids, vec![2]);
    let hp = &sp.hparams;
    assert_eq!(
        (
            hp.vocab_size,
            hp.hidden,
            hp.n_layers,
            hp.n_heads,
            hp.n_kv_heads
        ),
        (10, 8, 1, 2, 1)
    );
    assert_eq!(
        (hp.head_dim, hp.ffn_hidden, hp.context_length),
        (4, 16, 128)
    );
    assert!((hp.rms_eps - 1e-5).abs() < 1e-12);
    assert_eq!(hp.rope.theta, 10000.0);
    assert_eq!(hp.rope.dims, 4);
    assert_eq!(hp.rope.style, RopeStyle::Interleaved);
    assert_eq!(hp.rope.scaling, RopeScaling::None);
    assert!(hp.moe.is_none() && hp.mla.is_none());

    assert_eq!(m.weights.tensors.len(), g.tensors.len());
    for t in &g.tensors {
        let w = m.weights.get(&t.name).unwrap();
        let rev: Vec<usize> = t.ne.iter().rev().map(|&d| d as usize).collect();
        assert_eq!(w.shape, rev);
        assert_eq!(w.bytes(), &t.data[..]);
        assert!(matches!(w.data, Storage::Mapped { .. }));
    }
}

#[test]
fn defaults_and_fallbacks() {
    let mut g = tiny_llama()
        .kv("llama.rope.scaling.type", s("linear"))
        .kv("llama.rope.scaling.factor", gguf::Value::F32(4.0));
    g.kv.retain(|(k, _)| {
        ![
            "llama.vocab_size",
            "llama.attention.head_count_kv",
            "llama.rope.freq_base",
            "tokenizer.ggml.model",
            "general.name",
        ]
        .contains(&k.as_str())
    });
    let m = load(&g);
    let hp = &m.spec.hparams;
    assert_eq!(hp.vocab_size, 10, "vocab from token_embd rows");
    assert_eq!(hp.n_kv_heads, 2, "head_count_kv defaults to head_count");
    assert_eq!(hp.rope.theta, 10000.0);
    assert_eq!(hp.rope.scaling, RopeScaling::Linear { factor: 4.0 });
    assert_eq!(m.spec.tokenizer, "none");
    assert_eq!(m.spec.name, "model");

    let tokens = gguf::Value::Array((0..12).map(|i| s(&format!("t{i}"))).collect());
    let g = g.kv("tokenizer.ggml.tokens", tokens);
    assert_eq!(
        load(&g).spec.hparams.vocab_size,
        12,
        "vocab from token list"
    );
    let g = g.kv("llama.vocab_size", gguf::Value::U64(11));
    assert_eq!(
        load(&g).spec.hparams.vocab_size,
        11,
        "explicit vocab_size wins"
    );
    let g = tiny_llama().kv("general.file_type", gguf::Value::U32(0));
    assert_eq!(load(&g).spec.format, "GGUF v3");
    let g = Gguf {
        version: 2,
        ..tiny_llama()
    };
    assert_eq!(load(&g).spec.format, "GGUF v2");
}

fn mixtral_meta(g: Gguf) -> Gguf {
    g.kv("llama.expert_count", gguf::Value::U32(3))
        .kv("llama.expert_used_count", gguf::Value::U32(2))
}

#[test]
fn mixtral_3d_experts_become_per_expert_views() {
    let (n_exp, ff, d) = (3, 16, 8);
    let mut g = gguf_writer::llama_meta(Gguf::default());
    g = mixtral_meta(g)
        .f32_seq("token_embd.weight", &[10, d], 0.0)
        .f32_seq("blk.0.ffn_gate_inp.weight", &[n_exp, d], 0.0);
    let gate = seq(n_exp * ff * d, 1.0);
    let down = seq(n_exp * d * ff, 2.0);
    g = g
        .f32("blk.0.ffn_gate_exps.weight", &[n_exp, ff, d], &gate)
        .f32("blk.0.ffn_up_exps.weight", &[n_exp, ff, d], &gate)
        .f32("blk.0.ffn_down_exps.weight", &[n_exp, d, ff], &down);
    let m = load(&g);
    assert_eq!(m.spec.arch, Arch::Mixtral);
    let moe = m.spec.hparams.moe.clone().unwrap();
    assert_eq!((moe.n_experts, moe.n_experts_used, moe.n_shared), (3, 2, 0));
    assert_eq!(
        moe.expert_ffn, 16,
        "mixtral expert width = feed_forward_length"
    );
    assert_eq!(moe.gating, Gating::Softmax);
    assert!(moe.norm_topk);
    assert_eq!(
        (
            moe.routed_scale,
            moe.n_group,
            moe.topk_group,
            moe.first_dense
        ),
        (1.0, 1, 1, 0)
    );
    assert_eq!(m.spec.hparams.rope.style, RopeStyle::Interleaved);

    assert!(!m.weights.contains("blk.0.ffn_gate_exps.weight"));
    for e in 0..n_exp {
        let t = m
            .weights
            .get(&format!("blk.0.exp.{e}.ffn_gate.weight"))
            .unwrap();
        assert_eq!(t.shape, vec![ff, d]);
        assert!(
            matches!(t.data, Storage::Mapped { .. }),
            "a view, not a copy"
        );
        assert_eq!(t.to_f32().unwrap(), gate[e * ff * d..(e + 1) * ff * d]);
        let t = m
            .weights
            .get(&format!("blk.0.exp.{e}.ffn_down.weight"))
            .unwrap();
        assert_eq!(t.shape, vec![d, ff]);
        assert_eq!(t.to_f32().unwrap(), down[e * ff * d..(e + 1) * ff * d]);
        assert!(m.weights.contains(&format!("blk.0.exp.{e}.ffn_up.weight")));
    }
    assert!(!m.weights.contains("blk.0.exp.3.ffn_up.weight"));

    // expert count in the tensor must match the metadata
    let g = g.kv("llama.expert_count", gguf::Value::U32(4));
    assert!(load_err(&g).contains("blk.0.ffn_gate_exps.weight"));
}

#[test]
fn old_mixtral_per_expert_names_are_renamed() {
    let mut g = mixtral_meta(gguf_writer::llama_meta(Gguf::default()));
    for e in 0..3 {
        g = g
            .f32_seq(&format!("blk.0.ffn_gate.{e}.weight"), &[16, 8], e as f32)
            .f32_seq(&format!("blk.0.ffn_up.{e}.weight"), &[16, 8], e as f32)
            .f32_seq(&format!("blk.0.ffn_down.{e}.weight"), &[8, 16], e as f32);
    }
    let m = load(&g);
    for e in 0..3 {
        let t = m
            .weights
            .get(&format!("blk.0.exp.{e}.ffn_gate.weight"))
            .unwrap();
        assert_eq!(t.to_f32().unwrap(), seq(128, e as f32));
        assert!(!m.weights.contains(&format!("blk.0.ffn_gate.{e}.weight")));
    }
    // the same expert given both ways is a conflict
    let g = g.f32_seq("blk.0.ffn_up_exps.weight", &[3, 16, 8], 0.0);
    assert!(load_err(&g).contains("more than once"));
}

fn qwen_meta(arch: &str) -> Gguf {
    let k = |n: &str| format!("{arch}.{n}");
    Gguf::default()
        .kv("general.architecture", s(arch))
        .kv(&k("context_length"), gguf::Value::U32(256))
        .kv(&k("embedding_length"), gguf::Value::U32(16))
        .kv(&k("block_count"), gguf::Value::U32(2))
        .kv(&k("attention.head_count"), gguf::Value::U32(4))
        .kv(&k("attention.head_count_kv"), gguf::Value::U32(2))
        .kv(
            &k("attention.layer_norm_rms_epsilon"),
            gguf::Value::F32(1e-6),
        )
        .kv(&k("rope.freq_base"), gguf::Value::F32(1e6))
        .kv(&k("vocab_size"), gguf::Value::U32(32))
}

#[test]
fn qwen2_and_qwen3moe() {
    let g = qwen_meta("qwen2").kv("qwen2.feed_forward_length", gguf::Value::U32(40));
    let m = load(&g);
    let hp = &m.spec.hparams;
    assert_eq!(m.spec.arch, Arch::Qwen2);
    assert_eq!(hp.rope.style, RopeStyle::Neox);
    assert_eq!((hp.head_dim, hp.ffn_hidden, hp.rope.dims), (4, 40, 4));
    assert_eq!(hp.rope.theta, 1e6);

    let g = qwen_meta("qwen3moe")
        .kv("qwen3moe.attention.key_length", gguf::Value::U32(6))
        .kv("qwen3moe.attention.value_length", gguf::Value::U32(6))
        .kv("qwen3moe.expert_count", gguf::Value::U32(8))
        .kv("qwen3moe.expert_used_count", gguf::Value::U32(2))
        .kv("qwen3moe.expert_feed_forward_length", gguf::Value::U32(12));
    let m = load(&g);
    let hp = &m.spec.hparams;
    assert_eq!(m.spec.arch, Arch::Qwen3Moe);
    assert_eq!(hp.rope.style, RopeStyle::Neox);
    assert_eq!((hp.head_dim, hp.rope.dims, hp.n_kv_heads), (6, 6, 2));
    assert_eq!(
        hp.ffn_hidden, 12,
        "no feed_forward_length: the expert width"
    );
    let moe = hp.moe.clone().unwrap();
    assert_eq!(
        (moe.n_experts, moe.n_experts_used, moe.expert_ffn),
        (8, 2, 12)
    );
    assert!(moe.norm_topk, "llama.cpp always renormalises qwen3moe");
    assert_eq!(moe.gating, Gating::Softmax);
    let g = g
        .kv("qwen3moe.expert_weights_norm", gguf::Value::Bool(false))
        .kv("qwen3moe.feed_forward_length", gguf::Value::U32(24));
    let hp = load(&g).spec.hparams;
    assert!(!hp.moe.unwrap().norm_topk);
    assert_eq!(hp.ffn_hidden, 24);

    let g = qwen_meta("qwen3moe");
    assert!(load_err(&g).contains("qwen3moe.expert_count"));
}

/// DeepSeek dims used below: 2 heads, kv_lora 4, qk_nope 3, qk_rope 2, v 5, q_lora 6.
const NH: usize = 2;
const LORA: usize = 4;
const NOPE: usize = 3;
const ROPE: usize = 2;
const VD: usize = 5;

fn deepseek_meta(new_style: bool) -> Gguf {
    use gguf::Value::{Bool, F32, U32};
    let g = Gguf::default()
        .kv("general.architecture", s("deepseek2"))
        .kv("deepseek2.context_length", U32(512))
        .kv("deepseek2.embedding_length", U32(16))
        .kv("deepseek2.block_count", U32(2))
        .kv("deepseek2.feed_forward_length", U32(24))
        .kv("deepseek2.attention.head_count", U32(NH as u32))
        .kv("deepseek2.attention.layer_norm_rms_epsilon", F32(1e-6))
        .kv("deepseek2.rope.freq_base", F32(10000.0))
        .kv("deepseek2.rope.dimension_count", U32(ROPE as u32))
        .kv("deepseek2.vocab_size", U32(32))
        .kv("deepseek2.attention.q_lora_rank", U32(6))
        .kv("deepseek2.attention.kv_lora_rank", U32(LORA as u32))
        .kv("deepseek2.leading_dense_block_count", U32(1))
        .kv("deepseek2.expert_count", U32(4))
        .kv("deepseek2.expert_used_count", U32(2))
        .kv("deepseek2.expert_shared_count", U32(1))
        .kv("deepseek2.expert_feed_forward_length", U32(8))
        .kv("deepseek2.expert_weights_scale", F32(2.5))
        .kv("deepseek2.expert_weights_norm", Bool(true))
        .kv("deepseek2.expert_gating_func", U32(2))
        .kv("deepseek2.expert_group_count", U32(2))
        .kv("deepseek2.expert_group_used_count", U32(1))
        .kv("deepseek2.rope.scaling.type", s("yarn"))
        .kv("deepseek2.rope.scaling.factor", F32(40.0))
        .kv("deepseek2.rope.scaling.original_context_length", U32(64))
        .kv(
            "deepseek2.rope.scaling.yarn_log_multiplier",
            F32(0.1 * 0.707),
        );
    if new_style {
        g.kv("deepseek2.attention.head_count_kv", U32(1))
            .kv("deepseek2.attention.key_length", U32((LORA + ROPE) as u32))
            .kv("deepseek2.attention.value_length", U32(LORA as u32))
            .kv(
                "deepseek2.attention.key_length_mla",
                U32((NOPE + ROPE) as u32),
            )
            .kv("deepseek2.attention.value_length_mla", U32(VD as u32))
    } else {
        g.kv("deepseek2.attention.head_count_kv", U32(NH as u32))
            .kv("deepseek2.attention.key_length", U32((NOPE + ROPE) as u32))
            .kv("deepseek2.attention.value_length", U32(VD as u32))
    }
}

fn check_deepseek_spec(m: &LoadedModel) {
    let hp = &m.spec.hparams;
    assert_eq!(m.spec.arch, Arch::Deepseek2);
    assert_eq!(
        hp.mla,
        Some(MlaParams {
            q_lora_rank: Some(6),
            kv_lora_rank: LORA,
            qk_nope_dim: NOPE,
            qk_rope_dim: ROPE,
            v_head_dim: VD,
        })
    );
    assert_eq!((hp.n_heads, hp.n_kv_heads), (NH, NH));
    assert_eq!(hp.head_dim, NOPE + ROPE);
    assert_eq!(hp.rope.dims, ROPE);
    assert_eq!(hp.rope.style, RopeStyle::Interleaved);
    assert_eq!(hp.ffn_hidden, 24);
    match hp.rope.scaling {
        RopeScaling::Yarn {
            factor,
            original_context,
            beta_fast,
            beta_slow,
            mscale,
            mscale_all_dim,
        } => {
            assert_eq!((factor, original_context), (40.0, 64));
            assert_eq!((beta_fast, beta_slow), (32.0, 1.0));
            assert!((mscale_all_dim - 0.707).abs() < 1e-5, "{mscale_all_dim}");
            assert_eq!(mscale, mscale_all_dim);
        }
        ref other => panic!("expected yarn, got {other:?}"),
    }
    let moe = hp.moe.clone().unwrap();
    assert_eq!((moe.n_experts, moe.n_experts_used, moe.n_shared), (4, 2, 1));
    assert_eq!(moe.expert_ffn, 8);
    assert_eq!(moe.gating, Gating::Sigmoid);
    assert!(moe.norm_topk);
    assert_eq!(moe.routed_scale, 2.5);
    assert_eq!((moe.n_group, moe.topk_group, moe.first_dense), (2, 1, 1));
}

/// `kv_b` as HF stores it: `[n_head * (nope + v), kv_lora]`.
fn kv_b_values() -> Vec<f32> {
    (0..NH * (NOPE + VD) * LORA)
        .map(|i| i as f32 * 0.5 - 3.0)
        .collect()
}

#[test]
fn deepseek_old_files_split_kv_b() {
    let kv_b = kv_b_values();
    let g = deepseek_meta(false).f32("blk.1.attn_kv_b.weight", &[NH * (NOPE + VD), LORA], &kv_b);
    let m = load(&g);
    check_deepseek_spec(&m);
    assert!(!m.weights.contains("blk.1.attn_kv_b.weight"));
    let k_b = m
        .weights
        .get_shaped("blk.1.attn_k_b.weight", &[NH, LORA, NOPE])
        .unwrap();
    let v_b = m
        .weights
        .get_shaped("blk.1.attn_v_b.weight", &[NH, VD, LORA])
        .unwrap();
    let (k_b, v_b) = (k_b.to_f32().unwrap(), v_b.to_f32().unwrap());
    let row = |h: usize, r: usize| &kv_b[(h * (NOPE + VD) + r) * LORA..][..LORA];
    for h in 0..NH {
        for l in 0..LORA {
            for d in 0..NOPE {
                assert_eq!(k_b[(h * LORA + l) * NOPE + d], row(h, d)[l]);
            }
        }
        for j in 0..VD {
            for l in 0..LORA {
                assert_eq!(v_b[(h * VD + j) * LORA + l], row(h, NOPE + j)[l]);
            }
        }
    }
    // a kv_b of the wrong shape is named in the error
    let g =
        deepseek_meta(false).f32_seq("blk.0.attn_kv_b.weight", &[NH * (NOPE + VD), LORA + 1], 0.0);
    assert!(load_err(&g).contains("blk.0.attn_kv_b.weight"));
}

#[test]
fn deepseek_new_files_keep_k_b_and_v_b() {
    // The converter writes k_b as torch [n_head, kv_lora, nope] (ne = [nope, kv_lora, n_head])
    // and v_b as [n_head, v, kv_lora].
    let g = deepseek_meta(true)
        .f32_seq("blk.0.attn_k_b.weight", &[NH, LORA, NOPE], 0.0)
        .f32_seq("blk.0.attn_v_b.weight", &[NH, VD, LORA], 1.0)
        .f32_seq("blk.1.exp_probs_b.bias", &[4], 0.0)
        .f32_seq("blk.1.ffn_gate_shexp.weight", &[8, 16], 0.0)
        .f32_seq("blk.1.attn_kv_a_mqa.weight", &[LORA + ROPE, 16], 0.0);
    let m = load(&g);
    check_deepseek_spec(&m);
    let k_b = m
        .weights
        .get_shaped("blk.0.attn_k_b.weight", &[NH, LORA, NOPE])
        .unwrap();
    assert!(matches!(k_b.data, Storage::Mapped { .. }));
    m.weights
        .get_shaped("blk.0.attn_v_b.weight", &[NH, VD, LORA])
        .unwrap();
    for n in [
        "blk.1.exp_probs_b.bias",
        "blk.1.ffn_gate_shexp.weight",
        "blk.1.attn_kv_a_mqa.weight",
    ] {
        assert!(m.weights.contains(n), "{n}");
    }
}

#[test]
fn deepseek_metadata_variants() {
    use gguf::Value::U32;
    // no yarn_log_multiplier: HF defaults (mscale 1, mscale_all_dim 0)
    let mut g = deepseek_meta(true);
    g.kv.retain(|(k, _)| !k.ends_with("yarn_log_multiplier") && !k.contains("q_lora"));
    let m = load(&g);
    match m.spec.hparams.rope.scaling {
        RopeScaling::Yarn {
            mscale,
            mscale_all_dim,
            ..
        } => assert_eq!((mscale, mscale_all_dim), (1.0, 0.0)),
        ref o => panic!("{o:?}"),
    }
    assert_eq!(m.spec.hparams.mla.unwrap().q_lora_rank, None);
    // absent gating/norm/scale keys: softmax, no renormalisation, scale 1
    let mut g = deepseek_meta(true);
    g.kv.retain(|(k, _)| {
        !k.ends_with("expert_gating_func")
            && !k.ends_with("expert_weights_norm")
            && !k.ends_with("expert_weights_scale")
    });
    let moe = load(&g).spec.hparams.moe.unwrap();
    assert_eq!(moe.gating, Gating::Softmax);
    assert!(!moe.norm_topk);
    assert_eq!(moe.routed_scale, 1.0);
    // a rope dim count at least the key length is refused
    let g = deepseek_meta(true).kv("deepseek2.rope.dimension_count", U32(5));
    assert!(load_err(&g).contains("key_length_mla"));
    let mut g = deepseek_meta(true);
    g.kv.retain(|(k, _)| !k.ends_with("kv_lora_rank"));
    assert!(load_err(&g).contains("deepseek2.attention.kv_lora_rank"));
    let g = deepseek_meta(true).kv("deepseek2.expert_gating_func", U32(4));
    assert!(load_err(&g).contains("expert gating function 4"));
}

// ---- split sets ----

fn split_parts(dir: &Path, prefix: &str, n_parts: usize) -> Vec<std::path::PathBuf> {
    use gguf::Value::{I32, U16};
    let full = tiny_llama();
    let per = full.tensors.len().div_ceil(n_parts);
    let chunks: Vec<_> = full.tensors.chunks(per).collect();
    assert_eq!(chunks.len(), n_parts);
    let mut paths = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut g = Gguf::default();
        if i == 0 {
            g.kv = full.kv.clone();
            g = g.kv("split.tensors.count", I32(full.tensors.len() as i32));
        }
        g = g
            .kv("split.no", U16(i as u16))
            .kv("split.count", U16(n_parts as u16));
        g.tensors = chunk.to_vec();
        let p = dir.join(format!("{prefix}-{:05}-of-{:05}.gguf", i + 1, n_parts));
        std::fs::write(&p, g.to_bytes()).unwrap();
        paths.push(p);
    }
    paths
}

#[test]
fn split_set_loads_as_one_model() {
    let dir = temp_dir();
    let paths = split_parts(&dir, "tiny", 3);
    let single = load(&tiny_llama());
    for start in [&paths[0], &paths[2]] {
        let m = gguf::load(start).unwrap();
        assert_eq!(m.files, paths);
        assert_eq!(m.spec.hparams, single.spec.hparams);
        assert_eq!(m.weights.tensors.len(), single.weights.tensors.len());
        for (name, t) in &single.weights.tensors {
            assert_eq!(m.weights.get(name).unwrap().bytes(), t.bytes(), "{name}");
        }
    }
}

#[test]
fn split_set_errors() {
    let dir = temp_dir();
    let paths = split_parts(&dir, "tiny", 3);
    std::fs::remove_file(&paths[2]).unwrap();
    let e = gguf::load(&paths[0]).err().unwrap().to_string();
    assert!(e.contains("missing part 3 of 3"), "{e}");
    assert!(e.contains("tiny-00003-of-00003.gguf"), "{e}");

    // a part whose split.no disagrees with its name
    let dir = temp_dir();
    let paths = split_parts(&dir, "tiny", 2);
    std::fs::copy(&paths[0], &paths[1]).unwrap();
    let e = gguf::load(&paths[0]).err().unwrap().to_string();
    assert!(e.contains("split.no"), "{e}");

    // split metadata on a file whose name has no part numbers
    let dir = temp_dir();
    let paths = split_parts(&dir, "tiny", 2);
    let renamed = dir.join("renamed.gguf");
    std::fs::rename(&paths[0], &renamed).unwrap();
    let e = gguf::load(&renamed).err().unwrap().to_string();
    assert!(e.contains("part 1 of 2"), "{e}");

    // the tensor total must match split.tensors.count
    let dir = temp_dir();
    let paths = split_parts(&dir, "tiny", 2);
    let mut g = Gguf::default()
        .kv("split.no", gguf::Value::U16(1))
        .kv("split.count", gguf::Value::U16(2));
    g = g.f32_seq("blk.0.ffn_down.weight", &[8, 16], 0.0);
    std::fs::write(&paths[1], g.to_bytes()).unwrap();
    let e = gguf::load(&paths[0]).err().unwrap().to_string();
    assert!(e.contains("split.tensors.count"), "{e}");
}
