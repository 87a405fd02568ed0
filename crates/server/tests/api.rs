//! The HTTP API in process: errors, auth, routes, metrics, limits, shutdown (tower `oneshot`), against the tiny llama fixture
//! (tests/fixtures/llama, random weights, vocab 288, context 256, no chat template: ChatML
//! fallback) and, when present, SmolLM2-135M-Instruct.
//!
//! The expectations are properties and independent references (the tokenizer and template
//! used directly, a request without stop strings, the same request with another seed), not
//! recorded outputs.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use http_body_util::BodyExt;
use mixture_server::{app, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

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
            "/v1/chat/completions",
            chat_body(
                "hi",
                json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                       "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            )
            .to_string(),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"tool_choice": "required"})).to_string(),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            chat_body("hi", json!({"tool_choice": "sometimes"})).to_string(),
            400,
            Some("tool_choice"),
        ),
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

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .and_then(|r| r.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The `/metrics` page.
async fn metrics_text(app: &axum::Router) -> String {
    let (s, t) = send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move() {
    let app = app(state(ServerConfig::default()));
    let before = metrics_text(&app).await;
    let (_, v) = post_json(
        &app,
        "/v1/chat/completions",
        &chat_body("hi", json!({"max_tokens": 4})),
    )
    .await;
    let _ = post_json(&app, "/v1/chat/completions", &json!({"model": MODEL})).await;
    let after = metrics_text(&app).await;
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

/// `serve` on a free loopback port with the default config: its address, the trigger that
/// shuts it down, and its task.
async fn serve_on_loopback() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let st = state(ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mixture_server::serve(listener, st, async move {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shuts_down_cleanly_with_a_stream_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, stop_tx, server) = serve_on_loopback().await;
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
async fn a_dropped_stream_cancels_its_request() {
    let Some(path) = smollm2() else {
        return;
    };
    let st = state_with(&path, ServerConfig::default(), sched(2, 8));
    let app = app(st.clone());
    let gen = "mixture_generated_tokens_total";
    let before = metric(&metrics_text(&app).await, gen);
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
    // The tokens it streamed before the client left are counted.
    let after = metric(&metrics_text(&app).await, gen);
    assert!(after > before, "generated tokens {before} -> {after}");
    // A non-streaming request whose handler future is dropped (the client went away).
    let mut nb = body_json.clone();
    nb["stream"] = json!(false);
    let fut = app
        .clone()
        .oneshot(post("/v1/chat/completions", nb.to_string()));
    let r = tokio::time::timeout(std::time::Duration::from_millis(500), fut).await;
    assert!(r.is_err(), "2000 tokens cannot be done in 0.5 s");
    idle(1000).await;
    // It is logged and counted with status 499 (client closed the request).
    let left = "mixture_requests_total{endpoint=\"/v1/chat/completions\",status=\"499\"}";
    assert_eq!(metric(&metrics_text(&app).await, left), 1.0);
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
async fn shutdown_does_not_wait_forever_on_a_stalled_client() {
    use tokio::io::AsyncWriteExt;
    let (addr, stop_tx, server) = serve_on_loopback().await;
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
