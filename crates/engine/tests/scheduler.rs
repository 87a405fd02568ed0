//! The batching scheduler on tiny f32 fixture models: requests give the tokens they give
//! alone (`Session::generate` is the reference; for greedy, also transformers' greedy ids),
//! whatever else runs beside them; limits, cancellation, the prefix cache, forced tokens and
//! shutdown.

use mixture_engine::scheduler::{
    Control, Event, GenRequest, Scheduler, SchedulerConfig, Sink, StopReason, SubmitError,
};
use mixture_engine::{Sampler, SamplingParams, Session};
use mixture_model::arch::{self, Architecture};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn model(name: &str) -> Arc<dyn Architecture> {
    let path = fixture_dir(name).join("model.f32.gguf");
    Arc::from(arch::build(mixture_model::load(&path).expect("load")).expect("build"))
}

fn reference_ids(name: &str, key: &str) -> Vec<u32> {
    let text = std::fs::read_to_string(fixture_dir(name).join("reference.json")).expect("read");
    let v: Value = serde_json::from_str(&text).expect("json");
    v[key]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn config(parallel: usize) -> SchedulerConfig {
    SchedulerConfig {
        parallel,
        queue: 16,
        context: 0,
        prefix_cache_tokens: 0,
        prefill_chunk: 512,
    }
}

/// Token ids spread over the vocabulary.
fn prompt(m: &dyn Architecture, n: usize, salt: u64) -> Vec<u32> {
    let vocab = m.spec().hparams.vocab_size as u64;
    (0..n as u64)
        .map(|i| ((i * 7919 + salt * 104_729 + 13) % vocab) as u32)
        .collect()
}

fn sampling(temperature: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k: 40,
        top_p: 0.95,
        seed,
        ..Default::default()
    }
}

fn request(prompt: Vec<u32>, max_tokens: usize, sampling: SamplingParams) -> GenRequest {
    GenRequest {
        prompt,
        max_tokens,
        sampling,
        ..Default::default()
    }
}

/// A sink that forwards every event to a channel.
fn to_channel() -> (Sink, Receiver<Event>) {
    let (tx, rx) = channel();
    let sink: Sink = Box::new(move |e| match tx.send(e) {
        Ok(()) => Control::Continue,
        Err(_) => Control::Stop,
    });
    (sink, rx)
}

/// A request's tokens and its last event.
fn collect(rx: &Receiver<Event>) -> (Vec<u32>, Event) {
    let mut ids = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).expect("an event") {
            Event::Token { id, .. } => ids.push(id),
            last => return (ids, last),
        }
    }
}

/// What `Session::generate` gives for the request alone.
fn alone(m: &dyn Architecture, prompt: &[u32], max: usize, p: &SamplingParams) -> Vec<u32> {
    let mut s = Session::new(m);
    let mut sampler = Sampler::new(p.clone());
    s.generate(prompt, max, &mut sampler, &[], |_| true)
        .expect("generate")
        .0
}

#[test]
fn greedy_matches_session_and_transformers() {
    let m = model("llama");
    let (p, want) = (
        reference_ids("llama", "greedy_prompt"),
        reference_ids("llama", "greedy_ids"),
    );
    assert_eq!(
        alone(m.as_ref(), &p, want.len(), &SamplingParams::default()),
        want
    );
    // With three others of different lengths, their prompts chunked 5 tokens per step.
    let mut cfg = config(4);
    cfg.prefill_chunk = 5;
    let sched = Scheduler::start(m.clone(), cfg);
    let others: Vec<Vec<u32>> = (0..3)
        .map(|i| prompt(m.as_ref(), 7 + 6 * i, i as u64))
        .collect();
    let mut rxs = Vec::new();
    for o in &others {
        let (sink, rx) = to_channel();
        sched
            .submit(request(o.clone(), 10, SamplingParams::default()), sink)
            .expect("submit");
        rxs.push(rx);
    }
    let (sink, rx) = to_channel();
    sched
        .submit(
            request(p.clone(), want.len(), SamplingParams::default()),
            sink,
        )
        .expect("submit");
    let (got, last) = collect(&rx);
    assert_eq!(got, want);
    assert!(matches!(
        last,
        Event::Done { reason: StopReason::Length, prompt_tokens, completion_tokens, .. }
            if prompt_tokens == p.len() && completion_tokens == want.len()
    ));
    for (o, rx) in others.iter().zip(&rxs) {
        assert_eq!(
            collect(rx).0,
            alone(m.as_ref(), o, 10, &SamplingParams::default())
        );
    }
    let st = sched.stats();
    assert_eq!((st.requests, st.queued, st.running), (4, 0, 0));
    assert_eq!(st.generated_tokens, 30 + want.len() as u64);
}

