//! Pre-tokenizer regexes for the byte-level BPE vocabularies named by GGUF `tokenizer.ggml.pre`.
//!
//! llama.cpp (`src/llama-vocab.cpp`, `llm_tokenizer_bpe`) splits text with a list of regexes
//! applied one after another: each regex cuts every piece produced so far into its matches and
//! the gaps between them, keeping both. That is `tokenizers`' `Split` with the `Isolated`
//! behaviour, chained in a `Sequence`, followed by the GPT-2 byte mapping (`ByteLevel` without
//! its own regex). The patterns below are llama.cpp's, written for Rust's regex syntax.

use crate::error::{ModelError, Result};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

/// GPT-2's pattern (also the second half of the StarCoder/SmolLM list).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's pattern with the case-insensitive contractions spelled out (as llama.cpp does).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's pattern: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const DEEPSEEK_LLM: &[&str] = &[
    r##"[\r\n]"##,
    r##"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+"##,
    r##"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+"##,
    r##"\s+$"##,
    r##"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"##,
    r##"\p{N}+"##,
];

const DEEPSEEK_V3: &[&str] = &[
    r##"\p{N}{1,3}"##,
    r##"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+"##,
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

const DEEPSEEK_CODER: &[&str] = &[
    r##"[\r\n]"##,
    r##"\s?\p{L}+"##,
    r##"\s?\p{P}+"##,
    r##"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"##,
    r##"\p{N}"##,
];

/// StarCoder, Refact, Command-R, SmolLM, CodeShell, EXAONE, Minerva: digits one by one, then GPT-2.
const STARCODER: &[&str] = &[r"\p{N}", GPT2];

/// llama.cpp's fallback for BPE vocabularies whose pre-tokenizer is `default`.
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// How a GGUF byte-level BPE vocabulary pre-tokenizes, from its `tokenizer.ggml.pre` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreSpec {
    pub regexes: &'static [&'static str],
    /// Words that are whole tokens skip the merges (llama.cpp `ignore_merges`, Llama 3 family).
    pub ignore_merges: bool,
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` name (`None`/empty means llama.cpp's default).
pub fn spec_for(pre: Option<&str>) -> Result<PreSpec> {
    let plain = |regexes| PreSpec {
        regexes,
        ignore_merges: false,
    };
    let name = pre.unwrap_or("default");
    Ok(match name {
        "" | "default" => plain(DEFAULT),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => PreSpec {
            regexes: &[LLAMA3],
            ignore_merges: true,
        },
        "dbrx" | "smaug-bpe" => plain(&[LLAMA3]),
        "deepseek-llm" => plain(DEEPSEEK_LLM),
        "deepseek-coder" => plain(DEEPSEEK_CODER),
        "deepseek-v3" => plain(DEEPSEEK_V3),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "hunyuan" => plain(&[QWEN2]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            plain(STARCODER)
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "mpt" | "olmo" | "jais" | "trillion" => plain(&[GPT2]),
        other => {
            return Err(ModelError::BadKey {
                key: "tokenizer.ggml.pre".to_string(),
                msg: format!(
                    "unsupported pre-tokenizer `{other}` (supported: default, llama-bpe/llama3, \
                     deepseek-llm, deepseek-coder, deepseek-v3, qwen2, deepseek-r1-qwen, smollm, \
                     starcoder, gpt-2 and their aliases)"
                ),
            })
        }
    })
}

/// The `tokenizers` pre-tokenizer: the regex splits, then the GPT-2 byte mapping.
pub fn build(spec: &PreSpec) -> Result<PreTokenizerWrapper> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
    for re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| ModelError::Invalid(format!("pre-tokenizer regex `{re}`: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(Sequence::new(steps).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_pretokenizer_compiles() {
        for name in [
            "default",
            "llama-bpe",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "qwen2",
            "smollm",
            "gpt-2",
        ] {
            let spec = spec_for(Some(name)).unwrap();
            build(&spec).unwrap();
        }
        assert!(spec_for(Some("no-such-pre")).is_err());
    }
}
