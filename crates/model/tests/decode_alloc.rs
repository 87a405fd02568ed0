//! A decoded token's forward pass allocates nothing once the first steps have sized the
//! per-thread buffers (issue 4: "no allocation in the decode loop"). A counting global
//! allocator sees every thread's calls, the pool's workers included. The file is its own
//! program (`harness = false` in Cargo.toml): no test runner thread allocates beside it.

use mixture_kernels::reuse;
use mixture_model::arch::{self, Logits};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn main() {
    decoding_allocates_nothing_once_warm();
    println!("decode_alloc: ok (no heap call in 8 decoded tokens, 5 fixtures)");
}

/// Start the pool and wait until each worker has run a task: a thread's start-up allocates
/// (the standard library copies its name), and on a busy machine a new thread may first run
/// a good while after it was spawned.
fn start_pool(threads: usize) {
    use mixture_kernels::pool;
    use std::sync::atomic::AtomicBool;
    let n = pool::init(threads);
    let seen: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let t0 = std::time::Instant::now();
    while !seen.iter().all(|s| s.load(Ordering::SeqCst)) {
        assert!(t0.elapsed().as_secs() < 60, "the pool's workers never ran");
        pool::run(64 * n, &|slot, _| {
            seen[slot].store(true, Ordering::SeqCst);
            std::hint::black_box((0..2000).sum::<u64>());
        });
    }
}

fn decoding_allocates_nothing_once_warm() {
    start_pool(2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    // Dense and MoE, grouped-query and MLA attention, quantized and float weights.
    for (name, file) in [
        ("llama", "model.q8_0.gguf"),
        ("llama", "model.f32.gguf"),
        ("qwen3moe", "model.q8_0.gguf"),
        ("deepseek2", "model.q8_0.gguf"),
        ("deepseek3", "model.f32.gguf"),
    ] {
        let m = arch::build(mixture_model::load(&root.join(name).join(file)).expect("load"))
            .expect("build");
        let vocab = m.spec().hparams.vocab_size as u64;
        let prompt: Vec<u32> = (0..12u64)
            .map(|i| ((i * 7919 + 13) % vocab) as u32)
            .collect();
        let mut cache = m.new_cache();
        cache.reserve(32);
        let next = |cache: &mut mixture_model::KvCache, ids: &[u32]| {
            let logits = m.forward(ids, cache, Logits::Last).expect("forward");
            let tok = argmax(&logits);
            reuse::give(logits);
            tok
        };
        let mut tok = next(&mut cache, &prompt);
        // Two steps size the buffers of a one-token step.
        for _ in 0..2 {
            tok = next(&mut cache, &[tok]);
        }
        let before = CALLS.load(Ordering::SeqCst);
        for _ in 0..8 {
            tok = next(&mut cache, &[tok]);
        }
        let calls = CALLS.load(Ordering::SeqCst) - before;
        assert_eq!(calls, 0, "{name}/{file}: heap calls in 8 decoded tokens");
    }
}
