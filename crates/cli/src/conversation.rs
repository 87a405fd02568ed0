//! One chat conversation over a model: history, prompt rendering with the model's template,
//! KV-cache reuse across turns, streaming generation with reasoning split out, stop at end of
//! turn, a thinking budget, and interruption.
//!
//! (This moves into the engine crate when the server needs the same loop.)

use anyhow::{Context, Result};
use mixture_engine::reasoning::{prompt_opens_think, Piece, ReasoningSplitter};
use mixture_engine::{Sampler, SamplingParams, Session};
use mixture_model::arch::Architecture;
use mixture_model::chat_template::{ChatTemplate, Message};
use mixture_model::tokenizer::Tokenizer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Options for each reply.
#[derive(Debug, Clone)]
pub struct ReplyOptions {
    pub max_tokens: usize,
    /// Close the think block after this many reasoning tokens.
    pub max_thinking_tokens: Option<usize>,
    /// Extra template variables (e.g. `{"enable_thinking": true}`).
    pub template_extra: Option<serde_json::Value>,
}

/// What one reply produced.
#[derive(Debug, Default, Clone)]
pub struct Reply {
    pub content: String,
    pub reasoning: String,
    pub prompt_tokens: usize,
    /// Prompt tokens actually computed (the rest came from the cache).
    pub prompt_computed: usize,
    pub generated: usize,
    pub prompt_seconds: f64,
    pub generate_seconds: f64,
    pub interrupted: bool,
}

pub struct Conversation<'m> {
    session: Session<'m>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    params: SamplingParams,
    stop_ids: Vec<u32>,
    /// Token ids currently held in the session's cache.
    cached: Vec<u32>,
    pub system: Option<String>,
    pub messages: Vec<Message>,
}

fn message(role: &str, content: &str) -> Message {
    Message {
        role: role.to_string(),
        content: content.to_string(),
        reasoning_content: None,
        tool_calls: None,
    }
}

impl<'m> Conversation<'m> {
    pub fn new(
        model: &'m dyn Architecture,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        params: SamplingParams,
        system: Option<String>,
    ) -> Conversation<'m> {
        let mut stop_ids: Vec<u32> = tokenizer.eos_ids().to_vec();
        stop_ids.extend(model.spec().eos_token_ids.iter().copied());
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Conversation {
            session: Session::new(model),
            tokenizer,
            template,
            params,
            stop_ids,
            cached: Vec::new(),
            system,
            messages: Vec::new(),
        }
    }

    /// Forget the conversation (the system prompt stays).
    pub fn reset(&mut self) {
        self.messages.clear();
    }

    /// The messages as the template sees them.
    pub fn transcript(&self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            all.push(message("system", s));
        }
        all.extend(self.messages.iter().cloned());
        all
    }

    /// Add a user message and generate the assistant's reply, streaming pieces to `emit`.
    /// `interrupt` is polled between tokens; when it is set the reply stops early (and is kept).
    pub fn reply(
        &mut self,
        user: &str,
        opts: &ReplyOptions,
        interrupt: &AtomicBool,
        emit: &mut dyn FnMut(&Piece),
    ) -> Result<Reply> {
        self.messages.push(message("user", user));
        let prompt = self
            .template
            .render(&self.transcript(), true, opts.template_extra.clone())
            .context("rendering the chat template")?;
        let ids = self.tokenizer.encode(&prompt, false, true)?;
        if ids.is_empty() {
            anyhow::bail!("the rendered prompt is empty");
        }
        let mut r = Reply {
            prompt_tokens: ids.len(),
            ..Reply::default()
        };
        // Reuse the cached prefix; recompute at least the last prompt token for its logits.
        let common = self
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len() - 1);
        self.session.truncate(common);
        self.cached.truncate(common);
        let start = Instant::now();
        let mut last = self.session.feed_last(&ids[common..])?;
        self.cached.extend_from_slice(&ids[common..]);
        r.prompt_computed = ids.len() - common;
        r.prompt_seconds = start.elapsed().as_secs_f64();

        let start = Instant::now();
        let mut sampler = Sampler::new(self.params.clone());
        let mut splitter = ReasoningSplitter::new(prompt_opens_think(&prompt));
        let mut decoder = self.tokenizer.stream_decoder().skip_special(true);
        let mut thinking_tokens = 0usize;
        let mut route = |pieces: Vec<Piece>, r: &mut Reply| {
            for p in pieces {
                match &p {
                    Piece::Reasoning(t) => r.reasoning.push_str(t),
                    Piece::Content(t) => r.content.push_str(t),
                }
                emit(&p);
            }
        };
        while r.generated < opts.max_tokens {
            if interrupt.load(Ordering::Relaxed) {
                r.interrupted = true;
                break;
            }
            let tok = sampler.sample(&last);
            if self.stop_ids.contains(&tok) {
                // The end-of-turn token belongs in the history the template will re-render.
                self.cached.push(tok);
                let _ = self.session.feed_last(&[tok])?;
                break;
            }
            r.generated += 1;
            let text = decoder.push(tok)?;
            route(splitter.push(&text), &mut r);
            let mut next = vec![tok];
            if splitter.in_think() {
                thinking_tokens += 1;
                if opts
                    .max_thinking_tokens
                    .is_some_and(|m| thinking_tokens >= m)
                {
                    // Budget spent: close the think block as if the model had.
                    let close = splitter.forced_close();
                    next.extend(self.tokenizer.encode(&close, false, true)?);
                    route(splitter.push(&close), &mut r);
                }
            }
            if self.session.len() + next.len() > self.context_len() {
                break;
            }
            last = self.session.feed_last(&next)?;
            self.cached.extend_from_slice(&next);
        }
        let tail = decoder.finish();
        route(splitter.push(&tail), &mut r);
        route(splitter.finish(), &mut r);
        r.generate_seconds = start.elapsed().as_secs_f64();
        let mut m = message("assistant", r.content.trim());
        if !r.reasoning.trim().is_empty() {
            m.reasoning_content = Some(r.reasoning.trim().to_string());
        }
        self.messages.push(m);
        Ok(r)
    }

    fn context_len(&self) -> usize {
        match self.session.context_length() {
            0 => usize::MAX,
            n => n,
        }
    }
}
