//! The worker thread's loop: admit, one batched step, sample, report, retire.

use super::prefix::PrefixCache;
use super::{Control, Event, Pending, SchedulerConfig, Shared, Sink, StopReason, TokenConstraint};
use crate::sampler::{self, Sampler};
use mixture_kernels::matmul::Family;
use mixture_model::arch::{Architecture, BatchItem, Logits};
use mixture_model::KvCache;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A running sequence.
struct Seq {
    sink: Sink,
    cancel: Arc<AtomicBool>,
    cache: KvCache,
    /// Prompt, then completion; the cache holds the first `cache.len` of them.
    tokens: Vec<u32>,
    prompt_len: usize,
    cached: usize,
    /// Completion tokens so far.
    generated: usize,
    max_tokens: usize,
    stop_ids: Vec<u32>,
    logprobs: Option<usize>,
    constraint: Option<Box<dyn TokenConstraint>>,
    sampler: Sampler,
}

/// How a sequence's step ended.
enum Outcome {
    Continue,
    Done(StopReason),
    Error(String),
}

pub(super) struct Worker {
    model: Arc<dyn Architecture>,
    shared: Arc<Shared>,
    parallel: usize,
    prefill_chunk: usize,
    context: usize,
    vocab: usize,
    prefix: PrefixCache,
    running: Vec<Seq>,
}

