//! `mixture bench`: prompt processing (pp) and token generation (tg) speed, as llama-bench's
//! pp512 / tg128 rows, plus the machine's measured memory bandwidth and the fraction of the
//! decode bound (bandwidth / weight bytes one token reads) that tg reaches.

use anyhow::{bail, Result};
use clap::Args;
use mixture_engine::Session;
use mixture_kernels::threads;
use mixture_model::arch;
use mixture_model::footprint::Footprint;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: crate::ModelArg,
    /// Prompt tokens processed in one batch (the pp test); 0 skips it.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Tokens generated one at a time from an empty context (the tg test); 0 skips it.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Timed repetitions of each test (after one untimed warm-up).
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// Probe the memory bandwidth with a scratch buffer of this many MiB (keep it well above
    /// the last-level cache). Without it, weights of at least 1 GiB are streamed themselves (no
    /// extra memory); smaller models skip the probe, since their weights largely fit in cache
    /// and a scratch buffer would dwarf their memory use.
    #[arg(long)]
    bandwidth_mib: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Weights at least this big are their own bandwidth probe.
const WEIGHT_PROBE_MIN: usize = 1 << 30;

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Deterministic pseudo-random token ids below `vocab`.
fn token_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}

pub fn bench(a: BenchArgs, n_threads: usize) -> Result<()> {
    if a.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    if a.bandwidth_mib.is_some_and(|m| !(1..=16384).contains(&m)) {
        bail!("--bandwidth-mib must be between 1 and 16384");
    }
    let path = a.model.path()?;
    let loaded = mixture_model::load(&path)?;
    let fp = Footprint::of(&loaded.spec.hparams, &loaded.weights);
    let name = loaded.spec.name.clone();
    let arch_name = loaded.spec.arch.name().to_string();
    // Warm the page cache: every weight byte read once.
    let t = Instant::now();
    for w in loaded.weights.tensors.values() {
        std::hint::black_box(threads::touch(w.bytes()));
    }
    let touch_s = t.elapsed().as_secs_f64();
    // Memory bandwidth: on a scratch buffer when asked, else on the weights themselves when
    // they are big enough (no extra memory, so peak RSS stays the model's), else not measured
    // (NaN: reported as null / "not measured").
    let bw = match a.bandwidth_mib {
        Some(mib) => threads::read_bandwidth(mib << 20, 3),
        None if fp.total_bytes >= WEIGHT_PROBE_MIN => {
            let slices: Vec<&[u8]> = loaded.weights.tensors.values().map(|w| w.bytes()).collect();
            threads::read_bandwidth_of(&slices, 3)
        }
        None => f64::NAN,
    };
    let model = arch::build(loaded)?;
    let vocab = model.spec().hparams.vocab_size;
    let ctx = model.spec().hparams.context_length;
    if ctx > 0 && a.n_prompt.max(a.n_gen) > ctx {
        bail!(
            "-p {} / -n {} exceed the model's context length {ctx}",
            a.n_prompt,
            a.n_gen
        );
    }
    if !a.json {
        eprintln!(
            "{name} ({arch_name}): {} weights, {} parameters ({} active), {n_threads} threads; page cache warmed in {touch_s:.1}s",
            human_bytes(fp.total_bytes as f64),
            crate::inspect::human(fp.total_params),
            crate::inspect::human(fp.active_params),
        );
    }

    let pp = |seed: u64| -> Result<f64> {
        let ids = token_ids(a.n_prompt, vocab, seed);
        let mut s = Session::new(model.as_ref());
        let t = Instant::now();
        s.feed_last(&ids)?;
        Ok(a.n_prompt as f64 / t.elapsed().as_secs_f64())
    };
    let tg = |seed: u64| -> Result<f64> {
        let ids = token_ids(a.n_gen, vocab, seed);
        let mut s = Session::new(model.as_ref());
        // The cache sized up front, as llama-bench's context is.
        s.reserve(ids.len());
        let t = Instant::now();
        for &id in &ids {
            // Each step's logits buffer serves the next one.
            mixture_kernels::reuse::give(s.feed_last(&[id])?);
        }
        Ok(a.n_gen as f64 / t.elapsed().as_secs_f64())
    };
    let run = |label: &str, n: usize, f: &dyn Fn(u64) -> Result<f64>| -> Result<Vec<f64>> {
        if n == 0 {
            return Ok(vec![]);
        }
        f(0)?; // warm-up
        let mut v = Vec::new();
        for r in 0..a.repetitions {
            v.push(f(r as u64 + 1)?);
            if !a.json {
                eprint!("\r{label}{n}: repetition {}/{}", r + 1, a.repetitions);
            }
        }
        if !a.json {
            eprint!("\r\x1b[K");
        }
        Ok(v)
    };
    let pp_v = run("pp", a.n_prompt, &pp)?;
    let tg_v = run("tg", a.n_gen, &tg)?;
    let bound = bw / fp.active_bytes.max(1) as f64;
    let (pp_m, pp_sd) = mean_sd(&pp_v);
    let (tg_m, tg_sd) = mean_sd(&tg_v);
    let frac = if tg_v.is_empty() { 0.0 } else { tg_m / bound };
    if a.json {
        let num = |x: f64| {
            if x.is_finite() {
                serde_json::json!(x)
            } else {
                serde_json::Value::Null
            }
        };
        let v = serde_json::json!({
            "model": name,
            "architecture": arch_name,
            "path": path.display().to_string(),
            "threads": n_threads,
            "kernels": mixture_kernels::describe(),
            "n_prompt": a.n_prompt,
            "n_gen": a.n_gen,
            "repetitions": a.repetitions,
            "pp_tokens_per_s": num(pp_m),
            "pp_stdev": num(pp_sd),
            "pp_samples": pp_v,
            "tg_tokens_per_s": num(tg_m),
            "tg_stdev": num(tg_sd),
            "tg_samples": tg_v,
            "bandwidth_gb_per_s": num(bw / 1e9),
            "weight_bytes": fp.total_bytes,
            "active_weight_bytes_per_token": fp.active_bytes,
            "bound_tokens_per_s": num(bound),
            "bound_fraction": num(frac),
            "kv_bytes_per_token": fp.kv_values_per_token * 4,
            "total_params": fp.total_params,
            "active_params": fp.active_params,
        });
        println!("{v}");
        return Ok(());
    }
    let mut o = String::new();
    o += &format!(
        "| {:<8} | {:>18} |\n| {:-<8} | {:->18} |\n",
        "test", "tokens/s", "", ""
    );
    if !pp_v.is_empty() {
        o += &format!(
            "| {:<8} | {:>9.2} ± {:<6.2} |\n",
            format!("pp{}", a.n_prompt),
            pp_m,
            pp_sd
        );
    }
    if !tg_v.is_empty() {
        o += &format!(
            "| {:<8} | {:>9.2} ± {:<6.2} |\n",
            format!("tg{}", a.n_gen),
            tg_m,
            tg_sd
        );
    }
    if bw.is_finite() {
        o += &format!(
            "memory bandwidth {:.1} GB/s; a decoded token reads {} of weights, so decode is bound at {:.1} tokens/s",
            bw / 1e9,
            human_bytes(fp.active_bytes as f64),
            bound
        );
        if !tg_v.is_empty() {
            o += &format!("; tg reaches {:.0}% of it", frac * 100.0);
        }
    } else {
        o += &format!(
            "memory bandwidth not measured (weights under 1 GiB; --bandwidth-mib N probes with an N MiB buffer); a decoded token reads {} of weights",
            human_bytes(fp.active_bytes as f64),
        );
    }
    o += &format!(
        "\nKV cache: {} per token (f32)\nkernels: {}\n",
        human_bytes((fp.kv_values_per_token * 4) as f64),
        mixture_kernels::describe()
    );
    crate::emit(&o);
    Ok(())
}

fn human_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} KB", b / 1e3)
    }
}
