//! `POST /v1/chat/completions`.

use crate::error::ApiError;
use crate::generate::{Finish, Msg, Running, TextSetup, Thinking, TokenLogprob};
use crate::request::{self, ChatFields, Checked, Common, Content, InMessage};
use crate::run::{self, ChoiceAcc, Job, Usage};
use crate::tools::{tool_calls_json, Format, ParsedAnswer};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use mixture_engine::reasoning::{prompt_opens_think, ReasoningSplitter};
use mixture_model::chat_template::Message;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

fn content_text(i: usize, m: &InMessage) -> Result<String, ApiError> {
    match &m.content {
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => out.push_str(t),
                    ("text", None) => {
                        return Err(ApiError::param(
                            format!("messages[{i}].content[{j}].text"),
                            "a text content part needs `text`",
                        ))
                    }
                    (other, _) => {
                        return Err(ApiError::param(
                            format!("messages[{i}].content[{j}].type"),
                            format!(
                                "content parts of type {other:?} are not supported (text only)"
                            ),
                        ))
                    }
                }
            }
            Ok(out)
        }
        None if m.role == "assistant" && m.tool_calls.is_some() => Ok(String::new()),
        None => Err(ApiError::param(
            format!("messages[{i}].content"),
            format!("messages[{i}] ({}) needs `content`", m.role),
        )),
    }
}

/// Checked messages, as the template wants them.
fn messages(f: &ChatFields) -> Result<Vec<Message>, ApiError> {
    let Some(msgs) = &f.messages else {
        return Err(ApiError::param(
            "messages",
            "you must provide a `messages` parameter",
        ));
    };
    if msgs.is_empty() {
        return Err(ApiError::param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::param(
                    format!("messages[{i}].role"),
                    format!(
                        "invalid role {:?}; expected one of {}",
                        m.role,
                        ROLES.join(", ")
                    ),
                )
                .with_code("invalid_value"));
            }
            let role = if m.role == "developer" {
                "system"
            } else {
                &m.role
            };
            let mut out = Message::new(role, content_text(i, m)?);
            out.reasoning_content = m.reasoning_content.clone();
            out.tool_calls = m.tool_calls.clone().map(Value::Array);
            let _ = (&m.tool_call_id, &m.name);
            Ok(out)
        })
        .collect()
}

/// Template variables: `tools` (unless `tool_choice` is "none") and `chat_template_kwargs`.
fn template_extra(f: &ChatFields, cap: Option<usize>) -> Result<(Value, bool), ApiError> {
    let mut extra = serde_json::Map::new();
    if let Some(kw) = &f.chat_template_kwargs {
        for (k, v) in kw {
            if k == "messages" || k == "add_generation_prompt" {
                return Err(ApiError::param(
                    "chat_template_kwargs",
                    format!("`{k}` cannot be set through chat_template_kwargs"),
                ));
            }
            extra.insert(k.clone(), v.clone());
        }
    }
    if cap == Some(0) && !extra.contains_key("enable_thinking") {
        extra.insert("enable_thinking".into(), Value::Bool(false));
    }
    let tool_choice_none = matches!(&f.tool_choice, Some(Value::String(s)) if s == "none");
    check_tool_choice(f)?;
    let mut with_tools = false;
    if let Some(tools) = &f.tools {
        for (i, t) in tools.iter().enumerate() {
            let name = t.get("function").and_then(|f| f.get("name"));
            if t.get("type").and_then(Value::as_str) != Some("function")
                || !name.is_some_and(Value::is_string)
            {
                return Err(ApiError::param(
                    format!("tools[{i}]"),
                    "each tool must be {\"type\": \"function\", \"function\": {\"name\": ..., ...}}",
                ));
            }
        }
        if !tools.is_empty() && !tool_choice_none {
            extra.insert("tools".into(), Value::Array(tools.clone()));
            with_tools = true;
        }
    }
    Ok((Value::Object(extra), with_tools))
}