impl Worker {
    pub(super) fn new(
        model: Arc<dyn Architecture>,
        cfg: &SchedulerConfig,
        context: usize,
        shared: Arc<Shared>,
    ) -> Worker {
        let vocab = model.spec().hparams.vocab_size;
        Worker {
            model,
            shared,
            parallel: cfg.parallel.max(1),
            prefill_chunk: if cfg.prefill_chunk == 0 {
                512
            } else {
                cfg.prefill_chunk
            },
            context,
            vocab,
            prefix: PrefixCache::new(cfg.prefix_cache_tokens),
            running: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let (cancelled, admitted) = {
                let mut st = self.shared.lock();
                while !st.stopping && self.running.is_empty() && st.waiting.is_empty() {
                    st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.stopping {
                    let waiting: Vec<Pending> = st.waiting.drain(..).collect();
                    st.running = 0;
                    drop(st);
                    self.stop_all(waiting);
                    return;
                }
                let (cancelled, rest): (VecDeque<Pending>, VecDeque<Pending>) = st
                    .waiting
                    .drain(..)
                    .partition(|p| p.cancel.load(Ordering::Relaxed));
                st.waiting = rest;
                let free = self.parallel.saturating_sub(self.running.len());
                let n = free.min(st.waiting.len());
                let admitted: Vec<Pending> = st.waiting.drain(..n).collect();
                st.running = self.running.len() + admitted.len();
                (cancelled, admitted)
            };
            for mut p in cancelled {
                (p.sink)(Event::Done {
                    reason: StopReason::Cancelled,
                    prompt_tokens: p.req.prompt.len(),
                    cached_tokens: 0,
                    completion_tokens: 0,
                });
            }
            for p in admitted {
                self.admit(p);
            }
            self.step();
            let running = self.running.len();
            self.shared.lock().running = running;
        }
    }

    /// Cancel everything (shutdown).
    fn stop_all(&mut self, waiting: Vec<Pending>) {
        for mut p in waiting {
            (p.sink)(Event::Done {
                reason: StopReason::Cancelled,
                prompt_tokens: p.req.prompt.len(),
                cached_tokens: 0,
                completion_tokens: 0,
            });
        }
        for mut s in std::mem::take(&mut self.running) {
            (s.sink)(Event::Done {
                reason: StopReason::Cancelled,
                prompt_tokens: s.prompt_len,
                cached_tokens: s.cached,
                completion_tokens: s.generated,
            });
        }
    }

    /// Start a sequence, from the prefix cache where it can.
    fn admit(&mut self, p: Pending) {
        let Pending { req, sink, cancel } = p;
        let (mut cache, cached) = match self.prefix.take(&req.prompt) {
            Some((mut cache, n)) => {
                cache.truncate(n);
                (cache, n)
            }
            None => (self.model.new_cache(), 0),
        };
        // Room for the rest of the prompt and the whole answer (capped at the context): the
        // cache then never grows (and copies itself) between decode steps.
        let room = (req.prompt.len().saturating_sub(cached)).saturating_add(req.max_tokens);
        crate::session::reserve_room(&mut cache, self.model.spec().hparams.context_length, room);
        let sh = &self.shared;
        sh.prompt_tokens
            .fetch_add(req.prompt.len() as u64, Ordering::Relaxed);
        sh.cached_tokens.fetch_add(cached as u64, Ordering::Relaxed);
        self.running.push(Seq {
            sink,
            cancel,
            cache,
            prompt_len: req.prompt.len(),
            tokens: req.prompt,
            cached,
            generated: 0,
            max_tokens: req.max_tokens,
            stop_ids: req.stop_ids,
            logprobs: req.logprobs,
            constraint: req.constraint,
            sampler: Sampler::new(req.sampling),
        });
    }

    /// One batched forward over the running sequences, then sampling and reporting.
    fn step(&mut self) {
        // Cancelled ones leave first.
        let mut cancelled = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].cancel.load(Ordering::Relaxed) {
                let s = self.running.swap_remove(i);
                cancelled.push((s, Ok(StopReason::Cancelled)));
            } else {
                i += 1;
            }
        }
        self.retire(cancelled);
        if self.running.is_empty() {
            return;
        }
        // Each sequence's tokens this step. The last pending token (a decode token, or a
        // prompt's last token) goes in the decode batch, which runs on the per-row dots
        // (`matmul::with_row_dots`): a row there gets the same bits whatever else is in the
        // batch. Tokens before it (a prompt, forced tokens) run first, every sequence's chunk
        // in one batch on the tiled kernels (`matmul::with_tiled`), which also give each token
        // the same bits whatever else is in the batch, in chunks ending at multiples of
        // `prefill_chunk`: a prompt splits the same way whatever else runs. So a request's
        // text does not depend on the other requests, nor on whether its prompt (all but the
        // last token) came from the prefix cache.
        let mut budget = self.prefill_chunk;
        let mut decode: Vec<Option<(usize, usize)>> = vec![None; self.running.len()];
        let mut prefill: Vec<Option<(usize, usize)>> = vec![None; self.running.len()];
        for (i, s) in self.running.iter().enumerate() {
            let (from, last) = (s.cache.len, s.tokens.len().saturating_sub(1));
            if from == last {
                decode[i] = Some((from, from + 1));
            } else if from < last && budget > 0 {
                let end = ((from / self.prefill_chunk + 1) * self.prefill_chunk).min(last);
                // The first chunk of a step always runs; others while the budget lasts.
                if end - from <= budget || budget == self.prefill_chunk {
                    budget = budget.saturating_sub(end - from);
                    prefill[i] = Some((from, end));
                }
            }
        }
        let mut results: Vec<Option<Result<Vec<f32>, String>>> =
            (0..self.running.len()).map(|_| None).collect();
        for (spans, family) in [(prefill, Family::Tiled), (decode, Family::RowDots)] {
            if spans.iter().any(Option::is_some) {
                for (r, got) in results.iter_mut().zip(self.forward(&spans, family)) {
                    if got.is_some() {
                        *r = got;
                    }
                }
            }
        }
        self.shared.steps.fetch_add(1, Ordering::Relaxed);
        // Sample, report, retire.
        let mut keep = Vec::with_capacity(self.running.len());
        let mut ended = Vec::new();
        for (mut s, r) in std::mem::take(&mut self.running).into_iter().zip(results) {
            let outcome = match r {
                None => Outcome::Continue,
                Some(Err(e)) => Outcome::Error(e),
                Some(Ok(_)) if s.cache.len < s.tokens.len() => Outcome::Continue, // mid-prompt
                Some(Ok(logits)) => self.next_token(&mut s, logits),
            };
            match outcome {
                Outcome::Continue => keep.push(s),
                Outcome::Done(reason) => ended.push((s, Ok(reason))),
                Outcome::Error(e) => ended.push((s, Err(e))),
            }
        }
        self.running = keep;
        self.retire(ended);
    }

    /// Report the end of sequences that have left `running`. The shared running count is
    /// updated first, so whoever receives a request's last event also sees it gone from
    /// [`super::Scheduler::stats`].
    fn retire(&mut self, ended: Vec<(Seq, Result<StopReason, String>)>) {
        if ended.is_empty() {
            return;
        }
        let running = self.running.len();
        self.shared.lock().running = running;
        for (mut s, end) in ended {
            match end {
                Ok(reason) => self.finish(s, reason),
                Err(e) => {
                    (s.sink)(Event::Error(e));
                }
            }
        }
    }

    /// Run the spans (`tokens[a..b]` of each running sequence, `None`: nothing this step)
    /// as one batch, on the kernels of `family`. If the batch fails, each runs alone, so one
    /// sequence's failure reaches only it. A failed sequence's cache is put back as it was.
    fn forward(
        &mut self,
        spans: &[Option<(usize, usize)>],
        family: Family,
    ) -> Vec<Option<Result<Vec<f32>, String>>> {
        let mut items: Vec<BatchItem<'_>> = Vec::with_capacity(spans.len());
        let mut slots = Vec::with_capacity(spans.len());
        for (i, (s, span)) in self.running.iter_mut().zip(spans).enumerate() {
            if let Some((a, b)) = *span {
                items.push(BatchItem {
                    tokens: &s.tokens[a..b],
                    cache: &mut s.cache,
                    logits: Logits::Last,
                });
                slots.push(i);
            }
        }
        let mut out: Vec<Option<Result<Vec<f32>, String>>> = spans.iter().map(|_| None).collect();
        if items.is_empty() {
            return out;
        }
        let before: Vec<usize> = items.iter().map(|it| it.cache.len).collect();
        let model = &self.model;
        let batch = catch_unwind(AssertUnwindSafe(|| {
            family.run(|| model.forward_batch(&mut items))
        }));
        match batch {
            Ok(Ok(logits)) if logits.len() == items.len() => {
                for (slot, l) in slots.iter().zip(logits) {
                    out[*slot] = Some(Ok(l));
                }
            }
            _ => {
                // Alone, each from where it was.
                for ((it, &len), slot) in items.iter_mut().zip(&before).zip(&slots) {
                    it.cache.truncate(len);
                    let alone = catch_unwind(AssertUnwindSafe(|| {
                        family.run(|| model.forward(it.tokens, it.cache, it.logits))
                    }));
                    out[*slot] = Some(match alone {
                        Ok(Ok(l)) => Ok(l),
                        Ok(Err(e)) => {
                            it.cache.truncate(len);
                            Err(format!("model error: {e}"))
                        }
                        Err(_) => {
                            it.cache.truncate(len);
                            Err("internal error in the model".into())
                        }
                    });
                }
            }
        }
        out
    }

    /// Sample the next token from the last position's `logits` and report it (with any
    /// tokens the sink forces after it).
    fn next_token(&self, s: &mut Seq, mut logits: Vec<f32>) -> Outcome {
        if logits.len() != self.vocab {
            return Outcome::Error(format!(
                "the model returned {} logits for a vocabulary of {}",
                logits.len(),
                self.vocab
            ));
        }
        // Logprobs are of the model's own distribution: the raw row.
        let raw = s.logprobs.map(|_| logits.clone());
        if let Some(c) = s.constraint.as_mut() {
            c.mask(&mut logits);
            if !logits.iter().any(|l| l.is_finite()) {
                return Outcome::Error("the constraint allows no next token".into());
            }
        }
        let tok = s.sampler.sample(&logits);
        // The buffer serves a later step's logits (`reuse`).
        mixture_kernels::reuse::give(logits);
        let (logprob, top) = match (s.logprobs, raw) {
            (Some(n), Some(raw)) => {
                let (lp, top) = sampler::logprobs(&raw, tok, n);
                (Some(lp), top)
            }
            _ => (None, Vec::new()),
        };
        if let Some(c) = s.constraint.as_mut() {
            if let Err(e) = c.accept(tok) {
                return Outcome::Error(format!("constraint: {e}"));
            }
        }
        let mut queue: VecDeque<u32> = VecDeque::new();
        let mut event = Some((tok, logprob, top));
        loop {
            let (id, logprob, top, sampled) = match event.take() {
                Some((id, lp, top)) => (id, lp, top, true),
                None => match queue.pop_front() {
                    Some(id) => {
                        if id as usize >= self.vocab {
                            return Outcome::Error(format!(
                                "forced token id {id} is outside the vocabulary"
                            ));
                        }
                        s.sampler.accept(id);
                        (id, None, Vec::new(), false)
                    }
                    None => return Outcome::Continue,
                },
            };
            s.tokens.push(id);
            s.generated += 1;
            self.shared.generated_tokens.fetch_add(1, Ordering::Relaxed);
            match (s.sink)(Event::Token { id, logprob, top }) {
                Control::Continue => {}
                Control::Stop => return Outcome::Done(StopReason::Stop),
                Control::Force(ids) => queue.extend(ids),
            }
            if sampled
                && (s.stop_ids.contains(&id)
                    || s.constraint.as_ref().is_some_and(|c| c.is_complete()))
            {
                return Outcome::Done(StopReason::Stop);
            }
            if s.generated >= s.max_tokens {
                return Outcome::Done(StopReason::Length);
            }
            // The newest token is fed next step: the context must hold it.
            if s.tokens.len() > self.context {
                return Outcome::Done(StopReason::Context);
            }
        }
    }

    /// Report the end and keep the cache for later prompts.
    fn finish(&mut self, mut s: Seq, reason: StopReason) {
        (s.sink)(Event::Done {
            reason,
            prompt_tokens: s.prompt_len,
            cached_tokens: s.cached,
            completion_tokens: s.generated,
        });
        self.prefix.insert(s.tokens, s.cache);
    }
}
