//! Batched forward: several sequences in one call give each one's logits as running it alone.

use mixture_model::arch::{self, Architecture, BatchItem, Logits};
use mixture_model::KvCache;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
        .join("model.f32.gguf")
}

fn model(name: &str) -> Box<dyn Architecture> {
    arch::build(mixture_model::load(&fixture(name)).expect("load")).expect("build")
}

/// Token ids spread over the vocabulary.
fn ids(m: &dyn Architecture, n: usize, salt: u64) -> Vec<u32> {
    let vocab = m.spec().hparams.vocab_size as u64;
    (0..n as u64)
        .map(|i| ((i * 7919 + salt * 104_729 + 13) % vocab) as u32)
        .collect()
}

/// One sequence's state and next step in a batch test.
struct Case {
    /// Tokens already in the cache before the step.
    past: Vec<u32>,
    /// The step's new tokens.
    new: Vec<u32>,
    logits: Logits,
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Runs `cases` alone and as one batch from identical caches; the logits and the caches
/// after the step agree.
fn check_batch(name: &str, cases: &[Case]) {
    let m = model(name);
    let prime = |c: &Case| -> KvCache {
        let mut cache = m.new_cache();
        if !c.past.is_empty() {
            m.forward(&c.past, &mut cache, Logits::Last).expect("prime");
        }
        cache
    };
    // Alone.
    let mut alone_caches: Vec<KvCache> = cases.iter().map(&prime).collect();
    let alone: Vec<Vec<f32>> = cases
        .iter()
        .zip(alone_caches.iter_mut())
        .map(|(c, cache)| m.forward(&c.new, cache, c.logits).expect("alone"))
        .collect();
    // Together.
    let mut caches: Vec<KvCache> = cases.iter().map(&prime).collect();
    let mut items: Vec<BatchItem<'_>> = cases
        .iter()
        .zip(caches.iter_mut())
        .map(|(c, cache)| BatchItem {
            tokens: &c.new,
            cache,
            logits: c.logits,
        })
        .collect();
    let together = m.forward_batch(&mut items).expect("batch");
    assert_eq!(together.len(), cases.len());
    let vocab = m.spec().hparams.vocab_size;
    for (i, c) in cases.iter().enumerate() {
        let rows = match c.logits {
            Logits::All => c.new.len(),
            Logits::Last => 1,
        };
        assert_eq!(
            together[i].len(),
            rows * vocab,
            "{name} item {i}: logits shape"
        );
        let worst = max_diff(&together[i], &alone[i]);
        eprintln!("{name} item {i}: max |Δ logit| {worst:.2e}");
        assert!(worst <= 1e-4, "{name} item {i}: max |Δ logit| {worst}");
        assert_eq!(caches[i].len, c.past.len() + c.new.len());
        for (a, b) in caches[i].layers.iter().zip(&alone_caches[i].layers) {
            assert!(max_diff(&a.k, &b.k) <= 1e-4 && max_diff(&a.v, &b.v) <= 1e-4);
        }
    }
}

/// Three sequences of different lengths from different cache states: a fresh prompt, a
/// continuation after 20 cached tokens (all logits), a 1-token step after 40.
fn three_states(name: &str) {
    let m = model(name);
    let cases = [
        Case {
            past: vec![],
            new: ids(m.as_ref(), 9, 1),
            logits: Logits::Last,
        },
        Case {
            past: ids(m.as_ref(), 20, 2),
            new: ids(m.as_ref(), 5, 3),
            logits: Logits::All,
        },
        Case {
            past: ids(m.as_ref(), 40, 4),
            new: ids(m.as_ref(), 1, 5),
            logits: Logits::Last,
        },
    ];
    check_batch(name, &cases);
}

/// A prefill chunk long enough for MLA's expanded form, with two decode steps.
fn prefill_and_decodes(name: &str) {
    let m = model(name);
    let cases = [
        Case {
            past: ids(m.as_ref(), 30, 6),
            new: vec![ids(m.as_ref(), 1, 7)[0]],
            logits: Logits::Last,
        },
        Case {
            past: ids(m.as_ref(), 8, 8),
            new: ids(m.as_ref(), 72, 9),
            logits: Logits::Last,
        },
        Case {
            past: ids(m.as_ref(), 3, 10),
            new: vec![ids(m.as_ref(), 1, 11)[0]],
            logits: Logits::All,
        },
    ];
    check_batch(name, &cases);
}

#[test]
fn batch_matches_alone_llama() {
    three_states("llama");
    prefill_and_decodes("llama");
}

#[test]
fn batch_matches_alone_qwen3moe() {
    three_states("qwen3moe");
    prefill_and_decodes("qwen3moe");
}

#[test]
fn batch_matches_alone_deepseek2() {
    three_states("deepseek2");
    prefill_and_decodes("deepseek2");
}

#[test]
fn batch_matches_alone_deepseek3() {
    three_states("deepseek3");
    prefill_and_decodes("deepseek3");
}

/// A bad item fails the whole call before any cache changes.
#[test]
fn batch_checks_items_first() {
    let m = model("llama");
    let ctx = m.spec().hparams.context_length;
    let mut a = m.new_cache();
    let mut b = m.new_cache();
    let ok = ids(m.as_ref(), 4, 1);
    let too_long = ids(m.as_ref(), ctx + 1, 2);
    let mut items = [
        BatchItem {
            tokens: &ok,
            cache: &mut a,
            logits: Logits::Last,
        },
        BatchItem {
            tokens: &too_long,
            cache: &mut b,
            logits: Logits::Last,
        },
    ];
    assert!(ctx > 0 && m.forward_batch(&mut items).is_err());
    assert_eq!((a.len, a.layers[0].k.len()), (0, 0));
    let empty: Vec<u32> = vec![];
    let mut items = [BatchItem {
        tokens: &empty,
        cache: &mut a,
        logits: Logits::Last,
    }];
    assert!(m.forward_batch(&mut items).is_err());
}
