//! `mixture serve`: the OpenAI-compatible HTTP server (crates/server) over one model.

use crate::ModelArg;
use anyhow::{Context, Result};
use clap::Args;
use mixture_server::model::ServedModel;
use mixture_server::sched::SchedulerConfig;
use mixture_server::{AppState, SamplingDefaults, ServerConfig};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Address to bind. The default accepts local connections only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind; 0 picks a free one (printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "MIXTURE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Most sequences generated together in one batch.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Token limit per sequence (prompt + answer); 0 = the model's context length.
    #[arg(long, default_value_t = 0)]
    pub context: usize,
    /// Most requests waiting for a slot; more are answered 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Allow cross-origin requests from ORIGIN (`*` for any). Default: no CORS headers.
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = mixture_server::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    if a.parallel == 0 || a.queue == 0 {
        anyhow::bail!("--parallel and --queue must be at least 1");
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let path = a.model.path()?;
    let suggested = crate::defaults::ModelSampling::read(&path);
    let openai = SamplingDefaults::default();
    let defaults = SamplingDefaults {
        temperature: suggested.temperature.unwrap_or(openai.temperature),
        top_p: suggested.top_p.unwrap_or(openai.top_p),
        top_k: suggested.top_k.unwrap_or(openai.top_k),
    };
    eprintln!("loading {}", path.display());
    let model = ServedModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let config = ServerConfig {
        api_key: a.api_key.filter(|k| !k.is_empty()),
        cors_origin: a.cors_origin,
        body_limit: a.body_limit,
        context: a.context,
        defaults,
    };
    let sched = SchedulerConfig {
        parallel: a.parallel,
        queue: a.queue,
        context: a.context,
        ..SchedulerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("binding {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        let state = AppState::new(model, sched, config);
        eprintln!("serving {} (id `{}`)", path.display(), state.model.id);
        eprintln!("listening on http://{addr}");
        mixture_server::serve(listener, state, shutdown_signal())
            .await
            .context("serving")
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    eprintln!("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
