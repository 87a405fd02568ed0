//! The HTTP API in process (tower `oneshot`), against the tiny llama fixture
//! (tests/fixtures/llama, random weights, vocab 288, context 256, no chat template: ChatML
//! fallback) and, when present, SmolLM2-135M-Instruct.
//!
//! The expectations are properties and independent references (the tokenizer and template
//! used directly, a request without stop strings, the same request with another seed), not
//! recorded outputs.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mixture_model::chat_template::{ChatTemplate, Message};
use mixture_model::tokenizer::Tokenizer;
use mixture_server::model::ServedModel;
use mixture_server::sched::SchedulerConfig;
use mixture_server::{app, AppState, ServerConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tower::ServiceExt;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama/model.f32.gguf")
}

fn smollm2() -> Option<PathBuf> {
    let p = PathBuf::from("/root/.cache/mixture/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is not there", p.display());
        None
    }
}

const MODEL: &str = "model.f32";

/// No prefix cache: a cache hit recomputes the prompt's last token alone instead of within
/// its chunk, which changes the logits in the last bits, and the random fixture's nearly flat
/// distributions flip on that; the tests that compare two runs token for token need the same
/// arithmetic in both. `prefix_cache_reports_cached_tokens` turns it on.
fn sched(parallel: usize, queue: usize) -> SchedulerConfig {
    SchedulerConfig {
        parallel,
        queue,
        context: 0,
        prefix_cache_tokens: 0,
        prefill_chunk: 256,
    }
}

fn state_with(path: &Path, config: ServerConfig, s: SchedulerConfig) -> AppState {
    let model = ServedModel::load(path).expect("the model loads");
    AppState::new(model, s, config)
}

fn state(config: ServerConfig) -> AppState {
    state_with(&fixture(), config, sched(4, 64))
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request")
}

