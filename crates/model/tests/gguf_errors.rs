//! Bad GGUF input: every case is an `Err` whose message names the problem, never a panic.

#[path = "common/gguf_writer.rs"]
mod gguf_writer;

use gguf_writer::{put_str, put_u32, put_u64, s, temp_dir, tiny_llama, Gguf, TensorSpec};
use mixture_model::gguf::{self, GgufFile, Value};
use mixture_model::ModelError;
use std::path::Path;

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    put_u32(&mut b, version);
    put_u64(&mut b, n_tensors);
    put_u64(&mut b, n_kv);
    b
}

/// Parse bytes both in memory and from a file; both must fail the same way.
fn parse_err(bytes: &[u8]) -> String {
    let mem = GgufFile::from_bytes(Path::new("bad.gguf"), bytes)
        .expect_err("in-memory parse should fail")
        .to_string();
    let path = temp_dir().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let file = gguf::open(&path)
        .expect_err("file parse should fail")
        .to_string();
    assert_eq!(
        mem.replace("bad.gguf", ""),
        file.replace(&path.display().to_string(), ""),
        "in-memory and file errors differ"
    );
    file
}

fn assert_contains(msg: &str, needle: &str) {
    assert!(
        msg.contains(needle),
        "error message `{msg}` does not mention `{needle}`"
    );
}

#[test]
fn missing_file() {
    let p = temp_dir().join("does-not-exist.gguf");
    let e = gguf::open(&p).unwrap_err();
    assert!(matches!(e, ModelError::NotFound(_)), "{e}");
    let e = gguf::load(&p).err().expect("load should fail");
    assert_contains(&e.to_string(), "does-not-exist.gguf");
}

#[test]
fn empty_and_short_files() {
    assert_contains(&parse_err(&[]), "too short for a GGUF header");
    assert_contains(&parse_err(b"GGUF\x03\x00"), "too short for a GGUF header");
}

#[test]
fn bad_magic() {
    let mut b = tiny_llama().to_bytes();
    b[..4].copy_from_slice(b"GGML");
    let e = parse_err(&b);
    assert_contains(&e, "bad magic");
    assert_contains(&e, "not a GGUF file");
}