#[test]
fn seeded_request_alone_or_in_a_batch_of_five() {
    for name in ["llama", "deepseek2"] {
        let m = model(name);
        let p = prompt(m.as_ref(), 9, 100);
        let params = sampling(0.9, 1234);
        let want = alone(m.as_ref(), &p, 16, &params);
        // Alone through the scheduler.
        let sched = Scheduler::start(m.clone(), config(1));
        let (sink, rx) = to_channel();
        sched
            .submit(request(p.clone(), 16, params.clone()), sink)
            .expect("submit");
        assert_eq!(collect(&rx).0, want, "{name}: alone");
        // Among four others with their own seeds and lengths.
        let sched = Scheduler::start(m.clone(), config(5));
        let mut rxs = Vec::new();
        for i in 0..4u64 {
            let (sink, rx) = to_channel();
            let o = prompt(m.as_ref(), 3 + 5 * i as usize, i);
            let r = request(o.clone(), 8 + 4 * i as usize, sampling(1.0, i));
            sched.submit(r, sink).expect("submit");
            rxs.push((rx, o, 8 + 4 * i as usize, sampling(1.0, i)));
        }
        let (sink, rx) = to_channel();
        sched
            .submit(request(p.clone(), 16, params.clone()), sink)
            .expect("submit");
        assert_eq!(collect(&rx).0, want, "{name}: in a batch");
        for (rx, o, max, sp) in rxs {
            assert_eq!(
                collect(&rx).0,
                alone(m.as_ref(), &o, max, &sp),
                "{name}: others"
            );
        }
    }
}

/// A sink that reports its first event, then waits for a go before answering.
fn gated() -> (Sink, Receiver<Event>, Receiver<()>, Sender<()>) {
    let (tx, rx) = channel();
    let (started_tx, started_rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let mut first = true;
    let sink: Sink = Box::new(move |e| {
        if first {
            first = false;
            let _ = started_tx.send(());
            let _ = go_rx.recv();
        }
        match tx.send(e) {
            Ok(()) => Control::Continue,
            Err(_) => Control::Stop,
        }
    });
    (sink, rx, started_rx, go_tx)
}

#[test]
fn queue_full_and_invalid_requests() {
    let m = model("llama");
    let mut cfg = config(1);
    cfg.queue = 1;
    let sched = Scheduler::start(m.clone(), cfg);
    let (sink, rx, started, go) = gated();
    sched
        .submit(
            request(prompt(m.as_ref(), 4, 1), 5, SamplingParams::default()),
            sink,
        )
        .expect("first");
    started.recv().expect("the first runs"); // it holds the only place
    let (sink2, rx2) = to_channel();
    sched
        .submit(
            request(prompt(m.as_ref(), 4, 2), 5, SamplingParams::default()),
            sink2,
        )
        .expect("second waits");
    let (sink3, _rx3) = to_channel();
    let third = sched.submit(
        request(prompt(m.as_ref(), 4, 3), 5, SamplingParams::default()),
        sink3,
    );
    assert!(matches!(third, Err(SubmitError::QueueFull)));
    assert_eq!(sched.stats().queued, 1);
    go.send(()).expect("go");
    assert_eq!(collect(&rx).0.len(), 5);
    assert_eq!(collect(&rx2).0.len(), 5);
    // Bad requests.
    let vocab = m.spec().hparams.vocab_size as u32;
    let ctx = sched.context();
    for (bad, why) in [
        (request(vec![], 5, SamplingParams::default()), "empty"),
        (
            request(vec![1, vocab], 5, SamplingParams::default()),
            "vocab",
        ),
        (request(vec![1], 0, SamplingParams::default()), "max_tokens"),
        (
            request(vec![1; ctx + 1], 5, SamplingParams::default()),
            "context",
        ),
    ] {
        let (sink, _rx) = to_channel();
        assert!(
            matches!(sched.submit(bad, sink), Err(SubmitError::Invalid(_))),
            "{why}"
        );
    }
}

#[test]
fn context_limit_stops_generation() {
    let m = model("llama");
    let mut cfg = config(2);
    cfg.context = 12;
    let sched = Scheduler::start(m.clone(), cfg);
    let (sink, rx) = to_channel();
    sched
        .submit(
            request(prompt(m.as_ref(), 8, 1), 100, SamplingParams::default()),
            sink,
        )
        .expect("submit");
    let (ids, last) = collect(&rx);
    // Positions 0..12 hold the prompt and 4 completion tokens; a 5th is sampled from the last.
    assert_eq!(ids.len(), 5);
    assert!(matches!(
        last,
        Event::Done {
            reason: StopReason::Context,
            ..
        }
    ));
}

#[test]
fn cancel_frees_the_place() {
    let m = model("llama");
    let sched = Scheduler::start(m.clone(), config(1));
    let (sink, rx, started, go) = gated();
    let long = sched
        .submit(
            request(prompt(m.as_ref(), 4, 1), 1000, SamplingParams::default()),
            sink,
        )
        .expect("long");
    started.recv().expect("runs");
    let (sink2, rx2) = to_channel();
    sched
        .submit(
            request(prompt(m.as_ref(), 4, 2), 3, SamplingParams::default()),
            sink2,
        )
        .expect("short");
    long.cancel();
    go.send(()).expect("go");
    let (ids, last) = collect(&rx);
    assert!(ids.len() < 1000);
    assert!(
        matches!(
            last,
            Event::Done {
                reason: StopReason::Cancelled,
                ..
            }
        ),
        "{last:?}"
    );
    assert_eq!(
        collect(&rx2).0.len(),
        3,
        "the waiting request got the place"
    );
}

/// Tokens and logprobs of a greedy request with logprobs, and its last event.
fn run_logprobs(sched: &Scheduler, p: &[u32], max: usize) -> (Vec<(u32, f32)>, Event) {
    let (sink, rx) = to_channel();
    let mut r = request(p.to_vec(), max, SamplingParams::default());
    r.logprobs = Some(0);
    sched.submit(r, sink).expect("submit");
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("event") {
            Event::Token { id, logprob, .. } => out.push((id, logprob.expect("logprob"))),
            e => return (out, e),
        }
    }
}

