//! Streaming decode: token by token it never splits a UTF-8 character, and what it yields,
//! concatenated, is the whole decode. Random ids over the tiny fixture's byte-level vocabulary
//! (always present) and, when tools/fetch_llama_cpp_sdist.sh has run, over llama.cpp's qwen2
//! (byte-level BPE) and llama-spm (SentencePiece with byte fallback) vocabularies.

use mixture_model::gguf;
use mixture_model::tokenizer::Tokenizer;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SPM_SPACE: char = '\u{2581}';

fn tiny() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama/hf");
        Tokenizer::from_hf_dir(&dir).unwrap()
    })
}

fn vocab(name: &str) -> Option<Tokenizer> {
    let cache = std::env::var_os("MIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mixture")))?;
    let path = cache.join(format!(
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-{name}.gguf"
    ));
    if !path.is_file() {
        eprintln!(
            "SKIPPED {name}: run tools/fetch_llama_cpp_sdist.sh for llama.cpp's vocabularies"
        );
        return None;
    }
    Some(Tokenizer::from_gguf(&gguf::open(&path).unwrap()).unwrap())
}

fn qwen2() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| vocab("qwen2")).as_ref()
}

fn llama_spm() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| vocab("llama-spm")).as_ref()
}

/// Stream `ids` (selected modulo the vocabulary) and compare with the whole decode.
fn check(tok: &Tokenizer, raw: &[u32]) -> Result<(), TestCaseError> {
    let n = tok.vocab_size() as u32;
    let ids: Vec<u32> = raw.iter().map(|&x| x % n).collect();
    let whole = tok.decode(&ids).unwrap();
    let mut stream = tok.stream_decoder();
    let mut chunks = Vec::new();
    for &id in &ids {
        chunks.push(stream.push(id).unwrap());
    }
    chunks.push(stream.finish());
    let joined: String = chunks.concat();
    prop_assert_eq!(&joined, &whole);
    if !whole.contains('\u{FFFD}') {
        // Valid text never has a replacement character inserted by a split.
        for c in &chunks {
            prop_assert!(
                !c.contains(char::REPLACEMENT_CHARACTER),
                "chunk {:?} of {:?}",
                c,
                whole
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn stream_equals_whole_decode_tiny(ids in prop::collection::vec(any::<u32>(), 0..48)) {
        check(tiny(), &ids)?;
    }

    #[test]
    fn stream_equals_whole_decode_qwen2(ids in prop::collection::vec(any::<u32>(), 0..48)) {
        if let Some(tok) = qwen2() {
            check(tok, &ids)?;
        }
    }

    #[test]
    fn stream_equals_whole_decode_llama_spm(ids in prop::collection::vec(any::<u32>(), 0..48)) {
        if let Some(tok) = llama_spm() {
            check(tok, &ids)?;
        }
    }

    /// Real text cut into tokens streams back exactly, with no replacement characters.
    #[test]
    fn stream_of_encoded_text_is_the_text(text in "\\PC{0,40}") {
        prop_assume!(!text.contains(char::REPLACEMENT_CHARACTER));
        // SentencePiece reads U+2581 as a space: such text decodes with spaces.
        prop_assume!(!text.contains(SPM_SPACE));
        let mut toks = vec![tiny()];
        toks.extend(qwen2());
        toks.extend(llama_spm());
        for tok in toks {
            let ids = tok.encode(&text, false, false).unwrap();
            let mut stream = tok.stream_decoder();
            let mut out = String::new();
            for &id in &ids {
                let chunk = stream.push(id).unwrap();
                prop_assert!(!chunk.contains(char::REPLACEMENT_CHARACTER), "{:?}", chunk);
                out.push_str(&chunk);
            }
            prop_assert!(!stream.has_pending());
            out.push_str(&stream.finish());
            prop_assert_eq!(&out, &tok.decode(&ids).unwrap());
            prop_assert_eq!(&out, &text);
        }
    }
}

#[test]
fn a_four_byte_character_is_held_until_complete() {
    let tok = tiny();
    let ids = tok.encode("a😀b", false, false).unwrap();
    // The tiny vocabulary has no merges inside the emoji: one token per byte.
    assert_eq!(ids.len(), 6, "{ids:?}");
    let mut stream = tok.stream_decoder();
    let out: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert_eq!(out, ["a", "", "", "", "😀", "b"]);
    assert_eq!(stream.finish(), "");
    // A character cut off at the end becomes one replacement character, as decode does.
    let cut = &ids[..3];
    let mut stream = tok.stream_decoder();
    let streamed: String = cut.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert_eq!(streamed, "a");
    assert_eq!(stream.finish(), "\u{FFFD}");
    assert_eq!(tok.decode(cut).unwrap(), "a\u{FFFD}");
}
