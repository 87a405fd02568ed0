//! Typed errors for everything that reads files or checks shapes. Messages name the file, key,
//! tensor or shape at fault, on one line.

use mixture_kernels::KernelError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    #[error("{0}: not a GGUF file or a Hugging Face model directory (expected a .gguf file or a directory with config.json)")]
    UnknownFormat(PathBuf),
    #[error("{path}: invalid GGUF: {msg}")]
    Gguf { path: PathBuf, msg: String },
    #[error("{path}: invalid Hugging Face checkpoint: {msg}")]
    Hf { path: PathBuf, msg: String },
    #[error(
        "unsupported architecture `{0}` (supported: llama, qwen2, qwen3moe, mixtral, deepseek2)"
    )]
    UnknownArch(String),
    #[error("tensor `{name}` has unsupported type {dtype}")]
    UnsupportedType { name: String, dtype: String },
    #[error("missing metadata key `{0}`")]
    MissingKey(String),
    #[error("metadata key `{key}`: {msg}")]
    BadKey { key: String, msg: String },
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    #[error("tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("sequence of {len} tokens exceeds the context length {max}")]
    ContextOverflow { len: usize, max: usize },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

pub type Result<T> = std::result::Result<T, ModelError>;
