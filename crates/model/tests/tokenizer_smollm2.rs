//! SmolLM2-135M-Instruct's GGUF tokenizer against llama.cpp's tokenization of the prompts in
//! tests/fixtures/smollm2/greedy.json (the model comes from tools/fetch_smollm2.sh).

use mixture_model::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn model_path() -> Option<PathBuf> {
    let cache = std::env::var_os("MIXTURE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mixture")))?;
    let path = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} not found; run tools/fetch_smollm2.sh to fetch it",
            path.display()
        );
        None
    }
}

#[test]
fn smollm2_prompts_tokenize_as_llama_cpp() {
    let Some(path) = model_path() else { return };
    let tok = Tokenizer::load(&path).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/smollm2/greedy.json");
    let greedy: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let cases = greedy["cases"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = case["prompt_text"].as_str().unwrap();
        let special = case["special"].as_bool().unwrap_or(false);
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        // llama.cpp's prompt tokenization: add_special (SmolLM2 adds no BOS), specials parsed
        // in the chat case.
        let got = tok.encode(text, true, special).unwrap();
        assert_eq!(got, want, "case {name}");
        assert_eq!(tok.decode(&got).unwrap(), text, "case {name}");
        if let Some(new_text) = case["new_text"].as_str() {
            let new_ids: Vec<u32> = case["new_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            // The fixture's text is llama.cpp's rendering, which leaves control tokens out.
            assert_eq!(
                tok.decode_skip_special(&new_ids).unwrap(),
                new_text,
                "case {name} new_text"
            );
            let mut stream = tok.stream_decoder().skip_special(true);
            let mut streamed = String::new();
            for &id in &new_ids {
                streamed.push_str(&stream.push(id).unwrap());
            }
            streamed.push_str(&stream.finish());
            assert_eq!(streamed, new_text, "case {name} streamed");
        }
    }
    // Chat markers: `<|im_end|>` (id 2, the GGUF's EOS) ends a turn.
    assert_eq!(tok.token_text(2), Some("<|im_end|>"));
    assert!(tok.eos_ids().contains(&2));
    assert!(tok.is_special(1));
    assert_eq!(tok.vocab_size(), 49152);
}
