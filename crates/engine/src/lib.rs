//! Sessions over a model: the KV cache, prefill and decode steps, sampling and scoring.
//! (Batching, the prefix cache and speculative decoding come later and live here too.)

pub mod constrain;
pub mod reasoning;
pub mod sampler;
pub mod session;

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
