//! Aggregate generation speed of the batching scheduler: `n` concurrent greedy requests of
//! `tokens` tokens each (no stop ids, so each runs to its length) against one alone.
//!
//! cargo run --release -p mixture-engine --example batch_throughput -- MODEL.gguf [n=8] [tokens=128] [prompt=32]

use mixture_engine::scheduler::{Control, Event, GenRequest, Scheduler, SchedulerConfig};
use mixture_engine::SamplingParams;
use mixture_model::arch::{self, Architecture};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Instant;

/// Runs `n` requests at once; returns (seconds to the last one's end, mean seconds to
/// first token, tokens generated).
fn run(model: &Arc<dyn Architecture>, n: usize, tokens: usize, prompt: usize) -> (f64, f64, usize) {
    let sched = Scheduler::start(
        model.clone(),
        SchedulerConfig {
            parallel: n,
            queue: n,
            prefix_cache_tokens: 0,
            ..Default::default()
        },
    );
    let vocab = model.spec().hparams.vocab_size as u64;
    let start = Instant::now();
    let (tx, rx) = channel();
    for r in 0..n as u64 {
        // Distinct prompts: no two sequences alike.
        let ids: Vec<u32> = (0..prompt as u64)
            .map(|i| ((i * 7919 + r * 104_729 + 13) % vocab) as u32)
            .collect();
        let tx = tx.clone();
        let mut first = true;
        let req = GenRequest {
            prompt: ids,
            max_tokens: tokens,
            sampling: SamplingParams::default(),
            ..Default::default()
        };
        sched
            .submit(
                req,
                Box::new(move |e| {
                    let msg = match e {
                        Event::Token { .. } if first => {
                            first = false;
                            Some((r, start.elapsed().as_secs_f64(), 0))
                        }
                        Event::Token { .. } => None,
                        Event::Done {
                            completion_tokens, ..
                        } => Some((r, start.elapsed().as_secs_f64(), completion_tokens)),
                        Event::Error(e) => panic!("request {r}: {e}"),
                    };
                    if let Some(m) = msg {
                        let _ = tx.send(m);
                    }
                    Control::Continue
                }),
            )
            .expect("submit");
    }
    drop(tx);
    let (mut ttft, mut end, mut total) = (0.0, 0f64, 0);
    for (_, t, done) in rx {
        if done > 0 {
            end = end.max(t);
            total += done;
        } else {
            ttft += t;
        }
    }
    (end, ttft / n as f64, total)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: batch_throughput MODEL.gguf [n] [tokens] [prompt]");
    let n: usize = args.get(2).map_or(8, |s| s.parse().expect("n"));
    let tokens: usize = args.get(3).map_or(128, |s| s.parse().expect("tokens"));
    let prompt: usize = args.get(4).map_or(32, |s| s.parse().expect("prompt"));
    let model: Arc<dyn Architecture> = Arc::from(
        arch::build(mixture_model::load(std::path::Path::new(path)).expect("load")).expect("build"),
    );
    println!("cores {}", cores());
    run(&model, 1, 8, prompt); // warm the page cache
    let (t1, f1, g1) = run(&model, 1, tokens, prompt);
    let (tn, fn_, gn) = run(&model, n, tokens, prompt);
    let (r1, rn) = (g1 as f64 / t1, gn as f64 / tn);
    println!(
        "1 request : {g1} tokens in {t1:.2} s = {r1:.1} tok/s (first token {:.0} ms)",
        f1 * 1e3
    );
    println!("{n} requests: {gn} tokens in {tn:.2} s = {rn:.1} tok/s aggregate (mean first token {:.0} ms)", fn_ * 1e3);
    println!("ratio {:.2}x", rn / r1);
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
