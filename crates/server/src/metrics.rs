//! Counters and histograms for `GET /metrics`, in Prometheus' text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const TPS_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    prompt_tokens: u64,
    cached_tokens: u64,
    generated_tokens: u64,
    ttft: Histogram,
    tps: Histogram,
}

/// The server's metrics; cheap to update from handlers.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                prompt_tokens: 0,
                cached_tokens: 0,
                generated_tokens: 0,
                ttft: Histogram::new(TTFT_BUCKETS),
                tps: Histogram::new(TPS_BUCKETS),
            }),
        }
    }
}

/// Live gauges read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub queued: usize,
    pub running: usize,
    /// Batched forward passes the scheduler ran.
    pub steps: u64,
}

impl Metrics {
    pub fn request(&self, endpoint: &str, status: u16) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests
                .entry((endpoint.to_string(), status))
                .or_insert(0) += 1;
        }
    }

    /// One finished choice: its token counts, time to first token and decode rate.
    pub fn generation(
        &self,
        prompt: usize,
        cached: usize,
        generated: usize,
        ttft_s: Option<f64>,
        tokens_per_s: Option<f64>,
    ) {
        if let Ok(mut m) = self.inner.lock() {
            m.prompt_tokens += prompt as u64;
            m.cached_tokens += cached as u64;
            m.generated_tokens += generated as u64;
            if let Some(t) = ttft_s {
                m.ttft.observe(t);
            }
            if let Some(t) = tokens_per_s {
                m.tps.observe(t);
            }
        }
    }

    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else {
            return out;
        };
        out.push_str("# HELP mixture_requests_total HTTP requests by endpoint and status.\n# TYPE mixture_requests_total counter\n");
        for ((ep, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "mixture_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                ep.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        let counters = [
            (
                "mixture_prompt_tokens_total",
                "Prompt tokens of finished requests.",
                m.prompt_tokens,
            ),
            (
                "mixture_prompt_tokens_cached_total",
                "Prompt tokens served from the prefix cache.",
                m.cached_tokens,
            ),
            (
                "mixture_generated_tokens_total",
                "Tokens generated.",
                m.generated_tokens,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges = [
            (
                "mixture_queue_depth",
                "Requests waiting for a slot.",
                g.queued,
            ),
            (
                "mixture_running_sequences",
                "Sequences in the running batch.",
                g.running,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP mixture_batch_steps_total Batched forward passes run.\n# TYPE mixture_batch_steps_total counter\nmixture_batch_steps_total {}",
            g.steps
        );
        m.ttft.render(
            &mut out,
            "mixture_time_to_first_token_seconds",
            "Time from request to first generated token.",
        );
        m.tps.render(
            &mut out,
            "mixture_generation_tokens_per_second",
            "Decode rate of each finished choice (tokens after the first / time since it).",
        );
        out
    }
}
