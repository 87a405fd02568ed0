//! tokenizer.json through `Tokenizer::from_hf_dir` against Python `tokenizers`
//! (tests/fixtures/tokenizer/hf_vectors.json, from tools/make_tokenizer_fixtures.py), and the
//! GGUF-embedded tokenizer of the same model against its tokenizer.json.

use mixture_model::gguf;
use mixture_model::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vectors() -> Value {
    let path = repo().join("tests/fixtures/tokenizer/hf_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_json_matches_python_tokenizers() {
    let all = vectors();
    let fixtures = all["fixtures"].as_object().unwrap();
    assert!(!fixtures.is_empty());
    for (name, cases) in fixtures {
        let tok =
            Tokenizer::from_hf_dir(&repo().join(format!("tests/fixtures/{name}/hf"))).unwrap();
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            assert_eq!(
                tok.encode(text, false, true).unwrap(),
                want,
                "{name} {text:?}"
            );
            assert_eq!(
                tok.encode(text, true, true).unwrap(),
                ids(&case["ids_add_special"]),
                "{name} {text:?} add_special"
            );
            assert_eq!(
                tok.encode(text, false, false).unwrap(),
                ids(&case["ids_no_parse_special"]),
                "{name} {text:?} without parsing specials"
            );
            assert_eq!(
                tok.decode(&want).unwrap(),
                case["decoded"].as_str().unwrap(),
                "{name} {text:?} decode"
            );
        }
    }
}

#[test]
fn hf_specials_and_sizes() {
    let tok = Tokenizer::from_hf_dir(&repo().join("tests/fixtures/llama/hf")).unwrap();
    assert_eq!(tok.vocab_size(), 288);
    assert_eq!(tok.token_text(286), Some("<|bos|>"));
    assert!(tok.is_special(287));
    assert!(!tok.is_special(100));
    assert!(tok.eos_ids().contains(&287), "{:?}", tok.eos_ids());
}

#[test]
fn gguf_embedded_tokenizer_equals_tokenizer_json() {
    let texts: Vec<String> = vectors()["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let dir = repo().join("tests/fixtures/llama");
    let hf = Tokenizer::from_hf_dir(&dir.join("hf")).unwrap();
    let file = gguf::open(&dir.join("model.f32.gguf")).unwrap();
    let embedded = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(embedded.vocab_size(), hf.vocab_size());
    assert_eq!(embedded.bos_id(), hf.bos_id());
    assert_eq!(embedded.eos_id(), hf.eos_id());
    for text in &texts {
        for parse_special in [false, true] {
            let a = embedded.encode(text, false, parse_special).unwrap();
            let b = hf.encode(text, false, parse_special).unwrap();
            assert_eq!(a, b, "{text:?} parse_special={parse_special}");
            assert_eq!(embedded.decode(&a).unwrap(), hf.decode(&b).unwrap());
        }
    }
    // load() picks the reader from the path.
    let by_path = Tokenizer::load(&dir.join("model.f32.gguf")).unwrap();
    assert_eq!(
        by_path.encode("the experts", false, false).unwrap(),
        hf.encode("the experts", false, false).unwrap()
    );
    assert!(Tokenizer::load(&dir.join("hf")).is_ok());
    assert!(Tokenizer::load(&dir.join("no-such-file.gguf")).is_err());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let tok = Tokenizer::from_hf_dir(&repo().join("tests/fixtures/llama/hf")).unwrap();
    assert!(tok.decode(&[100_000]).is_err());
    assert!(tok.stream_decoder().push(u32::MAX).is_err());
    // A directory without tokenizer.json.
    let empty = std::env::temp_dir().join(format!("mixture-tok-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    assert!(Tokenizer::from_hf_dir(&empty).is_err());
    std::fs::write(empty.join("tokenizer.json"), "{not json").unwrap();
    assert!(Tokenizer::from_hf_dir(&empty).is_err());
    std::fs::remove_dir_all(&empty).unwrap();
}
