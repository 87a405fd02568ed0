//! `mixture serve`: an OpenAI-compatible HTTP server (axum) over the engine's batching
//! scheduler.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (both streaming as SSE
//! with `data: [DONE]`, or not), `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`,
//! `GET /metrics` (Prometheus text).
//!
//! Choices made where OpenAI leaves room:
//! - The model id is the file stem of the served file (or the directory name); requests may
//!   also say `"default"`. Any other name is a 404 `model_not_found`. `model` is required.
//! - Sampling defaults come from the model's generation config when it has one (see
//!   [`SamplingDefaults`]), else OpenAI's: temperature 1, top_p 1. Without `seed`, a random
//!   one is drawn; with `n > 1` choice `i` uses `seed + i`.
//! - `max_tokens` (or `max_completion_tokens`) is capped to what the context leaves after the
//!   prompt; absent, chat generates until the end of the turn or the context, and completions
//!   generate 16 tokens (OpenAI's default). A prompt that fills the context is a 400
//!   `context_length_exceeded`.
//! - Thinking cap: `max_thinking_tokens: N` (mixture's own field) or `reasoning_effort`
//!   (`none`/`minimal` = 0, `low` = 1024, `medium` = 4096, `high` = no cap). When the cap
//!   is reached the think block is closed (`"</think>\n\n"` fed to the model) and the answer
//!   follows. A cap of 0 also passes `enable_thinking: false` to templates that know it.
//!   `chat_template_kwargs` passes other template variables.
//! - Stop strings are matched on the generated text (thinking included), across token
//!   boundaries; the stop string is not returned.
//! - With `tools` (and `tool_choice` other than `"none"`, which leaves them out of the
//!   prompt), calls are parsed from the answer in the format the template uses (DeepSeek-V3/R1,
//!   Hermes/Qwen; `mixture_engine::toolcalls`) into `tool_calls` with ids `call_<n>` and
//!   `finish_reason: "tool_calls"`; a call cut by `max_tokens` gives `"length"` and is not
//!   reported. Streams send content up to where a call may begin and the rest, with the calls,
//!   when the choice ends. `tool_choice` is checked ("none", "auto", "required" with tools, or a function among
//!   `tools`; else 400), but "required" or a named function is not enforced on the output.
//! - `response_format` `json_object` / `json_schema` constrain decoding from the first token
//!   (`mixture_engine::constrain`), so a thinking model does not think first.
//! - Completions: `prompt` may be a string, a list of strings, token ids or lists of ids
//!   (prompts x `n` at most 16); `echo` and legacy `logprobs` (0..=5) are supported,
//!   `suffix` is ignored, `best_of` must equal `n`.
//! - `/health` needs no API key; every other route does when one is set.

pub mod chat;
pub mod completions;
pub mod error;
pub mod format;
pub mod generate;
pub mod metrics;
pub mod model;
pub mod request;
pub mod run;
pub mod sched;
pub mod text;
pub mod tools;

use crate::error::ApiError;
use crate::metrics::{Gauges, Metrics};
use crate::model::ServedModel;
use crate::sched::{Scheduler, SchedulerConfig};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Instant;

/// `system_fingerprint` in responses.
pub const FINGERPRINT: &str = concat!("mixture-", env!("CARGO_PKG_VERSION"));

/// Default request body limit: 4 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;

/// Sampling values used when a request leaves them out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingDefaults {
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = no limit.
    pub top_k: usize,
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        SamplingDefaults {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Required as `Authorization: Bearer KEY` on every route but `/health`.
    pub api_key: Option<String>,
    /// Allowed CORS origin (`*` for any); `None`: no CORS headers.
    pub cors_origin: Option<String>,
    pub body_limit: usize,
    /// Per-sequence token limit; 0 = the model's context length.
    pub context: usize,
    pub defaults: SamplingDefaults,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            cors_origin: None,
            body_limit: DEFAULT_BODY_LIMIT,
            context: 0,
            defaults: SamplingDefaults::default(),
        }
    }
}

pub struct Inner {
    pub model: ServedModel,
    pub scheduler: Scheduler,
    pub metrics: Metrics,
    pub config: ServerConfig,
    pub tool_format: tools::Format,
    token_bytes: std::sync::OnceLock<Result<Arc<mixture_engine::constrain::TokenBytes>, String>>,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Start the scheduler over `model`.
    pub fn new(model: ServedModel, sched: SchedulerConfig, config: ServerConfig) -> AppState {
        let sched = SchedulerConfig {
            context: config.context,
            ..sched
        };
        let scheduler = Scheduler::start(model.model.clone(), sched);
        let tool_format = tools::Format::detect(model.template.source());
        AppState(Arc::new(Inner {
            model,
            scheduler,
            metrics: Metrics::default(),
            config,
            tool_format,
            token_bytes: std::sync::OnceLock::new(),
        }))
    }

    /// The context a sequence may fill (prompt + generated).
    pub fn context(&self) -> usize {
        match (self.config.context, self.model.context_length) {
            (0, 0) => usize::MAX,
            (0, n) => n,
            (c, 0) => c,
            (c, n) => c.min(n),
        }
    }

