//! `tokenizer.json` (Hugging Face directories), run by `tokenizers` itself.
//!
//! Special tokens come from `tokenizer_config.json` (`bos_token`, `eos_token`),
//! `generation_config.json` (`eos_token_id`, one id or a list) and `config.json`. Decoding uses
//! per-token bytes worked out from the declared decoder: byte-level (GPT-2 table, falling back
//! to the token's UTF-8 as `tokenizers` does), SentencePiece-style (`▁` to space, `<0xXX>` byte
//! fallback, one leading space stripped), or, for any other decoder, `tokenizers`' decode of
//! the single token.

use super::bytes::{byte_level_bytes, parse_byte_token, spm_bytes};
use super::{Engine, Tokenizer};
use crate::error::{ModelError, Result};
use serde_json::Value as Json;
use std::path::Path;

/// Token texts that end a turn, looked up in the vocabulary.
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<｜end▁of▁sentence｜>",
];

fn hf_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Hf {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| hf_err(path, format!("invalid JSON: {e}")))
}

/// A special-token entry: a string or `{"content": ...}`.
fn token_content(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn ids_of(v: Option<&Json>) -> Vec<u32> {
    match v {
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .into_iter()
            .collect(),
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DecoderKind {
    ByteLevel,
    SentencePiece { strip_first_space: bool },
    Other,
}

fn decoder_kind(decoder: Option<&Json>) -> DecoderKind {
    let Some(d) = decoder else {
        return DecoderKind::Other;
    };
    let ty = d.get("type").and_then(Json::as_str).unwrap_or("");
    match ty {
        "ByteLevel" => DecoderKind::ByteLevel,
        "Metaspace" => {
            let scheme = d.get("prepend_scheme").and_then(Json::as_str);
            let add = d.get("add_prefix_space").and_then(Json::as_bool);
            DecoderKind::SentencePiece {
                strip_first_space: scheme.map_or(add.unwrap_or(true), |s| s != "never"),
            }
        }
        "Sequence" => {
            let steps: Vec<&Json> = d
                .get("decoders")
                .and_then(Json::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let has = |t: &str| {
                steps
                    .iter()
                    .any(|s| s.get("type").and_then(Json::as_str) == Some(t))
            };
            if has("ByteLevel") && steps.len() == 1 {
                return DecoderKind::ByteLevel;
            }
            let replaces_space = steps.iter().any(|s| {
                s.get("type").and_then(Json::as_str) == Some("Replace")
                    && s.pointer("/pattern/String").and_then(Json::as_str) == Some("\u{2581}")
                    && s.get("content").and_then(Json::as_str) == Some(" ")
            });
            let known = steps.iter().all(|s| {
                matches!(
                    s.get("type").and_then(Json::as_str),
                    Some("Replace" | "ByteFallback" | "Fuse" | "Strip")
                )
            });
            if replaces_space && known {
                let strip = steps.iter().any(|s| {
                    s.get("type").and_then(Json::as_str) == Some("Strip")
                        && s.get("content").and_then(Json::as_str) == Some(" ")
                        && s.get("start").and_then(Json::as_u64).unwrap_or(0) > 0
                });
                DecoderKind::SentencePiece {
                    strip_first_space: strip,
                }
            } else {
                DecoderKind::Other
            }
        }
        _ => DecoderKind::Other,
    }
}

pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
    if !dir.exists() {
        return Err(ModelError::NotFound(dir.to_path_buf()));
    }
    let path = dir.join("tokenizer.json");
    let json = read_json(&path)?.ok_or_else(|| {
        hf_err(
            dir,
            "no tokenizer.json (checkpoints with only tokenizer.model are not supported)",
        )
    })?;
    let full: tokenizers::Tokenizer = serde_json::from_value(json.clone())
        .map_err(|e| hf_err(&path, format!("cannot load tokenizer: {e}")))?;
    let mut plain = full.clone();
    plain.set_encode_special_tokens(true);

    let n_vocab = full.get_vocab_size(true);
    let mut tokens = vec![String::new(); n_vocab];
    for (text, id) in full.get_vocab(true) {
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = text;
        }
    }
    let mut special = vec![false; n_vocab];
    for (id, added) in full.get_added_tokens_decoder() {
        if let Some(slot) = special.get_mut(id as usize) {
            *slot = added.special;
        }
    }

    let kind = decoder_kind(json.get("decoder"));
    let pieces: Vec<Vec<u8>> = tokens
        .iter()
        .enumerate()
        .map(|(id, text)| match kind {
            DecoderKind::ByteLevel => byte_level_bytes(text),
            DecoderKind::SentencePiece { .. } => {
                parse_byte_token(text).map_or_else(|| spm_bytes(text), |b| vec![b])
            }
            DecoderKind::Other => full
                .decode(&[id as u32], false)
                .map(String::into_bytes)
                .unwrap_or_default(),
        })
        .collect();

    let config = read_json(&dir.join("tokenizer_config.json"))?;
    let gen = read_json(&dir.join("generation_config.json"))?;
    let model_cfg = read_json(&dir.join("config.json"))?;
    let lookup = |name: Option<String>| name.and_then(|n| full.token_to_id(&n));
    let bos = lookup(token_content(
        config.as_ref().and_then(|c| c.get("bos_token")),
    ))
    .or_else(|| {
        ids_of(gen.as_ref().and_then(|g| g.get("bos_token_id")))
            .into_iter()
            .next()
    })
    .or_else(|| {
        ids_of(model_cfg.as_ref().and_then(|g| g.get("bos_token_id")))
            .into_iter()
            .next()
    })
    .filter(|&id| (id as usize) < n_vocab);
    let eos = lookup(token_content(
        config.as_ref().and_then(|c| c.get("eos_token")),
    ))
    .or_else(|| {
        ids_of(model_cfg.as_ref().and_then(|g| g.get("eos_token_id")))
            .into_iter()
            .next()
    })
    .filter(|&id| (id as usize) < n_vocab);

    let mut eos_ids: Vec<u32> = Vec::new();
    let candidates = eos
        .into_iter()
        .chain(ids_of(gen.as_ref().and_then(|g| g.get("eos_token_id"))))
        .chain(ids_of(
            model_cfg.as_ref().and_then(|g| g.get("eos_token_id")),
        ))
        .chain(EOG_NAMES.iter().filter_map(|n| full.token_to_id(n)));
    for id in candidates {
        if (id as usize) < n_vocab && !eos_ids.contains(&id) {
            eos_ids.push(id);
        }
    }

    // What the post-processor adds around a text.
    let probe = |add: bool| -> Result<Vec<u32>> {
        full.encode_fast("", add)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| hf_err(&path, format!("tokenizer: {e}")))
    };
    let with = probe(true)?;
    let add_bos = bos.is_some() && with.first() == bos.as_ref();
    let add_eos = eos.is_some() && with.last() == eos.as_ref() && !(add_bos && with.len() == 1);

    Ok(Tokenizer {
        engine: Engine::Hf {
            full: Box::new(full),
            plain: Box::new(plain),
        },
        tokens,
        pieces,
        special,
        bos,
        eos,
        eos_ids,
        add_bos,
        add_eos,
        strip_first_space: matches!(
            kind,
            DecoderKind::SentencePiece {
                strip_first_space: true
            }
        ),
    })
}
