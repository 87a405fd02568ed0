//! Sessions over a model: the KV cache, prefill and decode steps, sampling and scoring.
//! The batching scheduler and its prefix cache ([`scheduler`]); speculative decoding comes
//! later and lives here too.

pub mod constrain;
pub mod reasoning;
pub mod sampler;
pub mod scheduler;
pub mod session;
pub mod toolcalls;

pub use sampler::{Sampler, SamplingParams};
pub use session::{Session, StopReason};

/// Errors from the engine: model errors, or requests that make no sense.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] mixture_model::ModelError),
    #[error("{0}")]
    Request(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;