/// Same tokens, logprobs within float rounding.
fn assert_same(a: &[(u32, f32)], b: &[(u32, f32)]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0);
        assert!((x.1 - y.1).abs() <= 1e-4, "{a:?} vs {b:?}");
    }
}

#[test]
fn prefix_cache_reuses_a_finished_conversation() {
    let m = model("llama");
    let mut cfg = config(2);
    cfg.prefix_cache_tokens = 1000;
    let sched = Scheduler::start(m.clone(), cfg);
    let fresh = Scheduler::start(m.clone(), config(2)); // no prefix cache
    let p = prompt(m.as_ref(), 12, 5);
    let (first, _) = run_logprobs(&sched, &p, 6);
    // The conversation grows: the earlier prompt and answer, then more.
    let mut next = p.clone();
    next.extend(first.iter().map(|t| t.0));
    next.extend(prompt(m.as_ref(), 5, 6));
    let (got, last) = run_logprobs(&sched, &next, 8);
    let Event::Done {
        cached_tokens,
        prompt_tokens,
        ..
    } = last
    else {
        panic!("{last:?}");
    };
    // The first request's cache holds its prompt and all but its last token.
    assert_eq!(cached_tokens, p.len() + first.len() - 1);
    assert_eq!(prompt_tokens, next.len());
    let (want, last) = run_logprobs(&fresh, &next, 8);
    assert!(matches!(
        last,
        Event::Done {
            cached_tokens: 0,
            ..
        }
    ));
    assert_same(&got, &want);
    // A request sharing only the first 12 tokens: a copy of that part.
    let mut branch = p.clone();
    branch.push((first[0].0 + 1) % m.spec().hparams.vocab_size as u32);
    let (got, last) = run_logprobs(&sched, &branch, 4);
    assert!(
        matches!(
            last,
            Event::Done {
                cached_tokens: 12,
                ..
            }
        ),
        "{last:?}"
    );
    assert_same(&got, &run_logprobs(&fresh, &branch, 4).0);
    assert_eq!(
        sched.stats().cached_tokens,
        (p.len() + first.len() - 1 + 12) as u64
    );
}