    /// `model` must name the served model.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            None => Err(ApiError::param(
                "model",
                "you must provide a `model` parameter",
            )),
            Some(m) if self.model.answers_to(m) => Ok(()),
            Some(m) => Err(ApiError::model_not_found(m, &self.model.id)),
        }
    }

    /// Tokens a choice may generate after a prompt of `prompt_len`.
    pub fn max_tokens(
        &self,
        prompt_len: usize,
        requested: Option<usize>,
    ) -> Result<usize, ApiError> {
        let ctx = self.context();
        if prompt_len >= ctx {
            return Err(ApiError::invalid(format!(
                "This model's maximum context length is {ctx} tokens; your prompt has {prompt_len} tokens, leaving no room to generate."
            ))
            .with_param("messages")
            .with_code("context_length_exceeded"));
        }
        let room = ctx - prompt_len;
        Ok(requested.map_or(room, |r| r.min(room)))
    }

    /// Stop accepting work and cancel what runs (for shutdown).
    pub fn shutdown(&self) {
        self.scheduler.shutdown();
    }
}

async fn models(State(state): State<AppState>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [model_json(&state)],
    }))
    .into_response()
}

fn model_json(state: &AppState) -> serde_json::Value {
    json!({
        "id": state.model.id,
        "object": "model",
        "created": state.model.created,
        "owned_by": "mixture",
        "context_length": state.context(),
    })
}

async fn model_one(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if state.model.answers_to(&id) {
        axum::Json(model_json(&state)).into_response()
    } else {
        ApiError::model_not_found(&id, &state.model.id).into_response()
    }
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let s = state.scheduler.stats();
    let body = state.metrics.render(Gauges {
        queued: s.queued,
        running: s.running,
        steps: s.steps,
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}

/// Constant-time comparison of the presented key.
fn key_matches(given: &[u8], want: &[u8]) -> bool {
    if given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/health" || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if key_matches(g.as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("Incorrect API key provided").into_response(),
        None => ApiError::unauthorized(
            "You didn't provide an API key; send it as `Authorization: Bearer KEY`",
        )
        .into_response(),
    }
}

/// One log line and one metrics count per request; turns axum's plain-text rejections
/// (body too large) into OpenAI-shaped errors.
async fn log_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A client that leaves before the response drops this future at the await below; the
    // guard still logs the request and counts it with nginx's status 499.
    let mut left = ClientLeft {
        state: Some(state.clone()),
        method: method.clone(),
        path: path.clone(),
        start,
    };
    let mut resp = next.run(req).await;
    left.state = None;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
        && resp.headers().get(axum::http::header::CONTENT_TYPE)
            != Some(&HeaderValue::from_static("application/json"))
    {
        resp = ApiError::too_large(state.config.body_limit).into_response();
    }
    let status = resp.status().as_u16();
    state.metrics.request(endpoint_of(&path), status);
    let streaming = resp.headers().get(axum::http::header::CONTENT_TYPE)
        == Some(&HeaderValue::from_static("text/event-stream"));
    if !streaming {
        tracing::info!(
            target: "mixture::serve",
            "{method} {path} {status} {:.1}ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    resp
}

/// The metrics label of a request path.
fn endpoint_of(path: &str) -> &str {
    match path {
        "/v1/chat/completions" | "/v1/completions" | "/v1/models" | "/health" | "/metrics" => path,
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

/// Logs and counts a request whose client left before its response (see [`log_requests`]).
struct ClientLeft {
    /// `None` once the response exists.
    state: Option<AppState>,
    method: axum::http::Method,
    path: String,
    start: Instant,
}

impl Drop for ClientLeft {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.metrics.request(endpoint_of(&self.path), 499);
            tracing::info!(
                target: "mixture::serve",
                "{} {} 499 {:.1}ms, client left before the response",
                self.method,
                self.path,
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// The application: routes, auth, body limit, CORS (only with `cors_origin`), logging.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/v1/chat/completions", post(chat::handler))
        .route("/v1/completions", post(completions::handler))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model_one))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    if let Some(origin) = state.config.cors_origin.as_deref() {
        use tower_http::cors::{AllowOrigin, Any, CorsLayer};
        let allow = if origin == "*" {
            AllowOrigin::any()
        } else {
            match HeaderValue::from_str(origin) {
                Ok(v) => AllowOrigin::exact(v),
                Err(_) => AllowOrigin::list([]),
            }
        };
        router = router.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers(Any),
        );
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), log_requests))
        .with_state(state)
}

/// How long open connections get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve on `listener` until `shutdown` resolves; then cancel everything in flight, let
/// the open responses end (at most [`SHUTDOWN_GRACE`]), and stop the scheduler.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(state.clone());
    let fired = Arc::new(tokio::sync::Notify::new());
    let stopper = state.clone();
    let notify = fired.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!(target: "mixture::serve", "shutting down");
        notify.notify_one();
        // Cancelling every request ends the open streams, so the graceful shutdown does not
        // wait on them. The scheduler joins its worker on a blocking thread.
        let _ = tokio::task::spawn_blocking(move || stopper.shutdown()).await;
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    let deadline = async move {
        fired.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        _ = deadline => {
            tracing::warn!(target: "mixture::serve", "connections still open after {SHUTDOWN_GRACE:?}; closing them");
            Ok(())
        }
    }
}
