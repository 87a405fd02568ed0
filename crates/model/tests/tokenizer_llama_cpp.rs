//! llama.cpp's own tokenizer vectors: `models/ggml-vocab-*.gguf` (vocabulary only) with their
//! `.inp` (texts separated by `\n__ggml_vocab_test__\n`) and `.out` (one line of ids per text)
//! files, from the llama-cpp-python sdist (`tools/fetch_llama_cpp_sdist.sh`). As in llama.cpp's
//! `tests/test-tokenizer-0.cpp`, texts are tokenized without BOS/EOS and without parsing
//! special tokens, and every line must match exactly.

use mixture_model::gguf;
use mixture_model::tokenizer::Tokenizer;
use std::path::PathBuf;

const VOCABS: &[&str] = &[
    "deepseek-llm",
    "deepseek-coder",
    "qwen2",
    "llama-bpe",
    "llama-spm",
    "gpt-2",
];

fn models_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("MIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mixture")))?;
    let dir = cache.join("llama_cpp_python-0.3.36/vendor/llama.cpp/models");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} not found; run tools/fetch_llama_cpp_sdist.sh to fetch llama.cpp's tokenizer vectors",
            dir.display()
        );
        None
    }
}

fn read_cases(dir: &std::path::Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    // As llama.cpp reads it: pieces between separators, no empty piece after the last one.
    let sep = "\n__ggml_vocab_test__\n";
    let body = inp.strip_suffix(sep).unwrap_or(&inp);
    let texts: Vec<&str> = body.split(sep).collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse::<u32>().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: .inp and .out disagree in length"
    );
    texts.into_iter().map(str::to_string).zip(ids).collect()
}

fn load(dir: &std::path::Path, name: &str) -> Tokenizer {
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    let file = gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check_vocab(name: &str) {
    let Some(dir) = models_dir() else { return };
    let tok = load(&dir, name);
    let cases = read_cases(&dir, name);
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false, false).unwrap();
        if &got != want {
            failures.push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
            continue;
        }
        // Byte-level BPE is lossless; SentencePiece drops only the space prefix it added.
        let back = tok.decode(&got).unwrap();
        if &back != text {
            failures.push(format!("  round trip {text:?} -> {back:?}"));
        }
    }
    eprintln!(
        "{name}: {}/{} vectors pass",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn deepseek_llm() {
    check_vocab("deepseek-llm");
}

#[test]
fn deepseek_coder() {
    check_vocab("deepseek-coder");
}

#[test]
fn qwen2() {
    check_vocab("qwen2");
}

#[test]
fn llama_bpe() {
    check_vocab("llama-bpe");
}

#[test]
fn llama_spm() {
    check_vocab("llama-spm");
}

#[test]
fn gpt_2() {
    check_vocab("gpt-2");
}

#[test]
fn vocab_list_matches_the_files_present() {
    let Some(dir) = models_dir() else { return };
    for name in VOCABS {
        assert!(
            dir.join(format!("ggml-vocab-{name}.gguf.inp")).is_file(),
            "{name}"
        );
    }
}

/// llama.cpp's `tests/test-tokenizer-1-spm.cpp` on llama-spm: every token's text tokenizes
/// (parsing specials) back to the same text, and every code point round trips (U+2581 aside).
#[test]
fn llama_spm_round_trips_every_token_and_code_point() {
    let Some(dir) = models_dir() else { return };
    let tok = load(&dir, "llama-spm");
    for id in 0..tok.vocab_size() as u32 {
        let text = tok.decode(&[id]).unwrap();
        let ids = tok.encode(&text, false, true).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "token {id}");
    }
    let mut failures = Vec::new();
    for cp in 0u32..0x11_0000 {
        if (0xD800..=0xDFFF).contains(&cp) || (0x4_0000..=0xE_0000).contains(&cp) || cp == 0x2581 {
            continue;
        }
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        let s = c.to_string();
        let ids = tok.encode(&s, false, true).unwrap();
        if tok.decode(&ids).unwrap() != s {
            failures.push(cp);
        }
    }
    assert!(
        failures.is_empty(),
        "code points not round tripping: {failures:x?}"
    );
}