#[test]
fn forced_tokens_are_reported_and_fed() {
    let m = model("llama");
    let sched = Scheduler::start(m.clone(), config(2));
    let p = prompt(m.as_ref(), 6, 9);
    let forced = vec![3u32, 4, 5];
    let (tx, rx) = channel();
    let mut n = 0;
    let f = forced.clone();
    let sink: Sink = Box::new(move |e| {
        let is_token = matches!(e, Event::Token { .. });
        let _ = tx.send(e);
        n += is_token as usize;
        if n == 2 {
            Control::Force(f.clone())
        } else {
            Control::Continue
        }
    });
    sched
        .submit(request(p.clone(), 9, SamplingParams::default()), sink)
        .expect("submit");
    let mut events = Vec::new();
    loop {
        let e = rx.recv_timeout(Duration::from_secs(60)).expect("event");
        let last = !matches!(e, Event::Token { .. });
        events.push(e);
        if last {
            break;
        }
    }
    let ids: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Token { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 9);
    assert_eq!(&ids[2..5], &forced[..]);
    assert!(matches!(events[3], Event::Token { logprob: None, .. }));
    // Reference: the first two tokens alone, then the forced ones fed, then greedy on.
    let head = alone(m.as_ref(), &p, 2, &SamplingParams::default());
    assert_eq!(&ids[..2], &head[..]);
    let mut ctx = p.clone();
    ctx.extend(&ids[..5]);
    assert_eq!(
        &ids[5..],
        &alone(m.as_ref(), &ctx, 4, &SamplingParams::default())[..]
    );
    assert!(matches!(
        events.last(),
        Some(Event::Done {
            reason: StopReason::Length,
            completion_tokens: 9,
            ..
        })
    ));
}

#[test]
fn an_error_reaches_only_its_request() {
    let m = model("llama");
    let sched = Scheduler::start(m.clone(), config(2));
    let vocab = m.spec().hparams.vocab_size as u32;
    // Forcing an id outside the vocabulary fails that request only.
    let (tx, rx) = channel();
    let sink: Sink = Box::new(move |e| {
        let _ = tx.send(e);
        Control::Force(vec![vocab + 7])
    });
    sched
        .submit(
            request(prompt(m.as_ref(), 5, 1), 10, SamplingParams::default()),
            sink,
        )
        .expect("bad");
    let (sink, ok_rx) = to_channel();
    let ok = prompt(m.as_ref(), 5, 2);
    sched
        .submit(request(ok.clone(), 10, SamplingParams::default()), sink)
        .expect("good");
    let (_, last) = collect(&rx);
    assert!(matches!(last, Event::Error(_)), "{last:?}");
    assert_eq!(
        collect(&ok_rx).0,
        alone(m.as_ref(), &ok, 10, &SamplingParams::default())
    );
}

#[test]
fn logprobs_and_stop_ids() {
    let m = model("llama");
    let sched = Scheduler::start(m.clone(), config(1));
    let p = prompt(m.as_ref(), 6, 3);
    let greedy = alone(m.as_ref(), &p, 6, &SamplingParams::default());
    let (sink, rx) = to_channel();
    let mut r = request(p.clone(), 6, SamplingParams::default());
    r.logprobs = Some(3);
    r.stop_ids = vec![greedy[2]];
    sched.submit(r, sink).expect("submit");
    let mut toks = Vec::new();
    let last = loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("event") {
            Event::Token { id, logprob, top } => toks.push((id, logprob, top)),
            e => break e,
        }
    };
    let stop_at = greedy.iter().position(|&t| t == greedy[2]).expect("in") + 1;
    assert_eq!(toks.len(), stop_at);
    assert!(matches!(
        last,
        Event::Done {
            reason: StopReason::Stop,
            ..
        }
    ));
    for (id, lp, top) in toks {
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].0, id);
        assert_eq!(lp, Some(top[0].1));
        assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1 && top[0].1 <= 0.0);
    }
}

