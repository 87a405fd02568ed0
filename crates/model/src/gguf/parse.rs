//! The GGUF container: header, metadata, tensor infos and the memory-mapped data section.
//!
//! Layout (little-endian, versions 2 and 3):
//!
//! ```text
//! magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv × (key: string, type: u32, value)
//! n_tensors × (name: string, n_dims: u32, ne: u64 × n_dims, type: u32, offset: u64)
//! padding to `general.alignment` (default 32) | tensor data
//! ```
//!
//! A string is a u64 byte length followed by UTF-8 bytes; an array is an element type u32, a
//! u64 length and the elements. `ne` is innermost-first; [`TensorInfo::shape`] is outermost-first.
//!
//! Everything read from the file is untrusted: counts are checked against the bytes left before
//! anything is reserved, offsets and sizes use checked arithmetic, and every tensor must lie
//! inside the file.

use crate::error::{ModelError, Result};
use crate::tensor::{Storage, Tensor};
use memmap2::{Mmap, MmapOptions};
use mixture_kernels::DType;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Arrays nested deeper than this are refused (no real file nests more than one level).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Total elements over all metadata arrays of one file. Real files hold a few hundred thousand
/// (token lists, merges); the cap bounds the memory a hostile file can make us allocate.
pub const MAX_METADATA_ELEMENTS: u64 = 1 << 24;

const HEADER_BYTES: usize = 4 + 4 + 8 + 8;
/// Smallest possible metadata entry: key length, a 1-byte key, type, a 1-byte value.
const MIN_KV_BYTES: usize = 8 + 1 + 4 + 1;
/// Smallest possible tensor info: name length, a 1-byte name, n_dims, type, offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 1 + 4 + 4 + 8;
/// Reservations from file-provided counts never exceed this many elements up front.
const MAX_RESERVE: usize = 4096;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

/// GGUF value type ids.
pub mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

impl Value {
    /// The GGUF type id of this value.
    pub fn type_id(&self) -> u32 {
        use value_type as t;
        match self {
            Value::U8(_) => t::U8,
            Value::I8(_) => t::I8,
            Value::U16(_) => t::U16,
            Value::I16(_) => t::I16,
            Value::U32(_) => t::U32,
            Value::I32(_) => t::I32,
            Value::U64(_) => t::U64,
            Value::I64(_) => t::I64,
            Value::F32(_) => t::F32,
            Value::F64(_) => t::F64,
            Value::Bool(_) => t::BOOL,
            Value::String(_) => t::STRING,
            Value::Array(_) => t::ARRAY,
        }
    }

    /// Name of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }

    /// Any integer that is non-negative, as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// A float, or an integer converted to one.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A float (or integer) as f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            _ => self.as_f64().map(|v| v as f32),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor as described by the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name as stored (GGUF names; see [`super::tensors`] for the canonical mapping).
    pub name: String,
    pub dtype: DType,
    /// Outermost-first (PyTorch order): the reverse of GGUF's `ne`.
    pub shape: Vec<usize>,
    /// Offset from the start of the data section, as stored.
    pub offset: u64,
    /// Absolute byte range in the file.
    pub start: usize,
    pub len: usize,
}

/// A parsed GGUF file with its tensor data memory-mapped.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub alignment: usize,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the data section.
    pub data_offset: usize,
    map: Arc<Mmap>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Open and parse a GGUF file, memory-mapping it.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            return Err(ModelError::NotFound(path.to_path_buf()));
        }
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < HEADER_BYTES as u64 {
            return Err(gguf_err(
                path,
                format!("file is {len} bytes, too short for a GGUF header ({HEADER_BYTES} bytes)"),
            ));
        }
        // SAFETY: the map is read-only. Like every mmap-based reader we rely on the file not
        // being truncated or rewritten while it is mapped; all parsing is bounds-checked
        // against the length the map had when it was made.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        GgufFile::from_map(path, Arc::new(map))
    }

    /// Parse GGUF bytes held in memory (tests, fuzzing). `path` is used in messages only.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<GgufFile> {
        if bytes.len() < HEADER_BYTES {
            return Err(gguf_err(
                path,
                format!(
                    "file is {} bytes, too short for a GGUF header ({HEADER_BYTES} bytes)",
                    bytes.len()
                ),
            ));
        }
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut anon = MmapOptions::new().len(bytes.len()).map_anon().map_err(io)?;
        anon.copy_from_slice(bytes);
        let map = anon.make_read_only().map_err(io)?;
        GgufFile::from_map(path, Arc::new(map))
    }

    fn from_map(path: &Path, map: Arc<Mmap>) -> Result<GgufFile> {
        let parsed = Parser::new(path, &map).parse()?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            data_offset: parsed.data_offset,
            map,
        })
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.map.len()
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The info of a tensor by its stored name.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A view of a tensor's bytes in the mapped file (no copy).
    pub fn tensor(&self, info: &TensorInfo) -> Tensor {
        Tensor {
            dtype: info.dtype,
            shape: info.shape.clone(),
            data: Storage::Mapped {
                map: self.map.clone(),
                offset: info.start,
                len: info.len,
            },
        }
    }

    /// A view of a tensor by its stored name.
    pub fn tensor_by_name(&self, name: &str) -> Result<Tensor> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        Ok(self.tensor(info))
    }
}

