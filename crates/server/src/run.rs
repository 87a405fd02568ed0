//! Starting the choices of one request and collecting what they produce, shared by both
//! completion endpoints.

use crate::error::ApiError;
use crate::generate::{make_sink, Finish, Msg, Running, TextSetup, TokenLogprob};
use crate::sched::{GenRequest, SubmitError, TokenConstraint};
use crate::AppState;
use mixture_engine::SamplingParams;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// One choice to generate.
pub struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub text: TextSetup,
    pub logprobs: Option<usize>,
    pub constraint: Option<Box<dyn TokenConstraint>>,
}

/// Submit every job; the first refusal cancels those already submitted (the guard drops).
pub fn start(
    state: &AppState,
    jobs: Vec<Job>,
) -> Result<(UnboundedReceiver<Msg>, Running), ApiError> {
    let (tx, rx) = unbounded_channel();
    let mut running = Running::default();
    for (index, job) in jobs.into_iter().enumerate() {
        let sink = make_sink(index, job.text, state.model.tokenizer.clone(), tx.clone());
        let req = GenRequest {
            prompt: job.prompt,
            max_tokens: job.max_tokens,
            sampling: job.sampling,
            stop_ids: state.model.stop_ids.clone(),
            logprobs: job.logprobs,
            constraint: job.constraint,
        };
        match state.scheduler.submit(req, sink) {
            Ok(h) => running.push(h),
            Err(SubmitError::QueueFull) => return Err(ApiError::queue_full()),
            Err(SubmitError::ShuttingDown) => {
                return Err(ApiError::unavailable("the server is shutting down"))
            }
            Err(SubmitError::Invalid(m)) => return Err(ApiError::invalid(m)),
        }
    }
    Ok((rx, running))
}

/// What one choice produced so far.
#[derive(Debug, Clone, Default)]
pub struct ChoiceAcc {
    pub reasoning: String,
    pub content: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub first_token: Option<Instant>,
    /// Tokens reported so far (`completion_tokens` is set when the choice finishes).
    pub tokens_seen: usize,
}

/// Usage summed over choices; the prompt is counted once per distinct prompt
/// (`prompt_groups` choices share one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
}

impl Usage {
    pub fn of(choices: &[ChoiceAcc], per_prompt: usize) -> Usage {
        let mut u = Usage::default();
        for (i, c) in choices.iter().enumerate() {
            if i % per_prompt.max(1) == 0 {
                u.prompt_tokens += c.prompt_tokens;
                u.cached_tokens += c.cached_tokens;
            }
            u.completion_tokens += c.completion_tokens;
        }
        u
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": self.cached_tokens },
        })
    }
}

/// Apply one message to the accumulators. Returns the index it concerned.
pub fn apply(
    state: &AppState,
    accs: &mut [ChoiceAcc],
    started: Instant,
    msg: &Msg,
) -> Result<usize, ApiError> {
    match msg {
        Msg::Delta {
            index,
            reasoning,
            content,
            logprobs,
            token,
        } => {
            if let Some(a) = accs.get_mut(*index) {
                a.first_token.get_or_insert_with(Instant::now);
                a.tokens_seen += usize::from(*token);
                a.reasoning.push_str(reasoning);
                a.content.push_str(content);
                if let Some(lp) = logprobs {
                    a.logprobs.push(lp.clone());
                }
            }
            Ok(*index)
        }
        Msg::Done {
            index,
            finish,
            prompt_tokens,
            cached_tokens,
            completion_tokens,
        } => {
            if let Some(a) = accs.get_mut(*index) {
                a.finish = Some(*finish);
                a.prompt_tokens = *prompt_tokens;
                a.cached_tokens = *cached_tokens;
                a.completion_tokens = *completion_tokens;
                let ttft = a.first_token.map(|t| (t - started).as_secs_f64());
                let tps = a.first_token.and_then(|t| {
                    let secs = t.elapsed().as_secs_f64();
                    (secs > 0.0 && *completion_tokens > 1)
                        .then(|| (*completion_tokens - 1) as f64 / secs)
                });
                state.metrics.generation(
                    *prompt_tokens,
                    *cached_tokens,
                    *completion_tokens,
                    ttft,
                    tps,
                );
            }
            Ok(*index)
        }
        Msg::Error { message, .. } => {
            Err(ApiError::internal(format!("generation failed: {message}")))
        }
    }
}

/// Wait for every choice to finish (non-streaming responses).
pub async fn collect(
    state: &AppState,
    mut rx: UnboundedReceiver<Msg>,
    n: usize,
    started: Instant,
) -> Result<Vec<ChoiceAcc>, ApiError> {
    let mut accs = vec![ChoiceAcc::default(); n];
    while accs.iter().any(|a| a.finish.is_none()) {
        match rx.recv().await {
            Some(msg) => {
                apply(state, &mut accs, started, &msg)?;
            }
            None => return Err(ApiError::unavailable("generation was stopped")),
        }
    }
    Ok(accs)
}

/// Sampling parameters of one choice from the request and the server's defaults.
pub fn sampling(state: &AppState, c: &crate::request::Checked, seed: u64) -> SamplingParams {
    let d = &state.config.defaults;
    SamplingParams {
        temperature: c.temperature.unwrap_or(d.temperature),
        top_p: c.top_p.unwrap_or(d.top_p),
        top_k: c.top_k.unwrap_or(d.top_k),
        min_p: c.min_p,
        presence_penalty: c.presence_penalty,
        frequency_penalty: c.frequency_penalty,
        seed,
    }
}

/// The seed of choice `i`: the request's seed + i, or a random one.
pub fn seeds(c: &crate::request::Checked, count: usize) -> Vec<u64> {
    let base = c.seed.unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    });
    (0..count).map(|i| base.wrapping_add(i as u64)).collect()
}

/// A short random id (`chatcmpl-…`, `cmpl-…`).
pub fn new_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6d69_7874);
    format!("{prefix}-{:016x}", h.finish())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Logs a streaming request's line when its stream ends (the middleware logs the others).
pub struct StreamLog {
    pub path: &'static str,
    pub started: Instant,
    pub completion_tokens: usize,
    pub finished: bool,
    /// The server's state, to count the tokens of choices cut short by a client that left
    /// (their `Done` finds nobody listening, so [`apply`] never counts them).
    state: AppState,
    /// Tokens of the choices not finished yet.
    unfinished_tokens: usize,
}

impl StreamLog {
    pub fn new(path: &'static str, started: Instant, state: AppState) -> StreamLog {
        StreamLog {
            path,
            started,
            completion_tokens: 0,
            finished: false,
            state,
            unfinished_tokens: 0,
        }
    }

    /// Take the token counts from the choices after each message.
    pub fn update(&mut self, accs: &[ChoiceAcc]) {
        self.completion_tokens = accs
            .iter()
            .map(|a| {
                if a.finish.is_some() {
                    a.completion_tokens
                } else {
                    a.tokens_seen
                }
            })
            .sum();
        self.unfinished_tokens = accs
            .iter()
            .filter(|a| a.finish.is_none())
            .map(|a| a.tokens_seen)
            .sum();
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        if !self.finished && self.unfinished_tokens > 0 {
            self.state
                .metrics
                .generation(0, 0, self.unfinished_tokens, None, None);
        }
        tracing::info!(
            target: "mixture::serve",
            "POST {} 200 {:.1}ms stream, {} tokens{}",
            self.path,
            self.started.elapsed().as_secs_f64() * 1e3,
            self.completion_tokens,
            if self.finished { "" } else { ", client left" }
        );
    }
}
