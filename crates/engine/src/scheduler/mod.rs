//! Continuous batching: one worker thread runs every admitted sequence through the model
//! together, one step at a time.
//!
//! Each step the worker admits waiting requests (up to [`SchedulerConfig::parallel`]
//! running), then runs every running sequence's next tokens through the model: first one
//! [`Architecture::forward_batch`] over the prefilling sequences' next chunks of their prompts
//! (all but a prompt's last token, in chunks ending at multiples of
//! [`SchedulerConfig::prefill_chunk`], on the tiled kernels wherever the CPU has them:
//! [`mixture_kernels::matmul::with_tiled`]; the chunk size also bounds the prompt tokens of a
//! step, so a long prompt delays the others' next token by one chunk at most), then one over
//! every sequence's last pending token (decode tokens, and prompts' last tokens) on the
//! per-row dots ([`mixture_kernels::matmul::with_row_dots`]). Both kernel families compute
//! each token alone, so a request gives the same tokens, to the bit, alone or in any batch,
//! and with its prompt computed, taken whole from the prefix cache, or partly (the rest
//! prefilled from where the hit ends). Each sequence samples with its own seeded
//! [`Sampler`]. Finished sequences leave between steps and hand their KV cache to the prefix
//! cache, which new requests starting with the same tokens reuse.
//!
//! Events go to each request's sink, called on the worker thread (keep it quick: a channel
//! send). The sink's answer steers the request:
//! - [`Control::Stop`] finishes it now (a stop string, or the receiver is gone: a sink whose
//!   channel is closed should answer `Stop`);
//! - [`Control::Force`] appends tokens after the one just reported (e.g. `</think>` when a
//!   thinking budget is spent). Forced tokens are reported as [`Event::Token`]s with no
//!   logprob, count as completion tokens and towards the penalties, and are fed in the next
//!   step; they bypass the constraint and the stop ids.
//!
//! A sampled stop id is reported as a `Token` event too (then `Done` with
//! [`StopReason::Stop`]), as [`crate::Session::generate`] returns it. `Done` or `Error` is a
//! request's last event.

mod prefix;
mod worker;

use crate::sampler::SamplingParams;
use mixture_model::arch::Architecture;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

#[cfg(doc)]
use crate::sampler::Sampler;

/// Limits of a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most sequences in the running batch (0 counts as 1).
    pub parallel: usize,
    /// Most requests waiting for a place in the batch (beyond the free places).
    pub queue: usize,
    /// Per-sequence token limit, prompt and completion (0 = the model's; never above it).
    pub context: usize,
    /// Tokens the prefix cache may hold over all its entries (0 = off). Each costs the
    /// model's KV values per token (`KvCache::values_per_token`) times 4 bytes: 46 KB for
    /// SmolLM2-135M, 62 KB for DeepSeek-V2-Lite's MLA latents.
    pub prefix_cache_tokens: usize,
    /// Most prompt tokens run in one step, over all prefilling sequences (0 = 512).
    pub prefill_chunk: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            parallel: 4,
            queue: 64,
            context: 0,
            prefix_cache_tokens: 4096,
            prefill_chunk: 512,
        }
    }
}

/// Why a request finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop id was sampled, the constraint is complete, or the sink answered `Stop`.
    Stop,
    /// `max_tokens` generated.
    Length,
    /// The context is full.
    Context,
    /// [`RequestHandle::cancel`] or [`Scheduler::shutdown`].
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full")]
    QueueFull,
    #[error("{0}")]
    Invalid(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Constrained decoding: which tokens may come next.
pub trait TokenConstraint: Send {
    /// Set `-inf` on the tokens not allowed next.
    fn mask(&mut self, logits: &mut [f32]);
    /// Advance with the chosen token.
    fn accept(&mut self, token: u32) -> Result<(), String>;
    /// The value is finished: the request stops ([`StopReason::Stop`]).
    fn is_complete(&self) -> bool;
}

/// One generation request.
#[derive(Default)]
pub struct GenRequest {
    pub prompt: Vec<u32>,
    /// At least 1; the context may stop it earlier.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Tokens that end the completion (reported, then `Done { Stop }`).
    pub stop_ids: Vec<u32>,
    /// `Some(n)`: report each sampled token's logprob and the `n` most likely tokens'
    /// (log-softmax of the model's logits, before penalties and the constraint).
    pub logprobs: Option<usize>,
    pub constraint: Option<Box<dyn TokenConstraint>>,
}

/// What a request's sink receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token {
        id: u32,
        logprob: Option<f32>,
        top: Vec<(u32, f32)>,
    },
    Done {
        reason: StopReason,
        prompt_tokens: usize,
        /// Prompt tokens taken from the prefix cache instead of computed.
        cached_tokens: usize,
        completion_tokens: usize,
    },
    Error(String),
}