#[test]
fn shutdown_with_requests_in_flight_returns_promptly() {
    let m = model("llama");
    let sched = Scheduler::start(m.clone(), config(2));
    let mut rxs = Vec::new();
    for i in 0..5 {
        let (sink, rx) = to_channel();
        sched
            .submit(
                request(prompt(m.as_ref(), 5, i), 100_000, sampling(1.0, i)),
                sink,
            )
            .expect("submit");
        rxs.push(rx);
    }
    // Let them start.
    let _ = rxs[0]
        .recv_timeout(Duration::from_secs(60))
        .expect("a token");
    let t = Instant::now();
    sched.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    for rx in &rxs {
        let (_, last) = collect(rx);
        assert!(matches!(last, Event::Done { .. }), "{last:?}");
    }
    let (sink, _rx) = to_channel();
    assert!(matches!(
        sched.submit(request(vec![1], 1, SamplingParams::default()), sink),
        Err(SubmitError::ShuttingDown)
    ));
}

/// A request's logprobs, to the bit: alone, again with its prompt in the prefix cache, and
/// in a batch of nine whose other prompts are new (prefilled together with it, and decoded
/// nine rows at a time). Q8_0 weights, so the integer kernels run.
#[test]
fn quantized_request_same_bits_alone_cached_and_batched() {
    for name in ["llama", "deepseek2"] {
        let path = fixture_dir(name).join("model.q8_0.gguf");
        let m: Arc<dyn Architecture> =
            Arc::from(arch::build(mixture_model::load(&path).expect("load")).expect("build"));
        let p = prompt(m.as_ref(), 20, 77);
        let bits = |v: &[(u32, f32)]| -> Vec<(u32, u32)> {
            v.iter().map(|(t, l)| (*t, l.to_bits())).collect()
        };
        let mut cfg = config(9);
        cfg.prefix_cache_tokens = 1000;
        let sched = Scheduler::start(m.clone(), cfg);
        let (cold, _) = run_logprobs(&sched, &p, 10);
        let (warm, last) = run_logprobs(&sched, &p, 10);
        assert!(
            matches!(last, Event::Done { cached_tokens, .. } if cached_tokens == p.len() - 1),
            "{name}: {last:?}"
        );
        assert_eq!(bits(&cold), bits(&warm), "{name}: cold vs cached prompt");
        // Among eight others with new prompts, started together.
        let fresh = Scheduler::start(m.clone(), config(9));
        let mut others = Vec::new();
        for i in 0..8u64 {
            let (sink, rx) = to_channel();
            let r = request(prompt(m.as_ref(), 20, 200 + i), 12, sampling(1.0, i));
            fresh.submit(r, sink).expect("submit");
            others.push(rx);
        }
        let (batched, _) = run_logprobs(&fresh, &p, 10);
        assert_eq!(bits(&cold), bits(&batched), "{name}: alone vs in a batch");
        for rx in others {
            assert!(matches!(collect(&rx).1, Event::Done { .. }));
        }
    }
}

/// A prompt that shares only its beginning with a finished request (a partial prefix-cache
/// hit: the rest is prefilled from where the hit ends) gives the same logprobs, to the bit,
/// as on a fresh scheduler: prompts run on the tiled kernels, which compute each token alone
/// (kernels/tests/matmul_many.rs checks that per format at real widths; these fixtures'
/// widths are too small for the kernel families to round differently).
#[test]
fn quantized_request_same_bits_after_a_partial_prefix_hit() {
    for name in ["llama", "deepseek2"] {
        let path = fixture_dir(name).join("model.q8_0.gguf");
        let m: Arc<dyn Architecture> =
            Arc::from(arch::build(mixture_model::load(&path).expect("load")).expect("build"));
        let first = prompt(m.as_ref(), 24, 5);
        // The hit ends 5 tokens before the prompt's last: a short prefill after it.
        let mut second = first[..16].to_vec();
        second.extend(prompt(m.as_ref(), 6, 6));
        let bits = |v: &[(u32, f32)]| -> Vec<(u32, u32)> {
            v.iter().map(|(t, l)| (*t, l.to_bits())).collect()
        };
        let mut cfg = config(2);
        cfg.prefix_cache_tokens = 1000;
        let sched = Scheduler::start(m.clone(), cfg);
        run_logprobs(&sched, &first, 4);
        let (partial, last) = run_logprobs(&sched, &second, 8);
        assert!(
            matches!(last, Event::Done { cached_tokens, .. } if cached_tokens > 0 && cached_tokens < second.len() - 1),
            "{name}: expected a partial hit, got {last:?}"
        );
        let (fresh, _) = run_logprobs(&Scheduler::start(m.clone(), config(2)), &second, 8);
        assert_eq!(
            bits(&partial),
            bits(&fresh),
            "{name}: partial prefix hit vs fresh"
        );
    }
}
