//! `POST /v1/completions` (the legacy text endpoint: no template, no reasoning split).

use crate::error::ApiError;
use crate::generate::{Finish, Msg, Running, TextSetup, TokenLogprob};
use crate::request::{self, Checked, Common, CompletionFields, Prompt};
use crate::run::{self, ChoiceAcc, Job, Usage};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// Most alternatives legacy `logprobs` may ask for.
const MAX_LOGPROBS: u32 = 5;

struct Prepared {
    jobs: Vec<Job>,
    checked: Checked,
    /// Prompt texts (for `echo`), one per prompt.
    prompts: Vec<String>,
    echo: bool,
    logprobs: bool,
}

fn prompts(state: &AppState, p: Option<Prompt>) -> Result<Vec<(String, Vec<u32>)>, ApiError> {
    let tok = &state.model.tokenizer;
    let encode = |t: &str| {
        tok.encode(t, true, true)
            .map_err(|e| ApiError::param("prompt", format!("tokenizing the prompt: {e}")))
    };
    let decode = |ids: &[u32]| {
        tok.decode(ids)
            .map_err(|e| ApiError::param("prompt", format!("invalid token ids: {e}")))
    };
    let list: Vec<(String, Vec<u32>)> = match p {
        None => {
            return Err(ApiError::param(
                "prompt",
                "you must provide a `prompt` parameter",
            ))
        }
        Some(Prompt::Text(t)) => vec![(t.clone(), encode(&t)?)],
        Some(Prompt::Texts(ts)) => ts
            .iter()
            .map(|t| Ok((t.clone(), encode(t)?)))
            .collect::<Result<_, ApiError>>()?,
        Some(Prompt::Ids(ids)) => vec![(decode(&ids)?, ids)],
        Some(Prompt::IdLists(l)) => l
            .into_iter()
            .map(|ids| Ok((decode(&ids)?, ids)))
            .collect::<Result<_, ApiError>>()?,
    };
    if list.is_empty() {
        return Err(ApiError::param(
            "prompt",
            "`prompt` must not be an empty list",
        ));
    }
    if list.iter().any(|(_, ids)| ids.is_empty()) {
        return Err(ApiError::param("prompt", "the prompt is empty"));
    }
    Ok(list)
}

fn prepare(state: &AppState, body: &[u8]) -> Result<Prepared, ApiError> {
    let v = request::parse_body(body)?;
    let common: Common = request::read(&v)?;
    let f: CompletionFields = request::read(&v)?;
    state.check_model(common.model.as_deref())?;
    let checked = common.check(None)?;
    if let Some(k) = f.logprobs {
        if k > MAX_LOGPROBS {
            return Err(ApiError::param(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_LOGPROBS}"),
            ));
        }
    }
    if let Some(b) = f.best_of {
        if b as usize != checked.n {
            return Err(ApiError::param(
                "best_of",
                "`best_of` other than `n` is not supported",
            ));
        }
    }
    let list = prompts(state, f.prompt)?;
    if list.len() * checked.n > request::MAX_N as usize {
        return Err(ApiError::param(
            "n",
            format!(
                "prompts x n must be at most {}, got {}",
                request::MAX_N,
                list.len() * checked.n
            ),
        ));
    }
    let vocab = state.model.model.spec().hparams.vocab_size;
    let mut jobs = Vec::new();
    for (_, ids) in &list {
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ApiError::param(
                "prompt",
                format!("token id {id} is out of range (vocabulary of {vocab})"),
            ));
        }
        let max_tokens = state
            .max_tokens(ids.len(), checked.max_tokens.or(Some(16)))
            .map_err(|e| e.with_param("prompt"))?;
        for seed in run::seeds(&checked, checked.n) {
            jobs.push(Job {
                prompt: ids.clone(),
                max_tokens,
                sampling: run::sampling(state, &checked, seed),
                text: TextSetup {
                    stop_strings: checked.stop.clone(),
                    thinking: None,
                    logprobs: f.logprobs.is_some(),
                    stop_ids: state.model.stop_ids.clone(),
                    keep_special: false,
                    continuation: true,
                },
                logprobs: f.logprobs.map(|k| k as usize),
                constraint: None,
            });
        }
    }
    Ok(Prepared {
        jobs,
        checked,
        prompts: list.into_iter().map(|(t, _)| t).collect(),
        echo: f.echo.unwrap_or(false),
        logprobs: f.logprobs.is_some(),
    })
}

struct Ctx {
    id: String,
    created: u64,
    model: String,
    n: usize,
    prompts: Vec<String>,
    echo: bool,
    logprobs: bool,
    include_usage: bool,
}