/// A sink's answer to an event (ignored after `Done` and `Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Finish now ([`StopReason::Stop`]).
    Stop,
    /// Append these tokens, then continue.
    Force(Vec<u32>),
}

pub type Sink = Box<dyn FnMut(Event) -> Control + Send>;

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Requests waiting for a place in the batch.
    pub queued: usize,
    /// Sequences in the running batch.
    pub running: usize,
    /// Requests accepted so far.
    pub requests: u64,
    /// Prompt tokens of admitted requests (cached ones included).
    pub prompt_tokens: u64,
    /// Tokens generated (sampled and forced).
    pub generated_tokens: u64,
    /// Prompt tokens taken from the prefix cache.
    pub cached_tokens: u64,
    /// Batched forward passes run.
    pub steps: u64,
}

/// A submitted request, to cancel it.
#[derive(Clone)]
pub struct RequestHandle {
    cancel: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl RequestHandle {
    /// Finish the request at the next step ([`StopReason::Cancelled`]); its place frees.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

/// A request waiting for a place.
struct Pending {
    req: GenRequest,
    sink: Sink,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Pending>,
    running: usize,
    stopping: bool,
}

/// What the submitters and the worker share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    steps: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Handle {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
    vocab: usize,
    context: usize,
    parallel: usize,
    queue: usize,
}

impl Handle {
    fn shutdown(&self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = worker {
            if w.thread().id() != std::thread::current().id() {
                let _ = w.join();
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The scheduler; clones share one worker. Dropping the last clone shuts it down.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Handle>,
}

impl Scheduler {
    /// Start the worker thread.
    pub fn start(model: Arc<dyn Architecture>, cfg: SchedulerConfig) -> Scheduler {
        let hp = &model.spec().hparams;
        let context = match (cfg.context, hp.context_length) {
            (0, 0) => usize::MAX,
            (0, m) => m,
            (c, 0) => c,
            (c, m) => c.min(m),
        };
        let vocab = hp.vocab_size;
        let shared = Arc::new(Shared::default());
        let parallel = cfg.parallel.max(1);
        let worker = worker::Worker::new(model, &cfg, context, shared.clone());
        let handle = std::thread::Builder::new()
            .name("mixture-scheduler".into())
            .spawn(move || worker.run());
        let stopped = handle.is_err();
        let inner = Handle {
            shared,
            worker: Mutex::new(handle.ok()),
            vocab,
            context,
            parallel,
            queue: cfg.queue,
        };
        if stopped {
            inner.shared.lock().stopping = true;
        }
        Scheduler {
            inner: Arc::new(inner),
        }
    }

    /// The per-sequence token limit in force.
    pub fn context(&self) -> usize {
        self.inner.context
    }

    /// Queue a request; its events go to `sink` from the worker thread.
    pub fn submit(&self, req: GenRequest, sink: Sink) -> Result<RequestHandle, SubmitError> {
        let h = &self.inner;
        if req.prompt.is_empty() {
            return Err(SubmitError::Invalid("the prompt is empty".into()));
        }
        if req.max_tokens == 0 {
            return Err(SubmitError::Invalid("max_tokens must be at least 1".into()));
        }
        if let Some(&id) = req.prompt.iter().find(|&&id| id as usize >= h.vocab) {
            return Err(SubmitError::Invalid(format!(
                "token id {id} is outside the vocabulary ({} tokens)",
                h.vocab
            )));
        }
        if req.prompt.len() > h.context {
            return Err(SubmitError::Invalid(format!(
                "the prompt has {} tokens; the context holds {}",
                req.prompt.len(),
                h.context
            )));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut st = h.shared.lock();
            if st.stopping {
                return Err(SubmitError::ShuttingDown);
            }
            let free = h.parallel.saturating_sub(st.running);
            if st.waiting.len() >= h.queue + free {
                return Err(SubmitError::QueueFull);
            }
            st.waiting.push_back(Pending {
                req,
                sink,
                cancel: cancel.clone(),
            });
        }
        h.shared.requests.fetch_add(1, Ordering::Relaxed);
        h.shared.wake.notify_all();
        Ok(RequestHandle {
            cancel,
            shared: h.shared.clone(),
        })
    }

    pub fn stats(&self) -> SchedulerStats {
        let s = &self.inner.shared;
        let (queued, running) = {
            let st = s.lock();
            (st.waiting.len(), st.running)
        };
        SchedulerStats {
            queued,
            running,
            requests: s.requests.load(Ordering::Relaxed),
            prompt_tokens: s.prompt_tokens.load(Ordering::Relaxed),
            generated_tokens: s.generated_tokens.load(Ordering::Relaxed),
            cached_tokens: s.cached_tokens.load(Ordering::Relaxed),
            steps: s.steps.load(Ordering::Relaxed),
        }
    }

    /// Stop accepting requests, cancel every one in flight or waiting (each gets
    /// `Done { Cancelled }`) and join the worker; returns once the current step is over.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}