async fn post_json(app: &Router, path: &str, body: &Value) -> (StatusCode, Value) {
    let (status, text) = send(app, post(path, body.to_string())).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// The `data:` payloads of an SSE body; the last must be `[DONE]`.
fn sse_events(text: &str) -> Vec<Value> {
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

fn assert_error_shape(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "error.message: {v}");
    assert!(e["type"].is_string(), "error.type: {v}");
    let obj = e.as_object().expect("error object");
    assert!(obj.contains_key("param") && obj.contains_key("code"), "{v}");
}

fn chat_body(user: &str, extra: Value) -> Value {
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
fn stream_chat_text(events: &[Value]) -> (Vec<String>, Vec<String>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_4xx_with_openai_errors_while_others_succeed() {
    let st = state(ServerConfig {
        body_limit: 64 << 10,
        ..ServerConfig::default()
    });
    let app = app(st);
    // A well-formed streaming request runs meanwhile.
    let good = {
        let app = app.clone();
        tokio::spawn(async move {
            let body = chat_body(
                "hello",
                json!({"max_tokens": 60, "stream": true, "seed": 1}),
            );
            send(&app, post("/v1/chat/completions", body.to_string())).await
        })
    };
    let long_prompt = "x y ".repeat(400);
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", "{not json".into(), 400, None),
        ("/v1/chat/completions", "[1, 2]".into(), 400, None),
        (
            "/v1/chat/completions",
            json!({"model": MODEL}).to_string(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": []}).to_string(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}]}).to_string(),
            400,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"model": "gpt-4o"})).to_string(),
            404,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}).to_string(),
            400,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": 7, "content": "hi"}]}).to_string(),
            400,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user"}]}).to_string(),
            400,
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"temperature": "hot"})).to_string(),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"temperature": -0.5})).to_string(),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"n": 0})).to_string(),
            400,
            Some("n"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"n": 1000})).to_string(),
            400,
            Some("n"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"stop": 5})).to_string(),
            400,
            Some("stop"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"max_tokens": -3})).to_string(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"top_logprobs": 3})).to_string(),
            400,
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"response_format": {"type": "yaml"}})).to_string(),
            400,
            Some("response_format.type"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"reasoning_effort": "extreme"})).to_string(),
            400,
            Some("reasoning_effort"),
        ),
        (
            "/v1/chat/completions",
            chat_body(&long_prompt, json!({})).to_string(),
            400,
            Some("messages"),
        ),
        ("/v1/chat/completions", "x".repeat(70 << 10), 413, None),
        (
            "/v1/completions",
            json!({"model": MODEL}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": [1, 2, 100000]}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "logprobs": 50}).to_string(),
            400,
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": ""}).to_string(),
            400,
            Some("prompt"),
        ),
    ];
    for (path, body, want, param) in &cases {
        let (status, text) = send(&app, post(path, body.clone())).await;
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{body:.80}: not JSON ({e}): {text}"));
        assert_eq!(status.as_u16(), *want, "{body:.80} -> {text}");
        assert_error_shape(&v);
        if let Some(p) = param {
            assert_eq!(
                v["error"]["param"].as_str(),
                Some(*p),
                "{body:.80} -> {text}"
            );
        }
    }
    let (status, text) = send(
        &app,
        post(
            "/v1/chat/completions",
            chat_body(&long_prompt, json!({})).to_string(),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("context_length_exceeded"), "{text}");
    // Unknown routes and methods.
    let (status, text) = send(
        &app,
        Request::get("/v1/nothing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_error_shape(&serde_json::from_str(&text).unwrap());
    let (status, text) = send(
        &app,
        Request::get("/v1/chat/completions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_error_shape(&serde_json::from_str(&text).unwrap());
    // Unknown fields are ignored.
    let (status, v) = post_json(
        &app,
        "/v1/chat/completions",
        &chat_body(
            "hi",
            json!({"max_tokens": 2, "frobnicate": {"a": [1]}, "user": "u"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    let (status, text) = good.await.expect("task");
    assert_eq!(status, 200, "{text}");
    let events = sse_events(&text);
    let (_, finish) = stream_chat_text(&events);
    assert!(finish[0] == "stop" || finish[0] == "length", "{finish:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_not_give_the_same_text_for_a_seed() {
    let app = app(state(ServerConfig::default()));
    for n in [1usize, 2] {
        let body = chat_body(
            "Tell me a story",
            json!({"max_tokens": 40, "temperature": 1.0, "seed": 1234, "n": n}),
        );
        let (status, plain) = post_json(&app, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{plain}");
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let (status, text) = send(&app, post("/v1/chat/completions", sbody.to_string())).await;
        assert_eq!(status, 200);
        let events = sse_events(&text);
        assert!(events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk"));
        let (streamed, finish) = stream_chat_text(&events);
        let choices = plain["choices"].as_array().unwrap();
        assert_eq!(choices.len(), n);
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(c["index"], i);
            assert_eq!(c["message"]["role"], "assistant");
            assert_eq!(c["message"]["content"].as_str().unwrap(), streamed[i]);
            assert_eq!(c["finish_reason"].as_str().unwrap(), finish[i]);
        }
    }
    // Completions too.
    let body = json!({"model": MODEL, "prompt": "Once upon", "max_tokens": 30, "temperature": 0.9, "seed": 5});
    let (status, plain) = post_json(&app, "/v1/completions", &body).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["object"], "text_completion");
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (_, text) = send(&app, post("/v1/completions", sbody.to_string())).await;
    let streamed: String = sse_events(&text)
        .iter()
        .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(plain["choices"][0]["text"].as_str().unwrap(), streamed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_use_consecutive_seeds() {
    let app = app(state(ServerConfig::default()));
    let body = |n: u32, seed: u64| json!({"model": MODEL, "prompt": "abc", "max_tokens": 25, "temperature": 1.0, "seed": seed, "n": n});
    let (status, two) = post_json(&app, "/v1/completions", &body(2, 40)).await;
    assert_eq!(status, 200, "{two}");
    let (_, a) = post_json(&app, "/v1/completions", &body(1, 40)).await;
    let (_, b) = post_json(&app, "/v1/completions", &body(1, 41)).await;
    assert_eq!(two["choices"][0]["text"], a["choices"][0]["text"]);
    assert_eq!(two["choices"][1]["text"], b["choices"][0]["text"]);
    assert_eq!(two["choices"][1]["index"], 1);
    // Prompt counted once; completion tokens summed.
    let u = &two["usage"];
    assert_eq!(u["prompt_tokens"], a["usage"]["prompt_tokens"]);
    assert_eq!(
        u["completion_tokens"].as_u64().unwrap(),
        a["usage"]["completion_tokens"].as_u64().unwrap()
            + b["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_cut_the_text_before_them() {
    let app = app(state(ServerConfig::default()));
    let base = json!({"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 60, "temperature": 0.0});
    let (_, free) = post_json(&app, "/v1/completions", &base).await;
    let text = free["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(
        chars.len() >= 12,
        "need a longer output to test stop strings: {text:?}"
    );
    // A stop string from the middle of the free output (likely spanning tokens).
    let stop: String = chars[6..9].iter().collect();
    let want = &text[..text.find(&stop).unwrap()];
    for stream in [false, true] {
        let mut body = base.clone();
        body["stop"] = json!(["\u{1}never", stop.clone()]);
        body["stream"] = json!(stream);
        let (status, out) = send(&app, post("/v1/completions", body.to_string())).await;
        assert_eq!(status, 200);
        let (got, finish) = if stream {
            let evs = sse_events(&out);
            let cs: Vec<Value> = evs
                .iter()
                .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
                .collect();
            let t: String = cs.iter().filter_map(|c| c["text"].as_str()).collect();
            let f = cs
                .iter()
                .rev()
                .find_map(|c| c["finish_reason"].as_str())
                .unwrap()
                .to_string();
            (t, f)
        } else {
            let v: Value = serde_json::from_str(&out).unwrap();
            (
                v["choices"][0]["text"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(got, want, "stop {stop:?} stream {stream}");
        assert_eq!(finish, "stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_match_the_tokenizer() {
    let app = app(state(ServerConfig::default()));
    let tok = Tokenizer::load(&fixture()).unwrap();
    // Completions: the prompt as the tokenizer encodes it.
    let prompt = "Counting tokens here";
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 7, "temperature": 0.0});
    let (_, v) = post_json(&app, "/v1/completions", &body).await;
    let u = &v["usage"];
    assert_eq!(
        u["prompt_tokens"].as_u64().unwrap() as usize,
        tok.encode(prompt, true, true).unwrap().len()
    );
    let completion = u["completion_tokens"].as_u64().unwrap();
    assert!((1..=7).contains(&completion));
    if v["choices"][0]["finish_reason"] == "length" {
        assert_eq!(completion, 7);
    }
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + completion
    );
    assert!(u["prompt_tokens_details"]["cached_tokens"].is_u64());
    // Chat: the ChatML prompt rendered independently.
    let rendered = ChatTemplate::fallback()
        .render(&[Message::new("user", "hello there")], true, None)
        .unwrap();
    let want = tok.encode(&rendered, false, true).unwrap().len();
    let (_, v) = post_json(
        &app,
        "/v1/chat/completions",
        &chat_body("hello there", json!({"max_tokens": 3})),
    )
    .await;
    assert_eq!(
        v["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        want,
        "{v}"
    );
    // Streaming with include_usage: a last chunk with empty choices and the usage.
    let body = chat_body(
        "hello there",
        json!({"max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let (_, text) = send(&app, post("/v1/chat/completions", body.to_string())).await;
    let evs = sse_events(&text);
    let last = evs.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(
        last["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        want
    );
    assert!(evs[..evs.len() - 1].iter().all(|e| e["usage"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_have_openai_shapes() {
    let app = app(state(ServerConfig::default()));
    let body = chat_body(
        "hi",
        json!({"max_tokens": 6, "temperature": 0.0, "logprobs": true, "top_logprobs": 3}),
    );
    let (status, v) = post_json(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs.content");
    assert!(!content.is_empty());
    for e in content {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        assert!(e["token"].is_string() && e["bytes"].is_array());
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let tops: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(tops.windows(2).all(|w| w[0] >= w[1]), "{tops:?}");
        // Greedy: the chosen token is the most likely one.
        assert!((tops[0] - lp).abs() < 1e-5, "{lp} vs {tops:?}");
        assert_eq!(top[0]["token"], e["token"]);
    }
    // Legacy completions shape.
    let body = json!({"model": MODEL, "prompt": "abc", "max_tokens": 5, "temperature": 0.0, "logprobs": 2});
    let (_, v) = post_json(&app, "/v1/completions", &body).await;
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), tokens.len());
    assert_eq!(lp["text_offset"].as_array().unwrap().len(), tokens.len());
    for t in lp["top_logprobs"].as_array().unwrap() {
        assert_eq!(
            t.as_object().unwrap().len().min(2),
            t.as_object().unwrap().len()
        );
    }
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, v["choices"][0]["text"].as_str().unwrap());
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .and_then(|r| r.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move() {
    let app = app(state(ServerConfig::default()));
    let get_metrics = || async {
        let (s, t) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(s, 200);
        t
    };
    let before = get_metrics().await;
    let (_, v) = post_json(
        &app,
        "/v1/chat/completions",
        &chat_body("hi", json!({"max_tokens": 4})),
    )
    .await;
    let _ = post_json(&app, "/v1/chat/completions", &json!({"model": MODEL})).await;
    let after = get_metrics().await;
    let ok = "mixture_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}";
    let bad = "mixture_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}";
    assert_eq!(metric(&after, ok), metric(&before, ok) + 1.0);
    assert_eq!(metric(&after, bad), metric(&before, bad) + 1.0);
    let gen = "mixture_generated_tokens_total";
    assert_eq!(
        metric(&after, gen) - metric(&before, gen),
        v["usage"]["completion_tokens"].as_f64().unwrap()
    );
    let ttft = "mixture_time_to_first_token_seconds_count";
    assert_eq!(metric(&after, ttft), metric(&before, ttft) + 1.0);
    assert!(after.contains("mixture_queue_depth "));
    assert!(after.contains("mixture_running_sequences "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_enforced() {
    let app = app(state(ServerConfig {
        api_key: Some("sekret".into()),
        ..ServerConfig::default()
    }));
    let body = chat_body("hi", json!({"max_tokens": 2})).to_string();
    let (s, t) = send(&app, post("/v1/chat/completions", body.clone())).await;
    assert_eq!(s, 401);
    assert_error_shape(&serde_json::from_str(&t).unwrap());
    let req = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer wrong")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(send(&app, req).await.0, 401);
    let req = Request::get("/v1/models").body(Body::empty()).unwrap();
    assert_eq!(send(&app, req).await.0, 401);
    let req = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sekret")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(send(&app, req).await.0, 200);
    let req = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&app, req).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_served_model() {
    let app = app(state(ServerConfig::default()));
    let (s, t) = send(
        &app,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["data"][0]["id"], MODEL);
    let (s, _) = send(
        &app,
        Request::get(format!("/v1/models/{MODEL}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &app,
        Request::get("/v1/models/other")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    // "default" names the served model too.
    let (s, _) = post_json(
        &app,
        "/v1/chat/completions",
        &chat_body("hi", json!({"model": "default", "max_tokens": 1})),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    let app = app(state_with(&fixture(), ServerConfig::default(), sched(1, 1)));
    // 16 choices submitted at once cannot all wait in a queue of one.
    let body = json!({"model": MODEL, "prompt": "abc", "max_tokens": 200, "n": 16});
    let (s, v) = post_json(&app, "/v1/completions", &body).await;
    assert_eq!(s, 429, "{v}");
    assert_error_shape(&v);
    // The server recovers.
    let mut ok = false;
    for _ in 0..50 {
        let (s, _) = post_json(
            &app,
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "abc", "max_tokens": 2}),
        )
        .await;
        if s == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shuts_down_cleanly_with_a_stream_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let st = state(ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mixture_server::serve(listener, st, async move {
        let _ = stop_rx.await;
    }));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = chat_body("go on", json!({"max_tokens": 200, "stream": true})).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let _ = stop_tx.send(());
    let done = tokio::time::timeout(std::time::Duration::from_secs(20), server).await;
    assert!(done.is_ok(), "serve did not return after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_answers_and_streams_the_same() {
    let Some(path) = smollm2() else {
        return;
    };
    let app = app(state_with(&path, ServerConfig::default(), sched(4, 64)));
    let body = json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}
        ],
        "max_tokens": 24, "temperature": 0.0,
    });
    let (s, v) = post_json(&app, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{v}");
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains("Paris"), "{content}");
    assert!(v["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (_, text) = send(&app, post("/v1/chat/completions", sb.to_string())).await;
    let (streamed, _) = stream_chat_text(&sse_events(&text));
    assert_eq!(streamed[0], content);
    // The end-of-turn token stops it before max_tokens... or max_tokens does.
    let f = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(f == "stop" || f == "length");
}

/// The fixture with a template whose generation prompt opens a think block (as the R1
/// distills' do), so everything up to `</think>` is reasoning.
fn thinking_state() -> AppState {
    let path = fixture();
    let model = mixture_model::arch::build(mixture_model::load(&path).unwrap()).unwrap();
    let tokenizer = Tokenizer::load(&path).unwrap();
    let template = ChatTemplate::new(
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}",
        "",
        "",
    )
    .unwrap();
    let served = ServedModel::new("think".into(), model.into(), tokenizer, template);
    AppState::new(served, sched(4, 64), ServerConfig::default())
}

fn think_body(extra: Value) -> Value {
    let mut b = json!({"model": "think", "messages": [{"role": "user", "content": "why?"}], "temperature": 0.0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_goes_to_reasoning_content_and_the_cap_closes_it() {
    let app = app(thinking_state());
    // No cap: the random model never closes the block, so all text is reasoning.
    let (s, free) = post_json(
        &app,
        "/v1/chat/completions",
        &think_body(json!({"max_tokens": 12})),
    )
    .await;
    assert_eq!(s, 200, "{free}");
    let m = &free["choices"][0]["message"];
    let reasoning = m["reasoning_content"]
        .as_str()
        .expect("reasoning_content")
        .to_string();
    assert_eq!(m["reasoning"], m["reasoning_content"]);
    assert_eq!(m["content"], "");
    // The same generation through /v1/completions with the rendered prompt: its text is the
    // reasoning (mod the splitter's newline trimming).
    let raw = json!({"model": "think", "prompt": "<|user|>why?<|assistant|><think>\n", "max_tokens": 12, "temperature": 0.0});
    let (_, rawv) = post_json(&app, "/v1/completions", &raw).await;
    let raw_text = rawv["choices"][0]["text"].as_str().unwrap();
    assert_eq!(raw_text.trim_matches(['\n', '\r']), reasoning);

    // Streaming gives the same split.
    let mut sb = think_body(json!({"max_tokens": 12}));
    sb["stream"] = json!(true);
    let (_, text) = send(&app, post("/v1/chat/completions", sb.to_string())).await;
    let mut sr = String::new();
    let mut sc = String::new();
    for e in sse_events(&text) {
        for c in e["choices"].as_array().unwrap() {
            let d = &c["delta"];
            if let Some(t) = d["reasoning_content"].as_str() {
                assert_eq!(d["reasoning"].as_str(), Some(t));
                sr.push_str(t);
            }
            sc.push_str(d["content"].as_str().unwrap_or(""));
        }
    }
    assert_eq!((sr.as_str(), sc.as_str()), (reasoning.as_str(), ""));

    // A cap of 3 thinking tokens: the reasoning is the first 3 tokens' text, then the block
    // is closed and the answer follows as content.
    let (_, capped) = post_json(
        &app,
        "/v1/chat/completions",
        &think_body(json!({"max_tokens": 40, "max_thinking_tokens": 3})),
    )
    .await;
    let raw3 = json!({"model": "think", "prompt": "<|user|>why?<|assistant|><think>\n", "max_tokens": 3, "temperature": 0.0});
    let (_, r3) = post_json(&app, "/v1/completions", &raw3).await;
    let m = &capped["choices"][0]["message"];
    assert_eq!(
        m["reasoning_content"].as_str().unwrap_or(""),
        r3["choices"][0]["text"]
            .as_str()
            .unwrap()
            .trim_matches(['\n', '\r'])
    );
    assert!(!m["content"].as_str().unwrap().is_empty(), "{capped}");
    // reasoning_effort "none": no thinking at all.
    let (_, none) = post_json(
        &app,
        "/v1/chat/completions",
        &think_body(json!({"max_tokens": 5, "reasoning_effort": "none"})),
    )
    .await;
    let m = &none["choices"][0]["message"];
    assert!(m.get("reasoning_content").is_none(), "{none}");
    assert!(!m["content"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_cancels_its_request() {
    let Some(path) = smollm2() else {
        return;
    };
    let st = state_with(&path, ServerConfig::default(), sched(2, 8));
    let app = app(st.clone());
    let body_json = json!({
        "model": "default",
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 2000, "temperature": 0.7, "seed": 3, "stream": true,
    });
    let resp = app
        .clone()
        .oneshot(post("/v1/chat/completions", body_json.to_string()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Read a few chunks, then leave.
    for _ in 0..3 {
        let _ = body.frame().await;
    }
    drop(body);
    let idle = |limit: u64| {
        let st = st.clone();
        async move {
            let t0 = std::time::Instant::now();
            loop {
                let s = st.scheduler.stats();
                if s.running == 0 && s.queued == 0 {
                    assert!(s.generated_tokens < limit, "{s:?}");
                    return;
                }
                assert!(
                    t0.elapsed().as_secs() < 10,
                    "the request kept running: {s:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    idle(500).await;
    // A non-streaming request whose handler future is dropped (the client went away).
    let mut nb = body_json.clone();
    nb["stream"] = json!(false);
    let fut = app
        .clone()
        .oneshot(post("/v1/chat/completions", nb.to_string()));
    let r = tokio::time::timeout(std::time::Duration::from_millis(500), fut).await;
    assert!(r.is_err(), "2000 tokens cannot be done in 0.5 s");
    idle(1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_format_json_schema_is_enforced() {
    let app = app(state(ServerConfig::default()));
    let schema = json!({
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "enum": [1, 2, 3]}},
            "required": ["ok", "n"],
            "additionalProperties": false
        }}
    });
    for stream in [false, true] {
        for seed in 0..3 {
            let body = chat_body(
                "answer in JSON",
                json!({"max_tokens": 120, "temperature": 1.0, "seed": seed, "response_format": schema, "stream": stream}),
            );
            let (s, text) = send(&app, post("/v1/chat/completions", body.to_string())).await;
            assert_eq!(s, 200, "{text}");
            let (content, finish) = if stream {
                let (t, f) = stream_chat_text(&sse_events(&text));
                (t[0].clone(), f[0].clone())
            } else {
                let v: Value = serde_json::from_str(&text).unwrap();
                (
                    v["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    v["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            };
            assert_eq!(finish, "stop", "{content:?}");
            let v: Value = serde_json::from_str(&content)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {content:?}"));
            assert!(v["ok"].is_boolean(), "{v}");
            assert!([1, 2, 3].contains(&v["n"].as_i64().unwrap()), "{v}");
            assert_eq!(v.as_object().unwrap().len(), 2);
        }
    }
    // json_object: any object.
    let body = chat_body(
        "json",
        json!({"max_tokens": 150, "temperature": 0.0, "response_format": {"type": "json_object"}}),
    );
    let (s, v) = post_json(&app, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.trim_start().starts_with('{'), "{content:?}");
    if v["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(content).unwrap().is_object());
    }
    // A schema that cannot be used is a 400 naming response_format.
    let bad = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": 3}}});
    let (s, v) = post_json(
        &app,
        "/v1/chat/completions",
        &chat_body("x", json!({"response_format": bad})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "response_format");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_cache_reports_cached_tokens() {
    let s = SchedulerConfig {
        prefix_cache_tokens: 4096,
        ..sched(2, 8)
    };
    let app = app(state_with(&fixture(), ServerConfig::default(), s));
    let body = chat_body("the same question twice", json!({"max_tokens": 4}));
    let (_, first) = post_json(&app, "/v1/chat/completions", &body).await;
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let (_, second) = post_json(&app, "/v1/chat/completions", &body).await;
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached > 0 && cached < prompt, "{second}");
}

/// The fixture with a Hermes-style template that renders `tools`.
const TOOL_TEMPLATE: &str = "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>{% endif %}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}{# <tool_call> #}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_reach_the_template_unless_tool_choice_is_none() {
    let path = fixture();
    let model = mixture_model::arch::build(mixture_model::load(&path).unwrap()).unwrap();
    let tokenizer = Tokenizer::load(&path).unwrap();
    let served = ServedModel::new(
        "tools".into(),
        model.into(),
        tokenizer,
        ChatTemplate::new(TOOL_TEMPLATE, "", "").unwrap(),
    );
    let app = app(AppState::new(served, sched(2, 8), ServerConfig::default()));
    let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
    let body = |extra: Value| {
        let mut b = json!({"model": "tools", "messages": [{"role": "user", "content": "weather?"}], "max_tokens": 2, "temperature": 0.0});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let tok = Tokenizer::load(&path).unwrap();
    let t = ChatTemplate::new(TOOL_TEMPLATE, "", "").unwrap();
    let msgs = [Message::new("user", "weather?")];
    let with = t
        .render(&msgs, true, Some(json!({"tools": [tool.clone()]})))
        .unwrap();
    let without = t.render(&msgs, true, None).unwrap();
    let count = |s: &str| tok.encode(s, false, true).unwrap().len() as u64;
    let (s, v) = post_json(
        &app,
        "/v1/chat/completions",
        &body(json!({"tools": [tool.clone()]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"].as_u64().unwrap(), count(&with));
    let (_, v) = post_json(
        &app,
        "/v1/chat/completions",
        &body(json!({"tools": [tool.clone()], "tool_choice": "none"})),
    )
    .await;
    assert_eq!(
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        count(&without)
    );
    // A malformed tool is a 400.
    let (s, v) = post_json(
        &app,
        "/v1/chat/completions",
        &body(json!({"tools": [{"type": "function"}]})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "tools[0]");
    // Assistant messages with tool calls and tool results are accepted.
    let convo = json!({"model": "tools", "max_tokens": 2, "tools": [tool], "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}
    ]});
    let (s, v) = post_json(&app, "/v1/chat/completions", &convo).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_when_asked() {
    let preflight = || {
        Request::options("/v1/chat/completions")
            .header("origin", "http://app.test")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .body(Body::empty())
            .unwrap()
    };
    let plain = app(state(ServerConfig::default()));
    let resp = plain.clone().oneshot(preflight()).await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let with = app(state(ServerConfig {
        cors_origin: Some("http://app.test".into()),
        api_key: Some("k".into()),
        ..ServerConfig::default()
    }));
    let resp = with.clone().oneshot(preflight()).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "http://app.test"
    );
    // Another origin gets no grant (the header, if any, names the allowed origin only).
    let req = Request::get("/health")
        .header("origin", "http://evil.test")
        .body(Body::empty())
        .unwrap();
    let resp = with.oneshot(req).await.unwrap();
    let granted = resp.headers().get("access-control-allow-origin");
    assert!(
        granted.is_none_or(|v| v == "http://app.test"),
        "{granted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepseek_fixture_serves_batched_choices() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/deepseek3/model.f32.gguf");
    let app = app(state_with(&path, ServerConfig::default(), sched(4, 16)));
    let body = json!({
        "model": "model.f32",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 20, "temperature": 0.8, "seed": 11, "n": 3,
    });
    let (s, plain) = post_json(&app, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{plain}");
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (_, text) = send(&app, post("/v1/chat/completions", sb.to_string())).await;
    let (streamed, _) = stream_chat_text(&sse_events(&text));
    assert!(streamed[..3].iter().any(|t| !t.is_empty()), "{plain}");
    assert!(
        streamed[0] != streamed[1] || streamed[1] != streamed[2],
        "{plain}"
    );
    for i in 0..3 {
        assert_eq!(
            plain["choices"][i]["message"]["content"].as_str().unwrap(),
            streamed[i],
            "choice {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// The official R1-distill template. (llama.cpp's own R1 template, `llama-cpp-deepseek-r1`,
/// renders `tools | map(attribute='function') | tojson`, which fails here as in Jinja2:
/// `map` gives a generator; such a request gets a 400 naming the template error.)
async fn deepseek_r1_template_pre_opens_thinking() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let t: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("chat_templates/deepseek-r1-distill-llama.json"))
            .unwrap(),
    )
    .unwrap();
    let template = ChatTemplate::new(
        t["template"].as_str().unwrap(),
        t["bos_token"].as_str().unwrap(),
        t["eos_token"].as_str().unwrap(),
    )
    .unwrap();
    let path = fixture();
    let model = mixture_model::arch::build(mixture_model::load(&path).unwrap()).unwrap();
    let served = ServedModel::new(
        "r1".into(),
        model.into(),
        Tokenizer::load(&path).unwrap(),
        template,
    );
    let app = app(AppState::new(served, sched(2, 8), ServerConfig::default()));
    let tool =
        json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
    for tools in [None, Some(json!([tool]))] {
        let mut body = json!({"model": "r1", "messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 8, "temperature": 0.0});
        if let Some(t) = tools {
            body["tools"] = t;
        }
        let (s, v) = post_json(&app, "/v1/chat/completions", &body).await;
        assert_eq!(s, 200, "{v}");
        let m = &v["choices"][0]["message"];
        // The prompt ends inside <think>, and the random model never closes it.
        assert!(
            m["reasoning_content"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{v}"
        );
        assert_eq!(m["content"], "", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_forever_on_a_stalled_client() {
    use tokio::io::AsyncWriteExt;
    let st = state(ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mixture_server::serve(listener, st, async move {
        let _ = stop_rx.await;
    }));
    // Headers promising a body that never comes: the connection is busy, not idle.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let t0 = std::time::Instant::now();
    let _ = stop_tx.send(());
    let done = tokio::time::timeout(mixture_server::SHUTDOWN_GRACE * 2, server).await;
    assert!(done.is_ok(), "serve hung on a stalled client");
    assert!(t0.elapsed() <= mixture_server::SHUTDOWN_GRACE + std::time::Duration::from_secs(2));
    drop(conn);
}
