//! Tokenizers embedded in GGUF metadata (`tokenizer.ggml.*`), rebuilt on `tokenizers` models
//! with llama.cpp's behaviour:
//!
//! - `gpt2`: byte-level BPE. Vocabulary and merges as stored; the pre-tokenizer named by
//!   `tokenizer.ggml.pre` ([`super::pretok`]); no normalizer.
//! - `llama`: SentencePiece BPE (llama.cpp's `llm_tokenizer_spm`). llama.cpp merges the adjacent
//!   pair whose concatenation is a token with the highest score, leftmost first; that is a BPE
//!   whose merges are every split of every token into two tokens, ranked by the whole token's
//!   score. Characters without a token fall back to `<0xXX>` byte tokens. Spaces become `▁` and
//!   each text fragment gets a leading `▁` when `add_space_prefix` is set (the default).
//!
//! Special tokens are not given to `tokenizers`: [`super::Tokenizer`] cuts them out first, as
//! llama.cpp does (control and unknown tokens only when asked to parse specials, user-defined
//! tokens always).

use super::bytes::{byte_level_bytes, parse_byte_token, spm_bytes};
use super::pretok;
use super::{Engine, Special, Tokenizer};
use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, Value};
use std::collections::{HashMap, HashSet};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSeq};
use tokenizers::NormalizerWrapper;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const UNUSED: i64 = 5;
    pub const BYTE: i64 = 6;
}
use token_type as tt;

/// End-of-generation token texts llama.cpp recognises by name (subset of `special_eog_ids`).
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

fn bad(key: &str, msg: impl Into<String>) -> ModelError {
    ModelError::BadKey {
        key: key.to_string(),
        msg: msg.into(),
    }
}

fn array<'a>(file: &'a GgufFile, key: &str) -> Result<Option<&'a [Value]>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_array()
            .map(Some)
            .ok_or_else(|| bad(key, format!("expected an array, found {}", v.type_name()))),
    }
}

fn strings(file: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    let Some(values) = array(file, key)? else {
        return Ok(None);
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                bad(
                    key,
                    format!("element {i}: expected a string, found {}", v.type_name()),
                )
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn opt_id(file: &GgufFile, key: &str, n_vocab: usize) -> Result<Option<u32>> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    // llama.cpp writes -1 (as i32/u32::MAX) for "none" in some converters.
    if v.as_i64() == Some(-1) || v.as_u64() == Some(u64::from(u32::MAX)) {
        return Ok(None);
    }
    let id = v
        .as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| bad(key, format!("expected a token id, found {v:?}")))?;
    if id as usize >= n_vocab {
        return Err(bad(
            key,
            format!("token id {id} is outside the vocabulary (size {n_vocab})"),
        ));
    }
    Ok(Some(id))
}

fn opt_bool(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(key, format!("expected a bool, found {}", v.type_name()))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ByteLevelBpe,
    SentencePiece,
}