#[test]
fn unsupported_versions() {
    for (v, needle) in [
        (1u32, "unsupported GGUF version 1"),
        (0, "unsupported GGUF version 0"),
        (4, "unsupported GGUF version 4"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let b = header(v, 0, 0);
        assert_contains(&parse_err(&b), needle);
    }
    // v2 and v3 with no content are fine
    for v in [2, 3] {
        let f = GgufFile::from_bytes(Path::new("x"), &header(v, 0, 0)).unwrap();
        assert_eq!(f.version, v);
    }
}

#[test]
fn truncations() {
    let g = tiny_llama();
    let full = g.to_bytes();
    let f = GgufFile::from_bytes(Path::new("x"), &full).unwrap();
    // Inside the metadata: too short for the claimed count, then cut inside a value.
    assert_contains(
        &parse_err(&full[..24 + 20]),
        "metadata count 14 is impossible",
    );
    let e = parse_err(&full[..250]);
    assert_contains(&e, "truncated file");
    // Every cut in the header, metadata and tensor infos is an error, never a panic.
    for cut in 0..f.data_offset {
        let e = GgufFile::from_bytes(Path::new("x"), &full[..cut]).unwrap_err();
        let msg = e.to_string();
        assert!(
            [
                "truncated",
                "impossible",
                "too short",
                "past the end",
                "more than the"
            ]
            .iter()
            .any(|n| msg.contains(n)),
            "cut at {cut}: {msg}"
        );
    }
    // Inside the tensor infos: cut a few bytes before the data section.
    let infos_end = f.data_offset - 40;
    assert_contains(&parse_err(&full[..infos_end]), "truncated file");
    // Inside tensor data.
    let e = parse_err(&full[..full.len() - 1]);
    assert_contains(&e, "extends past the end of the file");
    assert_contains(&e, "blk.0.ffn_down.weight");
}

#[test]
fn tensor_offset_past_end() {
    let g = Gguf::default().raw_tensor(TensorSpec {
        name: "far".into(),
        ne: vec![4],
        ggml_type: 0,
        data: vec![],
        offset: Some(1 << 40),
    });
    let e = parse_err(&g.to_bytes());
    assert_contains(&e, "`far`");
    assert_contains(&e, "extends past the end of the file");
    // An offset near u64::MAX must not overflow.
    let g = Gguf::default().raw_tensor(TensorSpec {
        name: "wrap".into(),
        ne: vec![4],
        ggml_type: 0,
        data: vec![],
        offset: Some(u64::MAX - 31),
    });
    assert_contains(&parse_err(&g.to_bytes()), "extends past the end");
}

#[test]
fn misaligned_tensor_offset() {
    let g = Gguf::default().f32_seq("a", &[8], 0.0);
    let mut g2 = g.clone();
    g2.tensors[0].offset = Some(4);
    let e = parse_err(&g2.to_bytes());
    assert_contains(&e, "not a multiple of the alignment 32");
}

#[test]
fn absurd_counts() {
    assert_contains(&parse_err(&header(3, 1 << 60, 0)), "tensor count");
    assert_contains(&parse_err(&header(3, 0, 1 << 60)), "metadata count");

    // array length 2^60
    let mut b = header(3, 0, 1);
    put_str(&mut b, "big.array");
    put_u32(&mut b, 9);
    put_u32(&mut b, 4);
    put_u64(&mut b, 1 << 60);
    b.extend_from_slice(&[0; 64]);
    let e = parse_err(&b);
    assert_contains(&e, "big.array");
    assert_contains(&e, "array length 1152921504606846976");

    // string value length 2^62
    let mut b = header(3, 0, 1);
    put_str(&mut b, "big.string");
    put_u32(&mut b, 8);
    put_u64(&mut b, 1 << 62);
    b.extend_from_slice(&[b'a'; 64]);
    let e = parse_err(&b);
    assert_contains(&e, "big.string");
    assert_contains(&e, "length 4611686018427387904");

    // key length 2^62
    let mut b = header(3, 0, 1);
    put_u64(&mut b, 1 << 62);
    b.extend_from_slice(&[b'a'; 64]);
    assert_contains(&parse_err(&b), "metadata key #0");

    // tensor name length 2^62
    let mut b = header(3, 1, 0);
    put_u64(&mut b, 1 << 62);
    b.extend_from_slice(&[b'a'; 64]);
    assert_contains(&parse_err(&b), "name of tensor #0");

    // an array of 2^20 arrays each claiming 2^40 elements
    let mut b = header(3, 0, 1);
    put_str(&mut b, "nest");
    put_u32(&mut b, 9);
    put_u32(&mut b, 9);
    put_u64(&mut b, 4);
    put_u32(&mut b, 10);
    put_u64(&mut b, 1 << 40);
    b.extend_from_slice(&[0; 64]);
    assert_contains(&parse_err(&b), "array length 1099511627776");
}

#[test]
fn deep_nesting_is_refused() {
    let mut v = Value::U8(1);
    for _ in 0..12 {
        v = Value::Array(vec![v]);
    }
    let b = Gguf::default().kv("deep", v).to_bytes();
    assert_contains(&parse_err(&b), "nested deeper");
}

fn one_tensor(ne: Vec<u64>, ggml_type: u32) -> Vec<u8> {
    Gguf::default()
        .raw_tensor(TensorSpec {
            name: "t".into(),
            ne,
            ggml_type,
            data: vec![0; 64],
            offset: None,
        })
        .to_bytes()
}

#[test]
fn absurd_dims() {
    let e = parse_err(&one_tensor(vec![1 << 32, 1 << 32, 1 << 32], 0));
    assert_contains(&e, "overflow");
    assert_contains(&e, "`t`");
    // bytes overflow although the element count does not (F32: 4 bytes each)
    assert_contains(&parse_err(&one_tensor(vec![1 << 62], 0)), "overflow");
    assert_contains(
        &parse_err(&one_tensor(vec![u64::MAX], 0)),
        "invalid dimension -1",
    );
    assert_contains(
        &parse_err(&one_tensor(vec![4, 0], 0)),
        "invalid dimension 0",
    );
    let e = parse_err(&one_tensor(vec![1, 1, 1, 1, 1], 0));
    assert_contains(&e, "has 5 dimensions (at most 4");
    let e = parse_err(&one_tensor(vec![33, 2], 8));
    assert_contains(&e, "not a multiple of the block size 32");
}

#[test]
fn bad_alignment() {
    for (v, needle) in [
        (Value::U32(48), "48 is not a power of two"),
        (Value::U32(0), "0 is not a power of two"),
        (Value::U64(1 << 40), "is not a power of two between"),
        (s("32"), "must be an unsigned integer"),
    ] {
        let b = Gguf::default()
            .kv("general.alignment", v)
            .f32_seq("a", &[8], 0.0)
            .to_bytes();
        assert_contains(&parse_err(&b), needle);
    }
}

#[test]
fn unknown_tensor_types() {
    for (id, needle) in [
        (99u32, "unknown (ggml type 99)"),
        (16, "IQ2_XXS (ggml type 16)"),
    ] {
        let b = one_tensor(vec![256], id);
        let e = GgufFile::from_bytes(Path::new("x"), &b).unwrap_err();
        match &e {
            ModelError::UnsupportedType { name, dtype } => {
                assert_eq!(name, "t");
                assert_contains(dtype, needle);
            }
            other => panic!("expected UnsupportedType, got {other}"),
        }
    }
}

#[test]
fn bad_metadata_values() {
    let mut b = header(3, 0, 1);
    put_str(&mut b, "weird");
    put_u32(&mut b, 13);
    b.extend_from_slice(&[0; 16]);
    assert_contains(&parse_err(&b), "unknown value type 13");

    let mut b = header(3, 0, 1);
    put_str(&mut b, "flag");
    put_u32(&mut b, 7);
    b.push(2);
    assert_contains(&parse_err(&b), "bool byte is 2");

    let mut b = header(3, 0, 1);
    put_str(&mut b, "arr");
    put_u32(&mut b, 9);
    put_u32(&mut b, 77);
    put_u64(&mut b, 1);
    b.extend_from_slice(&[0; 16]);
    assert_contains(&parse_err(&b), "unknown array element type 77");

    let mut b = header(3, 0, 1);
    put_u64(&mut b, 2);
    b.extend_from_slice(&[0xff, 0xfe]);
    put_u32(&mut b, 0);
    b.push(0);
    assert_contains(&parse_err(&b), "not valid UTF-8");
}

#[test]
fn duplicates() {
    let mut b = header(3, 0, 2);
    for _ in 0..2 {
        put_str(&mut b, "k");
        put_u32(&mut b, 0);
        b.push(1);
    }
    assert_contains(&parse_err(&b), "duplicate metadata key `k`");

    let g = Gguf::default()
        .f32_seq("same", &[8], 0.0)
        .f32_seq("same", &[8], 0.0);
    assert_contains(&parse_err(&g.to_bytes()), "duplicate tensor name `same`");
}

fn load_err(g: &Gguf) -> ModelError {
    let path = g.write("model.gguf");
    match gguf::load(&path) {
        Ok(_) => panic!("load should fail"),
        Err(e) => e,
    }
}

#[test]
fn unknown_architecture() {
    let g = tiny_llama().kv("general.architecture", s("gpt2"));
    let e = load_err(&g);
    assert!(
        matches!(&e, ModelError::UnknownArch(a) if a == "gpt2"),
        "{e}"
    );
    assert_contains(&e.to_string(), "unsupported architecture `gpt2`");

    let mut g = tiny_llama();
    g.kv.retain(|(k, _)| k != "general.architecture");
    assert!(matches!(load_err(&g), ModelError::MissingKey(k) if k == "general.architecture"));
}

#[test]
fn missing_and_bad_keys() {
    let mut g = tiny_llama();
    g.kv.retain(|(k, _)| k != "llama.embedding_length");
    let e = load_err(&g);
    assert!(
        matches!(&e, ModelError::MissingKey(k) if k == "llama.embedding_length"),
        "{e}"
    );

    let g = tiny_llama().kv("llama.block_count", s("one"));
    let e = load_err(&g);
    assert!(
        matches!(&e, ModelError::BadKey { key, .. } if key == "llama.block_count"),
        "{e}"
    );

    let g = tiny_llama().kv("llama.attention.head_count", Value::U32(3));
    assert_contains(&load_err(&g).to_string(), "not divisible by 3 heads");

    let g = tiny_llama().kv("llama.rope.scaling.type", s("longrope"));
    assert_contains(&load_err(&g).to_string(), "longrope");

    let g = tiny_llama().kv("llama.rope.scaling.type", s("yarn"));
    assert!(matches!(load_err(&g), ModelError::MissingKey(k) if k == "llama.rope.scaling.factor"));
}

#[test]
fn experts_with_wrong_rank() {
    let g = tiny_llama()
        .kv("llama.expert_count", Value::U32(2))
        .kv("llama.expert_used_count", Value::U32(1))
        .f32_seq("blk.0.ffn_gate_exps.weight", &[2, 16], 0.0);
    assert_contains(&load_err(&g).to_string(), "expected 3 dimensions");
}
