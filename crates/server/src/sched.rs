//! TEMPORARY stand-in for `mixture_engine::scheduler` (the shared design's contract), used
//! until the engine's batching scheduler lands: one worker thread runs the queued requests
//! one at a time with a plain `Session`. Same types and behaviour as the contract, so the
//! server switches by replacing this module with `pub use mixture_engine::scheduler::*`.

use mixture_engine::{Sampler, SamplingParams, Session, StopReason as SessionStop};
use mixture_model::arch::Architecture;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Clone, Default)]
pub struct SchedulerConfig {
    pub parallel: usize,
    pub queue: usize,
    pub context: usize,
    pub prefix_cache_tokens: usize,
    pub prefill_chunk: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Stop,
    Length,
    Context,
    Cancelled,
}

#[derive(Debug)]
pub enum SubmitError {
    QueueFull,
    Invalid(String),
    ShuttingDown,
}

pub trait TokenConstraint: Send {
    fn mask(&mut self, logits: &mut [f32]);
    fn accept(&mut self, token: u32) -> Result<(), String>;
    fn is_complete(&self) -> bool;
}

pub struct GenRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop_ids: Vec<u32>,
    pub logprobs: Option<usize>,
    pub constraint: Option<Box<dyn TokenConstraint>>,
}

pub enum Event {
    Token {
        id: u32,
        logprob: Option<f32>,
        top: Vec<(u32, f32)>,
    },
    Done {
        reason: StopReason,
        prompt_tokens: usize,
        cached_tokens: usize,
        completion_tokens: usize,
    },
    Error(String),
}

pub enum Control {
    Continue,
    Stop,
    Force(Vec<u32>),
}

pub type Sink = Box<dyn FnMut(Event) -> Control + Send>;

pub struct RequestHandle {
    cancel: Arc<AtomicBool>,
}

impl RequestHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Default)]
pub struct SchedulerStats {
    pub queued: usize,
    pub running: usize,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub cached_tokens: u64,
}

struct Job {
    req: GenRequest,
    sink: Sink,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Job>,
    stats: SchedulerStats,
    stopping: bool,
}

