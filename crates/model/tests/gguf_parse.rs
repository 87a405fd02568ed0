//! GGUF container parsing: metadata types, versions, alignment, tensor infos and data views.

#[path = "common/gguf_writer.rs"]
mod gguf_writer;

use gguf_writer::{s, tiny_llama, Gguf, TensorSpec};
use mixture_model::gguf::{self, GgufFile, Value};
use mixture_model::Storage;
use std::path::Path;

fn all_types() -> Vec<(String, Value)> {
    vec![
        ("t.u8".into(), Value::U8(250)),
        ("t.i8".into(), Value::I8(-7)),
        ("t.u16".into(), Value::U16(65000)),
        ("t.i16".into(), Value::I16(-30000)),
        ("t.u32".into(), Value::U32(4_000_000_000)),
        ("t.i32".into(), Value::I32(-2_000_000_000)),
        ("t.u64".into(), Value::U64(u64::MAX - 3)),
        ("t.i64".into(), Value::I64(i64::MIN + 5)),
        ("t.f32".into(), Value::F32(-1.5e-3)),
        ("t.f64".into(), Value::F64(std::f64::consts::PI)),
        ("t.bool_t".into(), Value::Bool(true)),
        ("t.bool_f".into(), Value::Bool(false)),
        ("t.str".into(), s("héllo ▁world")),
        ("t.empty_str".into(), s("")),
        (
            "t.arr_i32".into(),
            Value::Array(vec![Value::I32(1), Value::I32(-2), Value::I32(3)]),
        ),
        (
            "t.arr_str".into(),
            Value::Array(vec![s("a"), s(""), s("Ġthe")]),
        ),
        (
            "t.arr_f64".into(),
            Value::Array(vec![Value::F64(0.25), Value::F64(-8.0)]),
        ),
        ("t.arr_empty".into(), Value::Array(vec![])),
        (
            "t.nested".into(),
            Value::Array(vec![
                Value::Array(vec![Value::U8(1), Value::U8(2)]),
                Value::Array(vec![Value::U8(3)]),
                Value::Array(vec![]),
            ]),
        ),
        (
            "t.nested_str".into(),
            Value::Array(vec![Value::Array(vec![Value::Array(vec![s("deep")])])]),
        ),
    ]
}

#[test]
fn every_metadata_type_round_trips_v2_and_v3() {
    for version in [2u32, 3] {
        let mut g = Gguf {
            version,
            ..Gguf::default()
        };
        for (k, v) in all_types() {
            g = g.kv(&k, v);
        }
        let path = g.write("types.gguf");
        let f = gguf::open(&path).unwrap();
        assert_eq!(f.version, version);
        assert_eq!(f.alignment, 32);
        assert!(f.tensors.is_empty());
        for (k, v) in all_types() {
            assert_eq!(f.get(&k), Some(&v), "key {k} (v{version})");
        }
        assert_eq!(f.metadata.len(), all_types().len());
    }
}

#[test]
fn value_helpers() {
    assert_eq!(Value::U8(3).as_u64(), Some(3));
    assert_eq!(Value::I32(-1).as_u64(), None);
    assert_eq!(Value::I32(-1).as_i64(), Some(-1));
    assert_eq!(Value::U64(u64::MAX).as_i64(), None);
    assert_eq!(Value::F64(0.5).as_f32(), Some(0.5));
    assert_eq!(Value::U32(2).as_f32(), Some(2.0));
    assert_eq!(s("x").as_f32(), None);
    assert_eq!(s("x").as_str(), Some("x"));
    assert_eq!(Value::Bool(true).as_bool(), Some(true));
    assert_eq!(Value::U8(1).as_bool(), None);
    assert_eq!(
        Value::Array(vec![Value::U8(1)]).as_array(),
        Some(&[Value::U8(1)][..])
    );
}

fn check_tensors(f: &GgufFile, g: &Gguf) {
    assert_eq!(f.tensors.len(), g.tensors.len());
    for (info, spec) in f.tensors.iter().zip(&g.tensors) {
        assert_eq!(info.name, spec.name);
        // shape is the reverse of ne
        let rev: Vec<usize> = spec.ne.iter().rev().map(|&d| d as usize).collect();
        assert_eq!(info.shape, rev, "{}", info.name);
        assert_eq!(info.start % f.alignment, 0, "{}", info.name);
        let t = f.tensor(info);
        assert_eq!(t.bytes(), &spec.data[..], "{}", info.name);
        assert!(matches!(t.data, Storage::Mapped { .. }));
    }
}

