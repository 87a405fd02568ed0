//! Helpers shared by the server's integration tests.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mixture_server::model::ServedModel;
use mixture_server::sched::SchedulerConfig;
use mixture_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tower::ServiceExt;

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama/model.f32.gguf")
}

pub fn smollm2() -> Option<PathBuf> {
    let p = PathBuf::from("/root/.cache/mixture/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is not there", p.display());
        None
    }
}

pub const MODEL: &str = "model.f32";

/// No prefix cache: a cache hit recomputes the prompt's last token alone instead of within
/// its chunk, which changes the logits in the last bits, and the random fixture's nearly flat
/// distributions flip on that; the tests that compare two runs token for token need the same
/// arithmetic in both. `prefix_cache_reports_cached_tokens` turns it on.
pub fn sched(parallel: usize, queue: usize) -> SchedulerConfig {
    SchedulerConfig {
        parallel,
        queue,
        context: 0,
        prefix_cache_tokens: 0,
        prefill_chunk: 256,
    }
}

pub fn state_with(path: &Path, config: ServerConfig, s: SchedulerConfig) -> AppState {
    let model = ServedModel::load(path).expect("the model loads");
    AppState::new(model, s, config)
}

pub fn state(config: ServerConfig) -> AppState {
    state_with(&fixture(), config, sched(4, 64))
}

pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request")
}

pub async fn post_json(app: &Router, path: &str, body: &Value) -> (StatusCode, Value) {
    let (status, text) = send(app, post(path, body.to_string())).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// The `data:` payloads of an SSE body; the last must be `[DONE]`.
pub fn sse_events(text: &str) -> Vec<Value> {
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(
        data.last(),
        Some(&"[DONE]"),
        "stream must end with [DONE]: {text}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad chunk {d}: {e}")))
        .collect()
}

pub fn assert_error_shape(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "error.message: {v}");
    assert!(e["type"].is_string(), "error.type: {v}");
    let obj = e.as_object().expect("error object");
    assert!(obj.contains_key("param") && obj.contains_key("code"), "{v}");
}

pub fn chat_body(user: &str, extra: Value) -> Value {
    let mut b = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": user}],
    });
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    b
}

/// Streamed chat text: content and reasoning concatenated per choice, finish reasons.
pub fn stream_chat_text(events: &[Value]) -> (Vec<String>, Vec<String>) {
    let mut text = vec![String::new(); 8];
    let mut finish = vec![String::new(); 8];
    for ev in events {
        for c in ev["choices"].as_array().expect("choices") {
            let i = c["index"].as_u64().expect("index") as usize;
            if let Some(t) = c["delta"]["content"].as_str() {
                text[i].push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish[i] = f.to_string();
            }
        }
    }
    (text, finish)
}
