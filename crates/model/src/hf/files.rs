//! Safetensors files: find them (`model.safetensors` or a sharded
//! `model.safetensors.index.json`), memory-map each, and parse the header into typed views over
//! the mapped bytes (no copy).
//!
//! Layout: 8 bytes little-endian header length `n`, `n` bytes of JSON
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data;
//! offsets are relative to the end of the header. Every number is checked against the file.

use crate::error::{ModelError, Result};
use crate::tensor::{Storage, Tensor};
use memmap2::Mmap;
use mixture_kernels::DType;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn hf_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Hf {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The weight files of a checkpoint directory, in a stable order, and for a sharded checkpoint
/// the index's `weight_map` (tensor name → file name).
pub struct WeightFiles {
    pub files: Vec<PathBuf>,
    pub weight_map: Option<BTreeMap<String, String>>,
}

/// Locate the weight files: `model.safetensors.index.json` if present, else `model.safetensors`.
pub fn find_weight_files(dir: &Path) -> Result<WeightFiles> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read(&index).map_err(|source| ModelError::Io {
            path: index.clone(),
            source,
        })?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| hf_err(&index, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| hf_err(&index, "no `weight_map` object"))?;
        let mut weight_map = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| hf_err(&index, format!("weight_map[`{tensor}`] is not a string")))?;
            check_shard_name(&index, file)?;
            if !names.iter().any(|n| n == file) {
                names.push(file.to_string());
            }
            weight_map.insert(tensor.clone(), file.to_string());
        }
        if names.is_empty() {
            return Err(hf_err(&index, "`weight_map` is empty"));
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for n in names {
            let p = dir.join(&n);
            if !p.is_file() {
                return Err(hf_err(
                    &index,
                    format!("shard `{n}` named in weight_map does not exist"),
                ));
            }
            files.push(p);
        }
        return Ok(WeightFiles {
            files,
            weight_map: Some(weight_map),
        });
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(WeightFiles {
            files: vec![single],
            weight_map: None,
        });
    }
    Err(hf_err(
        dir,
        "no model.safetensors or model.safetensors.index.json",
    ))
}

/// A shard name must be a plain file name inside the directory.
fn check_shard_name(index: &Path, file: &str) -> Result<()> {
    let p = Path::new(file);
    let plain = p.components().count() == 1
        && matches!(p.components().next(), Some(std::path::Component::Normal(_)));
    if !plain {
        return Err(hf_err(
            index,
            format!("shard `{file}` is not a plain file name in the checkpoint directory"),
        ));
    }
    Ok(())
}

/// A tensor as stored, before name mapping.
pub struct RawTensor {
    pub tensor: Tensor,
    /// The file it comes from (for error messages).
    pub file: usize,
}

/// The safetensors dtype names mixture reads.
fn dtype_from_str(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F8_E4M3" => DType::F8E4M3,
        _ => return None,
    })
}

/// Memory-map one safetensors file and return its tensors (name → tensor) as mapped views.
/// Tensors for which `skip(name)` is true are not checked for dtype and not returned.
pub fn read_safetensors(path: &Path, skip: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file
        .metadata()
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if file_len < 8 {
        return Err(hf_err(
            path,
            format!("safetensors file of {file_len} bytes is too short for a header"),
        ));
    }
    // SAFETY: the map is read-only; as with every mmap-based loader, the file must not be
    // truncated or rewritten while the model is loaded.
    let map = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let map = Arc::new(map);
    let len = map.len() as u64;
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(map.get(..8).ok_or_else(|| {
        hf_err(
            path,
            format!("safetensors file of {len} bytes is too short for a header"),
        )
    })?);
    let header_len = u64::from_le_bytes(n8);
    // `len >= 8` here: the first 8 bytes were read.
    if header_len > len - 8 {
        return Err(hf_err(
            path,
            format!(
                "safetensors header length {header_len} runs past the end of the file ({len} bytes)"
            ),
        ));
    }
    // Both fit in usize: they are at most the mapped length.
    let data_start = 8 + header_len as usize;
    let header_bytes = map
        .get(8..data_start)
        .ok_or_else(|| hf_err(path, "header out of range"))?;
    let header: Value = serde_json::from_slice(header_bytes)
        .map_err(|e| hf_err(path, format!("safetensors header is not valid JSON: {e}")))?;
    let entries = header
        .as_object()
        .ok_or_else(|| hf_err(path, "safetensors header is not a JSON object"))?;
    let data_len = map.len() - data_start;

    let mut out = Vec::with_capacity(entries.len());
    for (name, info) in entries {
        if name == "__metadata__" || skip(name) {
            continue;
        }
        let bad = |msg: String| hf_err(path, format!("tensor `{name}`: {msg}"));
        let info = info
            .as_object()
            .ok_or_else(|| bad("header entry is not an object".into()))?;
        let dtype_s = info
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing `dtype`".into()))?;
        let dtype = dtype_from_str(dtype_s).ok_or_else(|| ModelError::UnsupportedType {
            name: name.clone(),
            dtype: dtype_s.to_string(),
        })?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing `shape`".into()))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("`shape` must be a list of non-negative integers".into()))?;
        let offsets = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad("`data_offsets` must be [begin, end]".into()))?;
        let (begin, end) = match offsets.as_slice() {
            [b, e] => match (b.as_u64(), e.as_u64()) {
                (Some(b), Some(e)) => (b, e),
                _ => return Err(bad("`data_offsets` must be non-negative integers".into())),
            },
            _ => return Err(bad("`data_offsets` must be [begin, end]".into())),
        };
        if begin > end || end > data_len as u64 {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] out of range (data section is {data_len} bytes)"
            )));
        }
        let numel = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        let expected = dtype
            .checked_bytes(numel)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if end - begin != expected {
            return Err(bad(format!(
                "{} bytes for shape {shape:?} of {dtype}, expected {expected}",
                end - begin
            )));
        }
        out.push((
            name.clone(),
            Tensor {
                dtype,
                shape,
                data: Storage::Mapped {
                    map: map.clone(),
                    offset: data_start + begin as usize,
                    len: expected as usize,
                },
            },
        ));
    }
    Ok(out)
}

/// Read every weight file of a checkpoint; for a sharded checkpoint, check that each tensor
/// of the index is in the file it names. Returns HF name → tensor.
pub fn read_all(
    wf: &WeightFiles,
    skip: &dyn Fn(&str) -> bool,
) -> Result<BTreeMap<String, RawTensor>> {
    let mut all: BTreeMap<String, RawTensor> = BTreeMap::new();
    for (i, path) in wf.files.iter().enumerate() {
        for (name, tensor) in read_safetensors(path, skip)? {
            if let Some(prev) = all.get(&name) {
                let prev_file = wf.files.get(prev.file).cloned().unwrap_or_default();
                return Err(hf_err(
                    path,
                    format!("tensor `{name}` is also in {}", prev_file.display()),
                ));
            }
            all.insert(name, RawTensor { tensor, file: i });
        }
    }
    if let Some(wm) = &wf.weight_map {
        for (name, file) in wm {
            if skip(name) {
                continue;
            }
            let found = all
                .get(name)
                .and_then(|r| wf.files.get(r.file))
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned());
            if found.as_deref() != Some(file.as_str()) {
                let dir = wf
                    .files
                    .first()
                    .and_then(|p| p.parent())
                    .unwrap_or(Path::new("."));
                return Err(hf_err(
                    &dir.join("model.safetensors.index.json"),
                    format!("tensor `{name}` is not in shard `{file}` as weight_map says"),
                ));
            }
        }
    }
    Ok(all)
}