#[test]
fn tensors_are_mapped_with_reversed_shapes() {
    let g = tiny_llama();
    let path = g.write("tiny.gguf");
    let f = gguf::open(&path).unwrap();
    check_tensors(&f, &g);
    let q = f.tensor_by_name("blk.0.attn_k.weight").unwrap();
    assert_eq!(q.shape, vec![4, 8]);
    // row 1, col 2 of a [4, 8] tensor filled with 0.2 + i*0.01
    let v = q.to_f32().unwrap();
    assert!((v[8 + 2] - (0.2 + 10.0 * 0.01)).abs() < 1e-6);
    assert!(f.tensor_by_name("nope").is_err());
}

#[test]
fn alignment_64_is_honoured() {
    let g = Gguf {
        alignment: 64,
        ..Gguf::default()
    }
    .kv("general.alignment", Value::U32(64))
    .f32_seq("a", &[3], 0.0) // 12 bytes: next tensor must start 64 bytes later
    .f32_seq("b", &[2, 5], 1.0)
    .f32_seq("c", &[1], 2.0);
    let path = g.write("align64.gguf");
    let f = gguf::open(&path).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensors[1].offset, 64);
    assert_eq!(f.tensors[2].offset, 128);
    check_tensors(&f, &g);
}

#[test]
fn quantized_tensor_sizes_and_4d_shapes() {
    // Q8_0: 34 bytes per 32 elements; a [2, 64] tensor is 4 blocks.
    let q8 = TensorSpec {
        name: "q8".into(),
        ne: vec![64, 2],
        ggml_type: 8,
        data: (0..4 * 34).map(|i| i as u8).collect(),
        offset: None,
    };
    let four_d = TensorSpec {
        name: "four_d".into(),
        ne: vec![2, 3, 1, 2],
        ggml_type: 1, // F16
        data: vec![0; 2 * 3 * 2 * 2],
        offset: None,
    };
    let g = Gguf::default().raw_tensor(q8).raw_tensor(four_d);
    let f = GgufFile::from_bytes(Path::new("mem.gguf"), &g.to_bytes()).unwrap();
    assert_eq!(f.tensors[0].len, 4 * 34);
    assert_eq!(f.tensors[0].shape, vec![2, 64]);
    assert_eq!(f.tensors[1].shape, vec![2, 1, 3, 2]);
    check_tensors(&f, &g);
}

#[test]
fn real_converter_output_parses() {
    // Fixtures written by llama.cpp's converter (when present in this checkout).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama");
    let mut seen = 0;
    for name in ["model.f32.gguf", "model.bf16.gguf", "model.q8_0.gguf"] {
        let p = dir.join(name);
        if !p.exists() {
            continue;
        }
        seen += 1;
        let f = gguf::open(&p).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(
            f.get("general.architecture").and_then(Value::as_str),
            Some("llama")
        );
        assert!(f.tensor_info("token_embd.weight").is_some());
        let tokens = f
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .unwrap();
        assert!(!tokens.is_empty());
    }
    eprintln!("parsed {seen} converter fixtures");
}

#[test]
fn llama_cpp_vocab_files_parse() {
    // Real files of many vintages (vocab-only GGUFs shipped with llama.cpp), when the sdist is
    // unpacked in the cache (tools/fetch_llama_cpp_sdist.sh).
    let cache = std::env::var_os("MIXTURE_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/mixture")));
    let Some(dir) = cache.map(|c| c.join("llama_cpp_python-0.3.36/vendor/llama.cpp/models")) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("{} absent; skipped", dir.display());
        return;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("ggml-vocab-") && name.ends_with(".gguf")) {
            continue;
        }
        let f = gguf::open(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(f.get("general.architecture").is_some(), "{name}");
        let tokens = f.get("tokenizer.ggml.tokens").and_then(Value::as_array);
        assert!(tokens.is_some_and(|t| !t.is_empty()), "{name}");
        n += 1;
    }
    eprintln!("parsed {n} llama.cpp vocab files");
}
