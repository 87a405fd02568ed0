//! Load generator for a running `mixture serve` on this machine: N concurrent streaming
//! chat clients for a bounded time, then a report of throughput, time to first token
//! (p50/p99), failures and the server's memory (with `--pid`).
//!
//!     cargo run --release -p mixture-server --example load -- --addr 127.0.0.1:8080 \
//!         --clients 8 --seconds 60 --max-tokens 64 [--pid PID] [--api-key KEY]
//!
//! `--model PATH [--parallel N]` instead of `--addr` starts a server in this process on a
//! free loopback port first (no `mixture` binary needed).
//!
//! Only loopback addresses are accepted. Plain HTTP/1.1 over TCP, one connection per request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    addr: SocketAddr,
    clients: usize,
    seconds: u64,
    max_tokens: usize,
    pid: Option<u32>,
    api_key: Option<String>,
    model: String,
    model_path: Option<std::path::PathBuf>,
    parallel: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        clients: 8,
        seconds: 30,
        max_tokens: 64,
        pid: None,
        api_key: std::env::var("MIXTURE_API_KEY").ok(),
        model: "default".into(),
        model_path: None,
        parallel: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k} {v}: {e}");
        match k.as_str() {
            "--addr" => a.addr = v.parse().map_err(|e| bad(&e))?,
            "--clients" => a.clients = v.parse().map_err(|e| bad(&e))?,
            "--seconds" => a.seconds = v.parse().map_err(|e| bad(&e))?,
            "--max-tokens" => a.max_tokens = v.parse().map_err(|e| bad(&e))?,
            "--pid" => a.pid = Some(v.parse().map_err(|e| bad(&e))?),
            "--api-key" => a.api_key = Some(v),
            "--model-id" => a.model = v,
            "--model" => a.model_path = Some(v.into()),
            "--parallel" => a.parallel = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("only loopback addresses are allowed".into());
    }
    if a.seconds > 600 || a.clients > 256 {
        return Err("at most 600 seconds and 256 clients".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Outcome {
    ok: bool,
    ttft: Option<Duration>,
    completion_tokens: usize,
}

/// Decodes `Transfer-Encoding: chunked` incrementally.
#[derive(Default)]
struct Chunked {
    raw: Vec<u8>,
    body: Vec<u8>,
}

impl Chunked {
    fn feed(&mut self, data: &[u8]) {
        self.raw.extend_from_slice(data);
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..eol]).to_string();
            let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                return;
            };
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }
}

async fn one_request(a: &Args, seed: u64) -> Outcome {
    let mut out = Outcome::default();
    let body = serde_json::json!({
        "model": a.model,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
        "max_tokens": a.max_tokens,
        "temperature": 0.8,
        "seed": seed,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
    .to_string();
    let auth = a
        .api_key
        .as_ref()
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        a.addr,
        body.len()
    );
    let start = Instant::now();
    let Ok(mut conn) = tokio::net::TcpStream::connect(a.addr).await else {
        return out;
    };
    if conn.write_all(req.as_bytes()).await.is_err() {
        return out;
    }
    let mut head = Vec::new();
    let mut chunked = Chunked::default();
    let mut header_done = false;
    let mut buf = vec![0u8; 16 << 10];
    let mut scanned = 0;
    let mut done = false;
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        if !header_done {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !head.starts_with(b"HTTP/1.1 200") {
                return out;
            }
            header_done = true;
            let rest = head.split_off(end + 4);
            chunked.feed(&rest);
            data = &[];
        }
        chunked.feed(data);
        // Scan whole lines of the body.
        while let Some(nl) = chunked.body[scanned..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&chunked.body[scanned..scanned + nl]).to_string();
            scanned += nl + 1;
            let Some(payload) = line.strip_prefix("data: ") else {
                continue;
            };
            if payload == "[DONE]" {
                done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
                continue;
            };
            if v.get("error").is_some() {
                return out;
            }
            let has_text = v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
                || v["choices"][0]["delta"]["reasoning_content"].is_string();
            if has_text && out.ttft.is_none() {
                out.ttft = Some(start.elapsed());
            }
            if let Some(t) = v["usage"]["completion_tokens"].as_u64() {
                out.completion_tokens = t as usize;
            }
        }
    }
    out.ok = done;
    out
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Some(path) = a.model_path.clone() {
        let model = match mixture_server::model::ServedModel::load(&path) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: loading {}: {e}", path.display());
                std::process::exit(1);
            }
        };
        let sched = mixture_server::sched::SchedulerConfig {
            parallel: a.parallel,
            queue: 256,
            ..Default::default()
        };
        let state = mixture_server::AppState::new(model, sched, Default::default());
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: binding: {e}");
                std::process::exit(1);
            }
        };
        if let Ok(addr) = listener.local_addr() {
            a.addr = addr;
        }
        a.pid = Some(std::process::id());
        tokio::spawn(mixture_server::serve(
            listener,
            state,
            std::future::pending(),
        ));
    }
    let a = std::sync::Arc::new(a);
    let rss_start = a.pid.and_then(rss_kib);
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut seed = c as u64 * 1_000_000;
            while Instant::now() < deadline {
                results.push(one_request(&a, seed).await);
                seed += 1;
            }
            results
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            all.extend(r);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let ok = all.iter().filter(|o| o.ok).count();
    let failed = all.len() - ok;
    let tokens: usize = all.iter().map(|o| o.completion_tokens).sum();
    let mut ttft: Vec<Duration> = all.iter().filter_map(|o| o.ttft).collect();
    ttft.sort();
    let report = serde_json::json!({
        "clients": a.clients,
        "seconds": wall,
        "requests_ok": ok,
        "requests_failed": failed,
        "completion_tokens": tokens,
        "tokens_per_second": tokens as f64 / wall,
        "ttft_p50_s": percentile(&ttft, 0.5),
        "ttft_p99_s": percentile(&ttft, 0.99),
        "server_rss_kib_start": rss_start,
        "server_rss_kib_end": a.pid.and_then(rss_kib),
    });
    println!("{report}");
}
