//! GGUF reader: parse ([`parse`]), map metadata to a [`crate::ModelSpec`] ([`hparams`]) and
//! tensor names to the canonical scheme ([`tensors`]). Tensor data stays memory-mapped.
//!
//! Split models (`name-00001-of-00003.gguf`, as written by `gguf-split` and the converter's
//! `--split-max-*`) load as one: metadata from the first part, tensors from all. Each part
//! carries `split.no` (0-based), `split.count` and, in the first, `split.tensors.count`.

pub mod hparams;
pub mod parse;
pub mod tensors;

pub use hparams::spec_from_gguf;
pub use parse::{open, GgufFile, TensorInfo, Value};

use crate::error::{ModelError, Result};
use crate::load::LoadedModel;
use std::path::{Path, PathBuf};

pub const KEY_SPLIT_NO: &str = "split.no";
pub const KEY_SPLIT_COUNT: &str = "split.count";
pub const KEY_SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// Largest split count accepted (`split.count` is a u16).
const MAX_SPLITS: usize = u16::MAX as usize;

/// A split file name decomposed: `{prefix}-{part}-of-{count}.gguf`, 1-based `part`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    pub prefix: String,
    pub part: usize,
    pub count: usize,
    /// Digits used for the numbers (5 in llama.cpp's naming).
    pub width: usize,
}

impl SplitName {
    /// Parse a file name like `model-00002-of-00003.gguf`.
    pub fn parse(file_name: &str) -> Option<SplitName> {
        let stem = file_name.strip_suffix(".gguf")?;
        let (head, count) = stem.rsplit_once("-of-")?;
        let (prefix, part) = head.rsplit_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if prefix.is_empty() || !digits(part) || !digits(count) || part.len() != count.len() {
            return None;
        }
        let (part_n, count_n) = (part.parse().ok()?, count.parse().ok()?);
        if part_n == 0 || part_n > count_n {
            return None;
        }
        Some(SplitName {
            prefix: prefix.to_string(),
            part: part_n,
            count: count_n,
            width: part.len(),
        })
    }

    /// The file name of 1-based part `part`.
    pub fn file_name(&self, part: usize) -> String {
        format!(
            "{}-{:0w$}-of-{:0w$}.gguf",
            self.prefix,
            part,
            self.count,
            w = self.width
        )
    }
}

fn err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Gguf {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn split_key(file: &GgufFile, key: &str) -> Result<Option<usize>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| err(&file.path, format!("`{key}` is not a non-negative integer"))),
    }
}

/// Open every file of the model that `path` belongs to, first part first. A path that is not
/// part of a split set yields one file.
pub fn open_all(path: &Path) -> Result<Vec<GgufFile>> {
    let given = GgufFile::open(path)?;
    let meta_count = split_key(&given, KEY_SPLIT_COUNT)?.unwrap_or(1);
    let meta_no = split_key(&given, KEY_SPLIT_NO)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(SplitName::parse);
    let split = match name {
        Some(s) if s.count > 1 || meta_count > 1 => s,
        _ if meta_count > 1 => {
            return Err(err(
                path,
                format!(
                    "file is part {} of {meta_count} of a split model, but its name does not end in -NNNNN-of-NNNNN.gguf, so the other parts cannot be found",
                    meta_no.map_or_else(|| "?".to_string(), |n| (n + 1).to_string())
                ),
            ))
        }
        _ => return Ok(vec![given]),
    };
    if meta_count > 1 && meta_count != split.count {
        return Err(err(
            path,
            format!(
                "file name says {} parts but `{KEY_SPLIT_COUNT}` says {meta_count}",
                split.count
            ),
        ));
    }
    if split.count > MAX_SPLITS {
        return Err(err(path, format!("{} parts is too many", split.count)));
    }
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let mut given = Some(given);
    let mut files = Vec::with_capacity(split.count);
    for part in 1..=split.count {
        let file = if part == split.part {
            match given.take() {
                Some(f) => f,
                None => return Err(err(path, "split part opened twice")),
            }
        } else {
            let p: PathBuf = dir.join(split.file_name(part));
            if !p.is_file() {
                return Err(err(
                    &p,
                    format!(
                        "missing part {part} of {} of the split model {}",
                        split.count,
                        path.display()
                    ),
                ));
            }
            GgufFile::open(&p)?
        };
        if let Some(no) = split_key(&file, KEY_SPLIT_NO)? {
            if no + 1 != part {
                return Err(err(
                    &file.path,
                    format!("`{KEY_SPLIT_NO}` = {no} but the file name says part {part} (split.no is 0-based)"),
                ));
            }
        }
        if let Some(c) = split_key(&file, KEY_SPLIT_COUNT)? {
            if c != split.count {
                return Err(err(
                    &file.path,
                    format!(
                        "`{KEY_SPLIT_COUNT}` = {c} but the split set has {} parts",
                        split.count
                    ),
                ));
            }
        }
        files.push(file);
    }
    if let Some(first) = files.first() {
        if let Some(expected) = split_key(first, KEY_SPLIT_TENSORS_COUNT)? {
            let total: usize = files.iter().map(|f| f.tensors.len()).sum();
            if total != expected {
                return Err(err(
                    &first.path,
                    format!("`{KEY_SPLIT_TENSORS_COUNT}` = {expected} but the {} parts hold {total} tensors", files.len()),
                ));
            }
        }
    }
    Ok(files)
}

/// Load a GGUF model (one file, or any part of a split set).
pub fn load(path: &Path) -> Result<LoadedModel> {
    let files = open_all(path)?;
    let first = files.first().ok_or_else(|| err(path, "no GGUF files"))?;
    let token_embd_rows = files
        .iter()
        .find_map(|f| f.tensor_info(crate::names::TOKEN_EMBD))
        .and_then(|t| t.shape.first().copied());
    let spec = spec_from_gguf(first, token_embd_rows)?;
    let weights = tensors::canonical_weights(&files, &spec)?;
    Ok(LoadedModel {
        spec,
        weights,
        files: files.iter().map(|f| f.path.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        let s = SplitName::parse("DeepSeek-R1-Q4_K_M-00002-of-00011.gguf").unwrap();
        assert_eq!(s.prefix, "DeepSeek-R1-Q4_K_M");
        assert_eq!((s.part, s.count, s.width), (2, 11, 5));
        assert_eq!(s.file_name(1), "DeepSeek-R1-Q4_K_M-00001-of-00011.gguf");
        assert_eq!(SplitName::parse("model.gguf"), None);
        assert_eq!(SplitName::parse("model-00000-of-00002.gguf"), None);
        assert_eq!(SplitName::parse("model-00003-of-00002.gguf"), None);
        assert_eq!(SplitName::parse("-00001-of-00002.gguf"), None);
        assert_eq!(SplitName::parse("m-1-of-00002.gguf"), None);
    }
}