impl Ctx {
    fn prompt_of(&self, index: usize) -> &str {
        self.prompts
            .get(index / self.n.max(1))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Legacy logprobs: `tokens`, `token_logprobs`, `top_logprobs` (token -> logprob maps),
/// `text_offset` (character offsets into the returned text, starting at `offset`).
fn logprobs_json(lps: &[TokenLogprob], mut offset: usize) -> Value {
    let mut offsets = Vec::with_capacity(lps.len());
    for lp in lps {
        offsets.push(offset);
        offset += lp.text.chars().count();
    }
    json!({
        "tokens": lps.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|l| {
            let m: serde_json::Map<String, Value> =
                l.top.iter().map(|(t, _, p)| (t.clone(), json!(p))).collect();
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

pub async fn handler(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let p = match prepare(&state, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let total = p.jobs.len();
    let (rx, running) = match run::start(&state, p.jobs) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let ctx = Ctx {
        id: run::new_id("cmpl"),
        created: run::unix_now(),
        model: state.model.id.clone(),
        n: p.checked.n,
        prompts: p.prompts,
        echo: p.echo,
        logprobs: p.logprobs,
        include_usage: p.checked.include_usage,
    };
    if p.checked.stream {
        return stream(state, ctx, rx, running, total, started).into_response();
    }
    let accs = match run::collect(&state, rx, total, started).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    drop(running);
    let choices: Vec<Value> = accs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let prefix = if ctx.echo { ctx.prompt_of(i) } else { "" };
            json!({
                "index": i,
                "text": format!("{prefix}{}", a.content),
                "logprobs": if ctx.logprobs {
                    logprobs_json(&a.logprobs, prefix.chars().count())
                } else { Value::Null },
                "finish_reason": a.finish.unwrap_or(Finish::Stop).as_str(),
            })
        })
        .collect();
    axum::Json(json!({
        "id": ctx.id,
        "object": "text_completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": choices,
        "usage": Usage::of(&accs, ctx.n).json(),
        "system_fingerprint": crate::FINGERPRINT,
    }))
    .into_response()
}

struct StreamState {
    state: AppState,
    ctx: Ctx,
    rx: UnboundedReceiver<Msg>,
    _running: Running,
    accs: Vec<ChoiceAcc>,
    /// Characters sent so far per choice (for `text_offset`).
    sent_chars: Vec<usize>,
    started: Instant,
    out: VecDeque<SseEvent>,
    finished: bool,
    log: run::StreamLog,
}

impl StreamState {
    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> SseEvent {
        let mut v = json!({
            "id": self.ctx.id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.ctx.model,
            "system_fingerprint": crate::FINGERPRINT,
            "choices": choices,
        });
        if self.ctx.include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        SseEvent::default().data(v.to_string())
    }

    fn text_chunk(&mut self, index: usize, text: &str, lp: Option<&TokenLogprob>) {
        let offset = self.sent_chars.get(index).copied().unwrap_or(0);
        if let Some(s) = self.sent_chars.get_mut(index) {
            *s += text.chars().count();
        }
        let lp = match (lp, self.ctx.logprobs) {
            (Some(lp), true) => logprobs_json(std::slice::from_ref(lp), offset),
            _ => Value::Null,
        };
        let c = json!({ "index": index, "text": text, "logprobs": lp, "finish_reason": null });
        let ev = self.chunk(vec![c], None);
        self.out.push_back(ev);
    }

    fn handle(&mut self, msg: Msg) {
        let index = match run::apply(&self.state, &mut self.accs, self.started, &msg) {
            Ok(i) => {
                self.log.update(&self.accs);
                i
            }
            Err(e) => {
                self.out
                    .push_back(SseEvent::default().data(e.body().to_string()));
                self.out.push_back(SseEvent::default().data("[DONE]"));
                self.finished = true;
                return;
            }
        };
        match msg {
            Msg::Delta {
                content, logprobs, ..
            } => {
                if content.is_empty() && logprobs.is_none() {
                    return;
                }
                self.text_chunk(index, &content, logprobs.as_ref());
            }
            Msg::Done { finish, .. } => {
                let c = json!({ "index": index, "text": "", "logprobs": null, "finish_reason": finish.as_str() });
                let ev = self.chunk(vec![c], None);
                self.out.push_back(ev);
                if self.accs.iter().all(|a| a.finish.is_some()) {
                    self.log.finished = true;
                    if self.ctx.include_usage {
                        let usage = Usage::of(&self.accs, self.ctx.n).json();
                        let ev = self.chunk(Vec::new(), Some(usage));
                        self.out.push_back(ev);
                    }
                    self.out.push_back(SseEvent::default().data("[DONE]"));
                    self.finished = true;
                }
            }
            Msg::Error { .. } => {}
        }
    }
}

fn stream(
    state: AppState,
    ctx: Ctx,
    rx: UnboundedReceiver<Msg>,
    running: Running,
    total: usize,
    started: Instant,
) -> impl IntoResponse {
    let mut st = StreamState {
        state: state.clone(),
        ctx,
        rx,
        _running: running,
        accs: vec![ChoiceAcc::default(); total],
        sent_chars: vec![0; total],
        started,
        out: VecDeque::new(),
        finished: false,
        log: run::StreamLog::new("/v1/completions", started, state.clone()),
    };
    if st.ctx.echo {
        for i in 0..total {
            let prompt = st.ctx.prompt_of(i).to_string();
            st.text_chunk(i, &prompt, None);
        }
    }
    let s = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(ev), st));
            }
            if st.finished {
                return None;
            }
            match st.rx.recv().await {
                Some(msg) => st.handle(msg),
                None => {
                    let e = ApiError::unavailable("generation was stopped");
                    st.out
                        .push_back(SseEvent::default().data(e.body().to_string()));
                    st.out.push_back(SseEvent::default().data("[DONE]"));
                    st.finished = true;
                }
            }
        }
    });
    Sse::new(s)
}