/// `tool_choice` as OpenAI takes it: "none", "auto", "required", or
/// `{"type": "function", "function": {"name": N}}` naming one of `tools`.
fn check_tool_choice(f: &ChatFields) -> Result<(), ApiError> {
    let Some(choice) = &f.tool_choice else {
        return Ok(());
    };
    let names: Vec<&str> = f
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
        .collect();
    match choice {
        Value::String(s) if s == "none" || s == "auto" => Ok(()),
        Value::String(s) if s == "required" && !names.is_empty() => Ok(()),
        Value::String(s) if s == "required" => Err(ApiError::param(
            "tool_choice",
            "tool_choice \"required\" needs tools",
        )),
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match name {
                Some(n) if o.get("type").and_then(Value::as_str) == Some("function") => {
                    if names.contains(&n) {
                        Ok(())
                    } else {
                        Err(ApiError::param(
                            "tool_choice",
                            format!("tool_choice names the function `{n}`, which is not in tools"),
                        ))
                    }
                }
                _ => Err(ApiError::param(
                    "tool_choice",
                    "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )),
            }
        }
        _ => Err(ApiError::param(
            "tool_choice",
            "tool_choice must be \"none\", \"auto\", \"required\" or a named function",
        )),
    }
}

struct Prepared {
    jobs: Vec<Job>,
    checked: Checked,
    with_tools: bool,
    logprobs: bool,
}

fn prepare(state: &AppState, body: &[u8]) -> Result<Prepared, ApiError> {
    let v = request::parse_body(body)?;
    let common: Common = request::read(&v)?;
    let f: ChatFields = request::read(&v)?;
    state.check_model(common.model.as_deref())?;
    let msgs = messages(&f)?;
    let checked = common.check(f.max_completion_tokens)?;
    let cap = request::thinking_cap(&f)?;
    let logprobs = f.logprobs.unwrap_or(false);
    let top = f.top_logprobs.unwrap_or(0);
    if top > request::MAX_TOP_LOGPROBS {
        return Err(ApiError::param(
            "top_logprobs",
            format!(
                "`top_logprobs` must be between 0 and {}",
                request::MAX_TOP_LOGPROBS
            ),
        ));
    }
    if f.top_logprobs.is_some() && !logprobs {
        return Err(ApiError::param(
            "top_logprobs",
            "`top_logprobs` needs `logprobs` set to true",
        ));
    }
    let (extra, with_tools) = template_extra(&f, cap)?;
    let prompt = state
        .model
        .template
        .render(&msgs, true, Some(extra))
        .map_err(|e| ApiError::invalid(format!("the chat template refused the messages: {e}")))?;
    let mut ids = state
        .model
        .tokenizer
        .encode(&prompt, false, true)
        .map_err(|e| ApiError::invalid(format!("tokenizing the prompt: {e}")))?;
    let mut pre_opened = prompt_opens_think(&prompt);
    let close_text = ReasoningSplitter::new(true).forced_close();
    let close_ids = state
        .model
        .tokenizer
        .encode(&close_text, false, true)
        .map_err(|e| ApiError::internal(format!("tokenizing the think close tag: {e}")))?;
    let mut cap = cap;
    if cap == Some(0) && pre_opened {
        // No thinking at all: close the block in the prompt.
        ids.extend_from_slice(&close_ids);
        pre_opened = false;
        cap = None;
    }
    let max_tokens = state.max_tokens(ids.len(), checked.max_tokens)?;
    let seeds = run::seeds(&checked, checked.n);
    let mut jobs = Vec::with_capacity(checked.n);
    for &seed in &seeds {
        jobs.push(Job {
            prompt: ids.clone(),
            max_tokens,
            sampling: run::sampling(state, &checked, seed),
            text: TextSetup {
                stop_strings: checked.stop.clone(),
                thinking: Some(Thinking {
                    pre_opened,
                    cap,
                    close_ids: close_ids.clone(),
                }),
                logprobs,
                stop_ids: state.model.stop_ids.clone(),
                keep_special: with_tools,
                continuation: false,
            },
            logprobs: logprobs.then_some(top as usize),
            constraint: crate::format::constraint(state, f.response_format.as_ref())?,
        });
    }
    Ok(Prepared {
        jobs,
        checked,
        with_tools,
        logprobs,
    })
}

pub async fn handler(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let p = match prepare(&state, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let n = p.jobs.len();
    let (rx, running) = match run::start(&state, p.jobs) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let ctx = Ctx {
        id: run::new_id("chatcmpl"),
        created: run::unix_now(),
        model: state.model.id.clone(),
        with_tools: p.with_tools,
        logprobs: p.logprobs,
        include_usage: p.checked.include_usage,
    };
    if p.checked.stream {
        return stream(state, ctx, rx, running, n, started).into_response();
    }
    let accs = match run::collect(&state, rx, n, started).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    drop(running);
    axum::Json(response(&ctx, &accs, &state)).into_response()
}

struct Ctx {
    id: String,
    created: u64,
    model: String,
    with_tools: bool,
    logprobs: bool,
    include_usage: bool,
}

fn logprob_json(lp: &TokenLogprob) -> Value {
    json!({
        "token": lp.text,
        "logprob": lp.logprob,
        "bytes": lp.bytes,
        "top_logprobs": lp.top.iter().map(|(t, b, l)| json!({
            "token": t, "logprob": l, "bytes": b,
        })).collect::<Vec<_>>(),
    })
}

fn logprobs_json(lps: &[TokenLogprob]) -> Value {
    json!({ "content": lps.iter().map(logprob_json).collect::<Vec<_>>(), "refusal": null })
}

/// The answer of one finished choice: tool calls parsed out when tools were given.
fn answer(ctx: &Ctx, state: &AppState, acc: &ChoiceAcc) -> (ParsedAnswer, &'static str) {
    let format = ctx.with_tools.then_some(state.tool_format);
    answer_with(format, acc)
}

fn answer_with(format: Option<Format>, acc: &ChoiceAcc) -> (ParsedAnswer, &'static str) {
    let finish = acc.finish.unwrap_or(Finish::Stop);
    let Some(format) = format else {
        return (
            ParsedAnswer {
                content: acc.content.clone(),
                ..ParsedAnswer::default()
            },
            finish.as_str(),
        );
    };
    let mut parsed = format.parse(&acc.content);
    let reason = if parsed.incomplete || finish == Finish::Length {
        "length"
    } else if !parsed.calls.is_empty() {
        "tool_calls"
    } else {
        finish.as_str()
    };
    if parsed.incomplete {
        // A call cut by max_tokens is not reported as finished.
        parsed.calls.clear();
    }
    (parsed, reason)
}

fn response(ctx: &Ctx, accs: &[ChoiceAcc], state: &AppState) -> Value {
    let choices: Vec<Value> = accs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (parsed, reason) = answer(ctx, state, a);
            let mut message = json!({
                "role": "assistant",
                "content": parsed.content,
            });
            if !a.reasoning.is_empty() {
                message["reasoning_content"] = json!(a.reasoning);
                message["reasoning"] = json!(a.reasoning);
            }
            if !parsed.calls.is_empty() {
                message["tool_calls"] = tool_calls_json(&parsed.calls, false);
                if parsed.content.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            json!({
                "index": i,
                "message": message,
                "logprobs": if ctx.logprobs { logprobs_json(&a.logprobs) } else { Value::Null },
                "finish_reason": reason,
            })
        })
        .collect();
    json!({
        "id": ctx.id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": choices,
        "usage": Usage::of(accs, accs.len()).json(),
        "system_fingerprint": crate::FINGERPRINT,
    })
}

struct StreamState {
    state: AppState,
    ctx: Ctx,
    rx: UnboundedReceiver<Msg>,
    _running: Running,
    accs: Vec<ChoiceAcc>,
    /// Content bytes already streamed per choice (with tools).
    sent: Vec<usize>,
    started: Instant,
    out: VecDeque<SseEvent>,
    finished: bool,
    log: run::StreamLog,
}

impl StreamState {
    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> SseEvent {
        let mut v = json!({
            "id": self.ctx.id,
            "object": "chat.completion.chunk",
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
                reasoning,
                content,
                logprobs,
                ..
            } => {
                let mut delta = serde_json::Map::new();
                if !reasoning.is_empty() {
                    delta.insert("reasoning_content".into(), json!(reasoning));
                    delta.insert("reasoning".into(), json!(reasoning));
                }
                if self.ctx.with_tools {
                    // Content goes out up to where a tool call may start; the rest waits
                    // for the end of the choice.
                    if let (Some(acc), Some(sent)) =
                        (self.accs.get(index), self.sent.get_mut(index))
                    {
                        let safe = self.state.tool_format.safe_len(&acc.content);
                        if safe > *sent {
                            if let Some(t) = acc.content.get(*sent..safe) {
                                delta.insert("content".into(), json!(t));
                            }
                            *sent = safe;
                        }
                    }
                } else if !content.is_empty() {
                    delta.insert("content".into(), json!(content));
                }
                let lp = match (&logprobs, self.ctx.logprobs) {
                    (Some(lp), true) => {
                        json!({ "content": [logprob_json(lp)], "refusal": null })
                    }
                    _ => Value::Null,
                };
                if delta.is_empty() && lp.is_null() {
                    return;
                }
                let c = json!({ "index": index, "delta": delta, "logprobs": lp, "finish_reason": null });
                let ev = self.chunk(vec![c], None);
                self.out.push_back(ev);
            }
            Msg::Done { .. } => {
                let Some(acc) = self.accs.get(index) else {
                    return;
                };
                let (parsed, reason) = answer(&self.ctx, &self.state, acc);
                let mut delta = serde_json::Map::new();
                if self.ctx.with_tools {
                    let sent = self.sent.get(index).copied().unwrap_or(0);
                    let already = acc.content.get(..sent).unwrap_or("");
                    if let Some(rest) = parsed.content.strip_prefix(already) {
                        if !rest.is_empty() {
                            delta.insert("content".into(), json!(rest));
                        }
                    }
                    if !parsed.calls.is_empty() {
                        delta.insert("tool_calls".into(), tool_calls_json(&parsed.calls, true));
                    }
                }
                let c = json!({ "index": index, "delta": delta, "logprobs": null, "finish_reason": reason });
                let ev = self.chunk(vec![c], None);
                self.out.push_back(ev);
                if self.accs.iter().all(|a| a.finish.is_some()) {
                    self.log.finished = true;
                    if self.ctx.include_usage {
                        let usage = Usage::of(&self.accs, self.accs.len()).json();
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
    n: usize,
    started: Instant,
) -> impl IntoResponse {
    let mut st = StreamState {
        state: state.clone(),
        ctx,
        rx,
        _running: running,
        accs: vec![ChoiceAcc::default(); n],
        sent: vec![0; n],
        started,
        out: VecDeque::new(),
        finished: false,
        log: run::StreamLog::new("/v1/chat/completions", started, state.clone()),
    };
    // The first chunk of each choice carries the role, as OpenAI's do.
    for i in 0..n {
        let c = json!({ "index": i, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null });
        let ev = st.chunk(vec![c], None);
        st.out.push_back(ev);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(content: &str, finish: Finish) -> ChoiceAcc {
        ChoiceAcc {
            content: content.to_string(),
            finish: Some(finish),
            ..ChoiceAcc::default()
        }
    }

    #[test]
    fn tool_calls_become_openai_tool_calls() {
        let hermes = Format::detect("{{ '<tool_call>' }}");
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let (p, reason) = answer_with(Some(hermes), &acc(text, Finish::Stop));
        assert_eq!(reason, "tool_calls");
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].0, "get_weather");
        let args: Value = serde_json::from_str(&p.calls[0].1).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        assert_eq!(p.content.trim(), "Let me look.");
        let calls = tool_calls_json(&p.calls, true);
        assert_eq!(calls[0]["id"], "call_0");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[0]["function"]["name"], "get_weather");

        // Cut by max_tokens inside the call: "length", and the call is not reported.
        let cut = "<tool_call>\n{\"name\": \"get_weather\", \"argu";
        let (p, reason) = answer_with(Some(hermes), &acc(cut, Finish::Length));
        assert_eq!(reason, "length");
        assert!(p.calls.is_empty());

        // Without tools the text is content, as is.
        let (p, reason) = answer_with(None, &acc(text, Finish::Stop));
        assert_eq!((p.content.as_str(), reason), (text, "stop"));
        assert!(p.calls.is_empty());
    }
}
