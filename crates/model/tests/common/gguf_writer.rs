//! A tiny test-only GGUF writer. Include with
//! `#[path = "common/gguf_writer.rs"] mod gguf_writer;`.
#![allow(dead_code)]

use mixture_model::gguf::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

pub fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

/// Write a value's payload (not its type id). Arrays take their element type from the
/// first element (u32 for an empty array).
pub fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s),
        Value::Array(items) => {
            put_u32(b, items.first().map_or(4, Value::type_id));
            put_u64(b, items.len() as u64);
            for it in items {
                put_value(b, it);
            }
        }
    }
}

/// One tensor to write. `ne` is GGUF order (innermost first).
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    pub ne: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
    /// Stored offset; `None` = packed at the next aligned position.
    pub offset: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    /// Alignment used for padding (write `general.alignment` yourself to change it in-file).
    pub alignment: usize,
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<TensorSpec>,
}

impl Default for Gguf {
    fn default() -> Self {
        Gguf {
            version: 3,
            alignment: 32,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl Gguf {
    pub fn kv(mut self, key: &str, v: Value) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self.kv.push((key.to_string(), v));
        self
    }

    /// Add an F32 tensor with PyTorch-order `shape`.
    pub fn f32(mut self, name: &str, shape: &[usize], values: &[f32]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        self.tensors.push(TensorSpec {
            name: name.to_string(),
            ne: shape.iter().rev().map(|&d| d as u64).collect(),
            ggml_type: 0,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            offset: None,
        });
        self
    }

    /// Add an F32 tensor filled with `seed + i * 0.01`.
    pub fn f32_seq(self, name: &str, shape: &[usize], seed: f32) -> Self {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = (0..n).map(|i| seed + i as f32 * 0.01).collect();
        self.f32(name, shape, &vals)
    }

    pub fn raw_tensor(mut self, t: TensorSpec) -> Self {
        self.tensors.push(t);
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        put_u32(&mut b, self.version);
        put_u64(&mut b, self.tensors.len() as u64);
        put_u64(&mut b, self.kv.len() as u64);
        for (k, v) in &self.kv {
            put_str(&mut b, k);
            put_u32(&mut b, v.type_id());
            put_value(&mut b, v);
        }
        let align = self.alignment as u64;
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            let off = t.offset.unwrap_or(next);
            offsets.push(off);
            next = (off + t.data.len() as u64).div_ceil(align) * align;
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut b, &t.name);
            put_u32(&mut b, t.ne.len() as u32);
            for &d in &t.ne {
                put_u64(&mut b, d);
            }
            put_u32(&mut b, t.ggml_type);
            put_u64(&mut b, *off);
        }
        if !self.tensors.is_empty() {
            while b.len() % self.alignment != 0 {
                b.push(0);
            }
        }
        let data_start = b.len();
        for (t, off) in self.tensors.iter().zip(&offsets) {
            if t.data.is_empty() {
                continue; // lets tests claim offsets far past the end
            }
            let at = data_start + *off as usize;
            if b.len() < at {
                b.resize(at, 0);
            }
            let end = at + t.data.len();
            if b.len() < end {
                b.resize(end, 0);
            }
            b[at..end].copy_from_slice(&t.data);
        }
        b
    }

    /// Write to a fresh file under the test's temp dir and return its path.
    pub fn write(&self, name: &str) -> PathBuf {
        let path = temp_dir().join(name);
        std::fs::write(&path, self.to_bytes()).unwrap();
        path
    }
}

/// A fresh empty directory under Cargo's per-test-binary temp dir.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gguf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// Metadata for a tiny llama-architecture model.
pub fn llama_meta(g: Gguf) -> Gguf {
    g.kv("general.architecture", s("llama"))
        .kv("general.name", s("tiny"))
        .kv("llama.context_length", Value::U32(128))
        .kv("llama.embedding_length", Value::U32(8))
        .kv("llama.block_count", Value::U32(1))
        .kv("llama.feed_forward_length", Value::U32(16))
        .kv("llama.attention.head_count", Value::U32(2))
        .kv("llama.attention.head_count_kv", Value::U32(1))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv("llama.rope.freq_base", Value::F32(10000.0))
        .kv("llama.vocab_size", Value::U32(10))
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2))
}

/// A complete tiny llama model (1 layer, hidden 8, 2 heads of 4, 1 kv head, ffn 16, vocab 10).
pub fn tiny_llama() -> Gguf {
    llama_meta(Gguf::default())
        .f32_seq("token_embd.weight", &[10, 8], 0.0)
        .f32_seq("output_norm.weight", &[8], 1.0)
        .f32_seq("blk.0.attn_norm.weight", &[8], 1.0)
        .f32_seq("blk.0.attn_q.weight", &[8, 8], 0.1)
        .f32_seq("blk.0.attn_k.weight", &[4, 8], 0.2)
        .f32_seq("blk.0.attn_v.weight", &[4, 8], 0.3)
        .f32_seq("blk.0.attn_output.weight", &[8, 8], 0.4)
        .f32_seq("blk.0.ffn_norm.weight", &[8], 1.0)
        .f32_seq("blk.0.ffn_gate.weight", &[16, 8], 0.5)
        .f32_seq("blk.0.ffn_up.weight", &[16, 8], 0.6)
        .f32_seq("blk.0.ffn_down.weight", &[8, 16], 0.7)
}
