//! Model loading and the architectures.
//!
//! Data flows one way: file(s) → format reader ([`gguf`], [`hf`]) → [`ModelSpec`] +
//! [`WeightStore`] (canonical tensor names, typed views over memory-mapped bytes) →
//! [`arch::build`] → a stateless [`arch::Architecture`] that turns tokens into logits, using a
//! [`KvCache`] owned by the caller.

pub mod arch;
pub mod chat_template;
pub mod convert;
pub mod error;
pub mod footprint;
pub mod gguf;
pub mod hf;
pub mod kv;
pub mod load;
pub mod names;
pub mod spec;
pub mod tensor;
pub mod tokenizer;

pub use error::ModelError;
pub use kv::KvCache;
pub use load::{load, LoadedModel};
pub use spec::{Arch, HParams, ModelSpec};
pub use tensor::{Storage, Tensor, WeightStore};