/// Build a [`Tokenizer`] from a GGUF file's `tokenizer.ggml.*` metadata.
pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let model_key = "tokenizer.ggml.model";
    let model_name = file
        .get(model_key)
        .ok_or_else(|| ModelError::MissingKey(model_key.to_string()))?
        .as_str()
        .ok_or_else(|| bad(model_key, "expected a string"))?;
    let kind = match model_name {
        "gpt2" => Kind::ByteLevelBpe,
        "llama" => Kind::SentencePiece,
        other => {
            return Err(bad(
                model_key,
                format!("unsupported tokenizer model `{other}` (supported: gpt2, llama)"),
            ))
        }
    };

    let tokens_key = "tokenizer.ggml.tokens";
    let tokens =
        strings(file, tokens_key)?.ok_or_else(|| ModelError::MissingKey(tokens_key.to_string()))?;
    let n_vocab = tokens.len();
    if n_vocab == 0 || u32::try_from(n_vocab).is_err() {
        return Err(bad(tokens_key, format!("bad vocabulary size {n_vocab}")));
    }

    let types_key = "tokenizer.ggml.token_type";
    let types: Vec<i64> = match array(file, types_key)? {
        None => vec![tt::NORMAL; n_vocab],
        Some(values) => {
            if values.len() != n_vocab {
                return Err(bad(
                    types_key,
                    format!("{} entries for {n_vocab} tokens", values.len()),
                ));
            }
            values
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| bad(types_key, "expected integers"))
                })
                .collect::<Result<_>>()?
        }
    };

    // Specials from the file's keys. SentencePiece vocabularies without them use the
    // SentencePiece convention (unk 0, bos 1, eos 2) as llama.cpp does; byte-level BPE has no
    // convention (llama.cpp's fallback id 11 is not one), so none is assumed.
    let (mut bos, mut eos, mut unk) = match kind {
        Kind::ByteLevelBpe => (None, None, None),
        Kind::SentencePiece => (Some(1u32), Some(2), Some(0)),
    };
    let in_vocab = |id: Option<u32>| id.filter(|&i| (i as usize) < n_vocab);
    bos = in_vocab(bos);
    eos = in_vocab(eos);
    unk = in_vocab(unk);
    if file.get("tokenizer.ggml.bos_token_id").is_some() {
        bos = opt_id(file, "tokenizer.ggml.bos_token_id", n_vocab)?;
    }
    if file.get("tokenizer.ggml.eos_token_id").is_some() {
        eos = opt_id(file, "tokenizer.ggml.eos_token_id", n_vocab)?;
    }
    if file.get("tokenizer.ggml.unknown_token_id").is_some() {
        unk = opt_id(file, "tokenizer.ggml.unknown_token_id", n_vocab)?;
    }
    let eot = opt_id(file, "tokenizer.ggml.eot_token_id", n_vocab)?;
    let eom = opt_id(file, "tokenizer.ggml.eom_token_id", n_vocab)?;

    let pre_name = match file.get("tokenizer.ggml.pre") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| bad("tokenizer.ggml.pre", "expected a string"))?,
        ),
    };
    let pre = match kind {
        Kind::ByteLevelBpe => Some(pretok::spec_for(pre_name)?),
        Kind::SentencePiece => None,
    };

    let default_add_bos = match kind {
        Kind::SentencePiece => true,
        Kind::ByteLevelBpe => pre.is_some_and(|p| p.ignore_merges),
    };
    let add_bos = opt_bool(file, "tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos);
    let add_eos = opt_bool(file, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let add_space_prefix =
        opt_bool(file, "tokenizer.ggml.add_space_prefix")?.unwrap_or(kind == Kind::SentencePiece);
    if add_bos && bos.is_none() {
        return Err(bad(
            "tokenizer.ggml.add_bos_token",
            "set, but the vocabulary has no BOS token",
        ));
    }
    if add_eos && eos.is_none() {
        return Err(bad(
            "tokenizer.ggml.add_eos_token",
            "set, but the vocabulary has no EOS token",
        ));
    }

    // The model's vocabulary: on duplicate texts ordinary tokens win, then the lowest id.
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(n_vocab);
    for ordinary in [true, false] {
        for (id, (text, &ty)) in tokens.iter().zip(&types).enumerate() {
            if (ty == tt::NORMAL || ty == tt::BYTE) == ordinary && !vocab.contains_key(text) {
                vocab.insert(text.clone(), id as u32);
            }
        }
    }

    let mut bpe = BPE::builder();
    let mut tok = match kind {
        Kind::ByteLevelBpe => {
            let merges_key = "tokenizer.ggml.merges";
            let stored = strings(file, merges_key)?
                .ok_or_else(|| ModelError::MissingKey(merges_key.to_string()))?;
            let merges = byte_level_merges(&stored, &vocab);
            let ignore = pre.is_some_and(|p| p.ignore_merges);
            bpe = bpe
                .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
                .ignore_merges(ignore)
                .cache_capacity(100_000);
            let model = bpe
                .build()
                .map_err(|e| ModelError::Invalid(format!("BPE vocabulary: {e}")))?;
            let mut tok = tokenizers::Tokenizer::new(model);
            if let Some(spec) = pre {
                tok.with_pre_tokenizer(Some(pretok::build(&spec)?));
            }
            tok
        }
        Kind::SentencePiece => {
            let scores_key = "tokenizer.ggml.scores";
            let scores: Vec<f32> = match array(file, scores_key)? {
                None => vec![0.0; n_vocab],
                Some(values) => {
                    if values.len() != n_vocab {
                        return Err(bad(
                            scores_key,
                            format!("{} entries for {n_vocab} tokens", values.len()),
                        ));
                    }
                    values
                        .iter()
                        .map(|v| {
                            v.as_f32()
                                .ok_or_else(|| bad(scores_key, "expected numbers"))
                        })
                        .collect::<Result<_>>()?
                }
            };
            let merges = spm_merges(&tokens, &scores, &vocab);
            bpe = bpe
                .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
                .byte_fallback(true)
                .cache_capacity(100_000);
            if let Some(u) = unk {
                bpe = bpe.unk_token(tokens[u as usize].clone());
            }
            let model = bpe
                .build()
                .map_err(|e| ModelError::Invalid(format!("SentencePiece vocabulary: {e}")))?;
            let mut tok = tokenizers::Tokenizer::new(model);
            let mut steps: Vec<NormalizerWrapper> = Vec::new();
            if add_space_prefix {
                steps.push(Prepend::new("\u{2581}".to_string()).into());
            }
            steps.push(
                Replace::new(" ", "\u{2581}")
                    .map_err(|e| ModelError::Invalid(format!("normalizer: {e}")))?
                    .into(),
            );
            tok.with_normalizer(Some(NormSeq::new(steps)));
            tok
        }
    };
    tok.with_post_processor(None::<tokenizers::PostProcessorWrapper>);

    // Pieces for decoding, as llama.cpp's token_to_piece renders them (specials included).
    let pieces: Vec<Vec<u8>> = tokens
        .iter()
        .zip(&types)
        .map(|(text, &ty)| match ty {
            tt::CONTROL | tt::UNKNOWN | tt::USER_DEFINED => text.as_bytes().to_vec(),
            tt::BYTE => parse_byte_token(text).map_or_else(Vec::new, |b| vec![b]),
            tt::UNUSED => Vec::new(),
            _ => match kind {
                Kind::ByteLevelBpe => byte_level_bytes(text),
                Kind::SentencePiece => spm_bytes(text),
            },
        })
        .collect();

    // Special tokens cut out before the model runs: longest text first, as llama.cpp.
    let mut specials: Vec<Special> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (text, &ty))| {
            !text.is_empty() && matches!(ty, tt::CONTROL | tt::UNKNOWN | tt::USER_DEFINED)
        })
        .map(|(id, (text, &ty))| Special {
            text: text.clone(),
            id: id as u32,
            control: ty != tt::USER_DEFINED,
        })
        .collect();
    specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));

    let special_flags: Vec<bool> = types
        .iter()
        .map(|&ty| matches!(ty, tt::CONTROL | tt::UNKNOWN))
        .collect();

    let mut eos_ids: Vec<u32> = Vec::new();
    let mut push = |id: Option<u32>| {
        if let Some(id) = id {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    };
    push(eos);
    push(eot);
    push(eom);
    for (id, text) in tokens.iter().enumerate() {
        if EOG_NAMES.contains(&text.as_str()) {
            push(Some(id as u32));
        }
    }

    Ok(Tokenizer {
        engine: Engine::Gguf {
            model: Box::new(tok),
            specials,
        },
        tokens,
        pieces,
        special: special_flags,
        bos,
        eos,
        eos_ids,
        add_bos,
        add_eos,
        strip_first_space: kind == Kind::SentencePiece && add_space_prefix,
    })
}

