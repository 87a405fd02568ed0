//! Random mutations and truncations of valid GGUF files: parsing and loading must return Ok or
//! Err, never panic, never allocate absurdly.

#[path = "common/gguf_writer.rs"]
mod gguf_writer;

use gguf_writer::{s, temp_dir, tiny_llama, Gguf};
use mixture_model::gguf::{self, GgufFile, Value};
use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Seed files: a llama model, an MoE model with 3-D experts and nested metadata, and an old
/// DeepSeek file (exercises the kv_b split).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let llama = tiny_llama()
            .kv(
                "tokenizer.ggml.tokens",
                Value::Array((0..10).map(|i| s(&format!("tok{i}"))).collect()),
            )
            .kv(
                "nested",
                Value::Array(vec![Value::Array(vec![Value::U16(1), Value::U16(2)])]),
            );
        let moe = gguf_writer::llama_meta(Gguf::default())
            .kv("llama.expert_count", Value::U32(2))
            .kv("llama.expert_used_count", Value::U32(1))
            .f32_seq("token_embd.weight", &[10, 8], 0.0)
            .f32_seq("blk.0.ffn_gate_exps.weight", &[2, 16, 8], 0.0)
            .f32_seq("blk.0.ffn_down_exps.weight", &[2, 8, 16], 0.0);
        let ds = Gguf::default()
            .kv("general.architecture", s("deepseek2"))
            .kv("deepseek2.context_length", Value::U32(64))
            .kv("deepseek2.embedding_length", Value::U32(8))
            .kv("deepseek2.block_count", Value::U32(1))
            .kv("deepseek2.feed_forward_length", Value::U32(8))
            .kv("deepseek2.attention.head_count", Value::U32(2))
            .kv(
                "deepseek2.attention.layer_norm_rms_epsilon",
                Value::F32(1e-6),
            )
            .kv("deepseek2.rope.dimension_count", Value::U32(2))
            .kv("deepseek2.attention.kv_lora_rank", Value::U32(4))
            .kv("deepseek2.attention.key_length", Value::U32(5))
            .kv("deepseek2.attention.value_length", Value::U32(3))
            .kv("deepseek2.vocab_size", Value::U32(10))
            .f32_seq("blk.0.attn_kv_b.weight", &[2 * (3 + 3), 4], 0.0);
        vec![llama.to_bytes(), moe.to_bytes(), ds.to_bytes()]
    })
}

fn exercise(bytes: &[u8]) {
    // Ok or Err; a panic fails the test.
    if let Ok(f) = GgufFile::from_bytes(Path::new("fuzz.gguf"), bytes) {
        for t in &f.tensors {
            let view = f.tensor(t);
            assert_eq!(view.bytes().len(), t.len);
        }
    }
}

fn exercise_load(bytes: &[u8]) {
    let path = temp_dir().join("fuzz.gguf");
    std::fs::write(&path, bytes).unwrap();
    let _ = gguf::load(&path);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Set byte `at` (scaled to the file length) to `v`.
    Byte(f64, u8),
    /// Overwrite 8 bytes with an extreme little-endian u64.
    Word(f64, u64),
    Truncate(f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0.0..1.0f64, any::<u8>()).prop_map(|(a, v)| Mutation::Byte(a, v)),
        3 => (0.0..1.0f64, prop_oneof![
            Just(0u64), Just(1), Just(u64::MAX), Just(1 << 60), Just(1 << 62),
            Just(i64::MAX as u64), Just(u32::MAX as u64), any::<u64>()
        ])
            .prop_map(|(a, v)| Mutation::Word(a, v)),
        1 => (0.0..1.0f64).prop_map(Mutation::Truncate),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        let pos = |a: f64, len: usize| ((a * len as f64) as usize).min(len - 1);
        match *m {
            Mutation::Byte(a, v) => {
                let i = pos(a, b.len());
                b[i] = v;
            }
            Mutation::Word(a, v) => {
                let i = pos(a, b.len());
                let end = (i + 8).min(b.len());
                b[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
            }
            Mutation::Truncate(a) => {
                let n = pos(a, b.len());
                b.truncate(n);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(seed in 0usize..3, muts in prop::collection::vec(mutation(), 1..6)) {
        let bytes = apply(seeds()[seed].clone(), &muts);
        exercise(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_models_load_or_fail_cleanly(seed in 0usize..3, muts in prop::collection::vec(mutation(), 1..4)) {
        let bytes = apply(seeds()[seed].clone(), &muts);
        exercise_load(&bytes);
    }
}

#[test]
fn seeds_are_valid_models() {
    for (i, b) in seeds().iter().enumerate() {
        let path = temp_dir().join("seed.gguf");
        std::fs::write(&path, b).unwrap();
        if let Err(e) = gguf::load(&path) {
            panic!("seed {i}: {e}");
        }
    }
}

#[test]
fn every_single_byte_flip_of_the_header_region() {
    // Exhaustive over the metadata and tensor infos of the first seed: each byte set to a few
    // interesting values.
    let seed = &seeds()[0];
    let f = GgufFile::from_bytes(Path::new("x"), seed).unwrap();
    for i in 0..f.data_offset {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = seed.clone();
            b[i] = v;
            exercise(&b);
        }
    }
}