struct Inner {
    shared: Mutex<Shared>,
    wake: Condvar,
    cfg: SchedulerConfig,
    vocab: usize,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    pub fn start(model: Arc<dyn Architecture>, cfg: SchedulerConfig) -> Scheduler {
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared::default()),
            wake: Condvar::new(),
            vocab: model.spec().hparams.vocab_size,
            cfg,
            worker: Mutex::new(None),
        });
        let w = inner.clone();
        let handle = std::thread::spawn(move || worker(w, model));
        if let Ok(mut slot) = inner.worker.lock() {
            *slot = Some(handle);
        }
        Scheduler { inner }
    }

    pub fn submit(&self, req: GenRequest, sink: Sink) -> Result<RequestHandle, SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::Invalid("the prompt is empty".into()));
        }
        if let Some(id) = req.prompt.iter().find(|&&i| i as usize >= self.inner.vocab) {
            return Err(SubmitError::Invalid(format!(
                "token id {id} is out of range"
            )));
        }
        let ctx = self.inner.cfg.context;
        if ctx > 0 && req.prompt.len() >= ctx {
            return Err(SubmitError::Invalid("the prompt is too long".into()));
        }
        let mut s = self
            .inner
            .shared
            .lock()
            .map_err(|_| SubmitError::ShuttingDown)?;
        if s.stopping {
            return Err(SubmitError::ShuttingDown);
        }
        if s.queue.len() >= self.inner.cfg.queue.max(1) {
            return Err(SubmitError::QueueFull);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        s.queue.push_back(Job {
            req,
            sink,
            cancel: cancel.clone(),
        });
        s.stats.queued = s.queue.len();
        self.inner.wake.notify_one();
        Ok(RequestHandle { cancel })
    }

    pub fn stats(&self) -> SchedulerStats {
        self.inner
            .shared
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }

    pub fn shutdown(&self) {
        if let Ok(mut s) = self.inner.shared.lock() {
            s.stopping = true;
            for job in s.queue.iter() {
                job.cancel.store(true, Ordering::Relaxed);
            }
        }
        self.inner.wake.notify_all();
        let handle = self.inner.worker.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn worker(inner: Arc<Inner>, model: Arc<dyn Architecture>) {
    loop {
        let job = {
            let Ok(mut s) = inner.shared.lock() else {
                return;
            };
            loop {
                if let Some(job) = s.queue.pop_front() {
                    s.stats.queued = s.queue.len();
                    s.stats.running = 1;
                    break Some(job);
                }
                if s.stopping {
                    break None;
                }
                s = match inner.wake.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
        };
        let Some(mut job) = job else {
            // Drain: everything left is cancelled.
            return;
        };
        let stopping = || inner.shared.lock().map(|s| s.stopping).unwrap_or(true);
        let (prompt, completion) = run_one(model.as_ref(), &mut job, &inner.cfg, &stopping);
        if let Ok(mut s) = inner.shared.lock() {
            s.stats.running = 0;
            s.stats.requests += 1;
            s.stats.prompt_tokens += prompt as u64;
            s.stats.generated_tokens += completion as u64;
        }
    }
}

fn run_one(
    model: &dyn Architecture,
    job: &mut Job,
    cfg: &SchedulerConfig,
    stopping: &dyn Fn() -> bool,
) -> (usize, usize) {
    let mut session = Session::new(model);
    let ctx = if cfg.context > 0 {
        cfg.context
    } else {
        match model.spec().hparams.context_length {
            0 => usize::MAX,
            n => n,
        }
    };
    let req = &mut job.req;
    let plen = req.prompt.len();
    let done = |sink: &mut Sink, reason, completion| {
        sink(Event::Done {
            reason,
            prompt_tokens: plen,
            cached_tokens: 0,
            completion_tokens: completion,
        });
    };
    if job.cancel.load(Ordering::Relaxed) {
        done(&mut job.sink, StopReason::Cancelled, 0);
        return (plen, 0);
    }
    let mut last = match session.feed_last(&req.prompt) {
        Ok(l) => l,
        Err(e) => {
            (job.sink)(Event::Error(e.to_string()));
            return (plen, 0);
        }
    };
    let mut sampler = Sampler::new(req.sampling.clone());
    let mut n = 0usize;
    loop {
        if job.cancel.load(Ordering::Relaxed) || stopping() {
            done(&mut job.sink, StopReason::Cancelled, n);
            return (plen, n);
        }
        if n >= req.max_tokens {
            done(&mut job.sink, StopReason::Length, n);
            return (plen, n);
        }
        if let Some(c) = req.constraint.as_mut() {
            c.mask(&mut last);
        }
        let tok = sampler.sample(&last);
        if let Some(c) = req.constraint.as_mut() {
            let _ = c.accept(tok);
        }
        n += 1;
        let (logprob, top) = match req.logprobs {
            Some(k) => logprobs(&last, tok, k),
            None => (None, Vec::new()),
        };
        if req.stop_ids.contains(&tok) {
            (job.sink)(Event::Token {
                id: tok,
                logprob,
                top,
            });
            done(&mut job.sink, StopReason::Stop, n);
            return (plen, n);
        }
        let mut next = vec![tok];
        match (job.sink)(Event::Token {
            id: tok,
            logprob,
            top,
        }) {
            Control::Continue => {}
            Control::Stop => {
                done(&mut job.sink, StopReason::Stop, n);
                return (plen, n);
            }
            Control::Force(ids) => {
                // Reported back as tokens, as the engine's scheduler does.
                for &id in &ids {
                    n += 1;
                    (job.sink)(Event::Token {
                        id,
                        logprob: None,
                        top: Vec::new(),
                    });
                }
                next.extend(ids);
            }
        }
        if req.constraint.as_ref().is_some_and(|c| c.is_complete()) {
            done(&mut job.sink, StopReason::Stop, n);
            return (plen, n);
        }
        if session.len() + next.len() >= ctx {
            done(&mut job.sink, StopReason::Context, n);
            return (plen, n);
        }
        last = match session.feed_last(&next) {
            Ok(l) => l,
            Err(e) => {
                (job.sink)(Event::Error(e.to_string()));
                return (plen, n);
            }
        };
    }
}

fn logprobs(logits: &[f32], tok: u32, k: usize) -> (Option<f32>, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
    let lp = logits.get(tok as usize).map(|&l| l - lse);
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let top = idx
        .into_iter()
        .take(k)
        .map(|i| (i, logits[i as usize] - lse))
        .collect();
    (lp, top)
}

#[allow(dead_code)]
fn _unused(_: SessionStop) {}