/// Open and parse a GGUF file (one file; see [`super::load`] for split sets).
pub fn open(path: &Path) -> Result<GgufFile> {
    GgufFile::open(path)
}

fn gguf_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Gguf {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

struct Parsed {
    version: u32,
    alignment: usize,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    data_offset: usize,
}

struct Parser<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
    /// Metadata array elements still allowed (see [`MAX_METADATA_ELEMENTS`]).
    element_budget: u64,
}

impl<'a> Parser<'a> {
    fn new(path: &'a Path, buf: &'a [u8]) -> Parser<'a> {
        Parser {
            path,
            buf,
            pos: 0,
            element_budget: MAX_METADATA_ELEMENTS,
        }
    }

    fn err(&self, msg: impl Into<String>) -> ModelError {
        gguf_err(self.path, msg)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e).map(|s| (e, s))) {
            Some((e, s)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(format!(
                "truncated file: {what} at byte {} needs {n} bytes, only {} left",
                self.pos,
                self.remaining()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed string's bytes, the length bounded by what is left of the file.
    fn string_bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(self.err(format!(
                "{what} at byte {at} has length {len}, more than the {} bytes left in the file",
                self.remaining()
            )));
        }
        // len <= remaining <= usize::MAX here.
        self.take(len as usize, what)
    }

    /// A key or tensor name: must be valid UTF-8 and non-empty.
    fn name(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let bytes = self.string_bytes(what)?;
        if bytes.is_empty() {
            return Err(self.err(format!("{what} at byte {at} is empty")));
        }
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.err(format!("{what} at byte {at} is not valid UTF-8")))
    }

    fn parse(mut self) -> Result<Parsed> {
        let magic: [u8; 4] = self.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(self.err(format!(
                "bad magic {:?} (expected \"GGUF\"): not a GGUF file",
                String::from_utf8_lossy(&magic)
            )));
        }
        let version = self.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(self.err(
                    "unsupported GGUF version 1 (an early format; convert the model again)",
                ))
            }
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(self.err(format!(
                    "unsupported GGUF version {v}: this looks like a big-endian GGUF (version {}), only little-endian files are supported",
                    v.swap_bytes()
                )))
            }
            v => {
                return Err(self.err(format!(
                    "unsupported GGUF version {v} (supported: 2 and 3)"
                )))
            }
        }
        let n_tensors = self.u64("tensor count")?;
        let n_kv = self.u64("metadata count")?;
        let max_kv = (self.remaining() / MIN_KV_BYTES) as u64;
        if n_kv > max_kv {
            return Err(self.err(format!(
                "metadata count {n_kv} is impossible: the {} bytes after the header hold at most {max_kv} entries",
                self.remaining()
            )));
        }

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = self.name(&format!("metadata key #{i}"))?;
            let ty = self.u32(&format!("type of metadata key `{key}`"))?;
            let value = self.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(self.err(format!("duplicate metadata key `{key}`")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                let a = v.as_u64().ok_or_else(|| {
                    self.err(format!(
                        "general.alignment must be an unsigned integer, found {}",
                        v.type_name()
                    ))
                })?;
                if a == 0 || !a.is_power_of_two() || a > (1 << 30) {
                    return Err(self.err(format!(
                        "general.alignment = {a} is not a power of two between 1 and 2^30"
                    )));
                }
                a as usize
            }
        };

        let max_tensors = (self.remaining() / MIN_TENSOR_INFO_BYTES) as u64;
        if n_tensors > max_tensors {
            return Err(self.err(format!(
                "tensor count {n_tensors} is impossible: the {} bytes after the metadata hold at most {max_tensors} tensor infos",
                self.remaining()
            )));
        }
        // n_tensors <= max_tensors, which came from a usize.
        let mut tensors = Vec::with_capacity((n_tensors as usize).min(MAX_RESERVE));
        let mut seen = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let t = self.tensor_info(i)?;
            if !seen.insert(t.name.clone()) {
                return Err(self.err(format!("duplicate tensor name `{}`", t.name)));
            }
            tensors.push(t);
        }

        let data_offset = self
            .pos
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| self.err("data section offset overflows"))?;
        let file_len = self.buf.len();
        for t in &mut tensors {
            if t.offset % alignment as u64 != 0 {
                return Err(self.err(format!(
                    "tensor `{}` offset {} is not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            let start = usize::try_from(t.offset)
                .ok()
                .and_then(|o| o.checked_add(data_offset));
            let end = start.and_then(|s| s.checked_add(t.len));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => t.start = s,
                _ => {
                    return Err(self.err(format!(
                        "tensor `{}` ({} bytes at data offset {}, file offset {}) extends past the end of the file ({file_len} bytes)",
                        t.name,
                        t.len,
                        t.offset,
                        (data_offset as u128) + (t.offset as u128)
                    )))
                }
            }
        }

        Ok(Parsed {
            version,
            alignment,
            metadata,
            tensors,
            data_offset,
        })
    }

    /// Minimum encoded size of one value of type `ty`, or `None` for an unknown type.
    fn min_size(ty: u32) -> Option<usize> {
        use value_type as t;
        Some(match ty {
            t::U8 | t::I8 | t::BOOL => 1,
            t::U16 | t::I16 => 2,
            t::U32 | t::I32 | t::F32 => 4,
            t::U64 | t::I64 | t::F64 | t::STRING => 8,
            t::ARRAY => 12,
            _ => return None,
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        use value_type as t;
        Ok(match ty {
            t::U8 => Value::U8(u8::from_le_bytes(self.array(key)?)),
            t::I8 => Value::I8(i8::from_le_bytes(self.array(key)?)),
            t::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            t::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            t::U32 => Value::U32(u32::from_le_bytes(self.array(key)?)),
            t::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            t::U64 => Value::U64(u64::from_le_bytes(self.array(key)?)),
            t::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            t::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            t::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            t::BOOL => {
                let [b] = self.array::<1>(key)?;
                match b {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => {
                        return Err(self.err(format!(
                            "metadata key `{key}`: bool byte is {b}, expected 0 or 1"
                        )))
                    }
                }
            }
            // Values (token texts and the like) are kept even when not valid UTF-8: the
            // invalid bytes become U+FFFD. Keys and tensor names are checked strictly.
            t::STRING => Value::String(
                String::from_utf8_lossy(self.string_bytes(&format!("string value of `{key}`"))?)
                    .into_owned(),
            ),
            t::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "metadata key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
                    )));
                }
                let elem = self.u32(&format!("array element type of `{key}`"))?;
                let min = Self::min_size(elem).ok_or_else(|| {
                    self.err(format!(
                        "metadata key `{key}`: unknown array element type {elem}"
                    ))
                })?;
                let n = self.u64(&format!("array length of `{key}`"))?;
                let max = (self.remaining() / min) as u64;
                if n > max {
                    return Err(self.err(format!(
                        "metadata key `{key}`: array length {n} is impossible, the {} bytes left in the file hold at most {max} elements",
                        self.remaining()
                    )));
                }
                if n > self.element_budget {
                    return Err(self.err(format!(
                        "metadata key `{key}`: more than {MAX_METADATA_ELEMENTS} metadata array elements in total"
                    )));
                }
                self.element_budget -= n;
                let mut items = Vec::with_capacity((n as usize).min(MAX_RESERVE));
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(items)
            }
            other => {
                return Err(self.err(format!("metadata key `{key}`: unknown value type {other}")))
            }
        })
    }

    fn tensor_info(&mut self, i: u64) -> Result<TensorInfo> {
        let name = self.name(&format!("name of tensor #{i}"))?;
        let n_dims = self.u32(&format!("dimension count of tensor `{name}`"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(self.err(format!(
                "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS} are allowed)"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(self.u64(&format!("dimensions of tensor `{name}`"))?);
        }
        let type_id = self.u32(&format!("type of tensor `{name}`"))?;
        let offset = self.u64(&format!("offset of tensor `{name}`"))?;

        if let Some(d) = ne.iter().find(|&&d| d == 0 || d > i64::MAX as u64) {
            return Err(self.err(format!(
                "tensor `{name}` has an invalid dimension {} in {ne:?} (dimensions must be positive)",
                *d as i64
            )));
        }
        let numel = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                self.err(format!(
                    "tensor `{name}` dimensions {ne:?} overflow the element count"
                ))
            })?;
        let dtype = DType::from_ggml_id(type_id).ok_or_else(|| ModelError::UnsupportedType {
            name: name.clone(),
            dtype: format!("{} (ggml type {type_id})", DType::ggml_id_name(type_id)),
        })?;
        let block = dtype.block_size() as u64;
        let inner = ne.first().copied().unwrap_or(1);
        if inner % block != 0 {
            return Err(self.err(format!(
                "tensor `{name}` of type {dtype}: innermost dimension {inner} is not a multiple of the block size {block}"
            )));
        }
        let len = dtype
            .checked_bytes(numel)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| {
                self.err(format!(
                    "tensor `{name}` of type {dtype} with dimensions {ne:?}: byte size overflows"
                ))
            })?;
        let shape = ne
            .iter()
            .rev()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| self.err(format!("tensor `{name}` dimensions {ne:?} too large")))?;
        Ok(TensorInfo {
            name,
            dtype,
            shape,
            offset,
            start: 0,
            len,
        })
    }
}