/// GGUF merges ("left right", split at the first space after the first character) that the
/// vocabulary can express, first occurrence kept.
fn byte_level_merges(stored: &[String], vocab: &HashMap<String, u32>) -> Vec<(String, String)> {
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(stored.len());
    let mut merges = Vec::with_capacity(stored.len());
    for m in stored {
        let Some((pos, _)) = m.char_indices().skip(1).find(|&(_, c)| c == ' ') else {
            continue;
        };
        let (left, right) = (&m[..pos], &m[pos + 1..]);
        if !vocab.contains_key(left) || !vocab.contains_key(right) {
            continue;
        }
        if !vocab.contains_key(&format!("{left}{right}")) {
            continue;
        }
        if seen.insert((left, right)) {
            merges.push((left.to_string(), right.to_string()));
        }
    }
    merges
}

/// SentencePiece merges: every split of every token into two tokens, best whole-token score
/// first (ties: lower token id, then the split further left).
fn spm_merges(
    tokens: &[String],
    scores: &[f32],
    vocab: &HashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, usize, &str, &str)> = Vec::new();
    for (id, text) in tokens.iter().enumerate() {
        // Only the id the vocabulary resolves this text to can be produced by a merge.
        if vocab.get(text) != Some(&(id as u32)) {
            continue;
        }
        let score = scores.get(id).copied().unwrap_or(0.0);
        for (pos, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(pos);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                ranked.push((score, id as u32, pos, left, right));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(ranked.len());
    ranked
        .into_iter()
        .filter(|&(_, _, _, l, r)| seen.insert((l, r)))
        .map(|(_, _, _, l, r)| (l.to_string(), r.to_string()))
        .collect()
}
