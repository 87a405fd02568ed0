//! `mixture inspect`: what a model file holds.

use anyhow::Result;
use mixture_model::spec::{Gating, RopeScaling};
use mixture_model::{load, HParams};
use std::collections::BTreeMap;
use std::path::Path;

pub fn inspect(path: &Path, json: bool) -> Result<()> {
    let m = load(path)?;
    let hp = &m.spec.hparams;
    // Tensor types: count and bytes.
    let mut types: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut total, mut experts) = (0usize, 0usize);
    for (name, t) in &m.weights.tensors {
        let e = types.entry(t.dtype.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.bytes().len();
        total += t.numel();
        if name.contains(".exp.") {
            experts += t.numel();
        }
    }
    let active = match &hp.moe {
        Some(p) if p.n_experts > 0 => total - experts + experts / p.n_experts * p.n_experts_used,
        _ => total,
    };
    let kv_per_token = kv_values_per_token(hp);
    if json {
        let v = serde_json::json!({
            "name": m.spec.name,
            "format": m.spec.format,
            "architecture": m.spec.arch.name(),
            "tokenizer": m.spec.tokenizer,
            "hparams": format!("{hp:?}"),
            "total_params": total,
            "active_params_per_token": active,
            "kv_cache_bytes_per_token_f32": kv_per_token * 4,
            "tensor_types": types.iter().map(|(k, (n, b))| (k.clone(), serde_json::json!({"count": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("name           {}", m.spec.name);
    println!("format         {}", m.spec.format);
    println!("architecture   {}", m.spec.arch.name());
    println!("tokenizer      {}", m.spec.tokenizer);
    println!("vocab          {}", hp.vocab_size);
    println!("hidden         {}", hp.hidden);
    println!("layers         {}", hp.n_layers);
    println!(
        "heads          {} (kv {}, head dim {})",
        hp.n_heads, hp.n_kv_heads, hp.head_dim
    );
    println!("ffn            {}", hp.ffn_hidden);
    println!("context        {}", hp.context_length);
    println!("rms eps        {}", hp.rms_eps);
    let scaling = match &hp.rope.scaling {
        RopeScaling::None => "none".to_string(),
        s => format!("{s:?}"),
    };
    println!(
        "rope           theta {} dims {} {:?}, scaling {scaling}",
        hp.rope.theta, hp.rope.dims, hp.rope.style
    );
    if let Some(p) = &hp.mla {
        println!(
            "MLA            q_lora {} kv_lora {} nope {} rope {} v {}",
            p.q_lora_rank.map_or("none".into(), |r| r.to_string()),
            p.kv_lora_rank,
            p.qk_nope_dim,
            p.qk_rope_dim,
            p.v_head_dim
        );
    }
    if let Some(p) = &hp.moe {
        println!(
            "experts        {} routed (top {}), {} shared, width {}, {} gating{}, groups {}/{}, scale {}, first {} dense",
            p.n_experts,
            p.n_experts_used,
            p.n_shared,
            p.expert_ffn,
            match p.gating { Gating::Softmax => "softmax", Gating::Sigmoid => "sigmoid" },
            if p.norm_topk { " (renormalised)" } else { "" },
            p.topk_group,
            p.n_group,
            p.routed_scale,
            p.first_dense
        );
    }
    println!(
        "parameters     {} total, {} active per token",
        human(total),
        human(active)
    );
    println!(
        "KV cache       {} values ({} bytes at f32) per token",
        kv_per_token,
        kv_per_token * 4
    );
    println!("tensor types");
    for (k, (n, b)) in &types {
        println!("  {k:<8} {n:>6} tensors {:>12} bytes", b);
    }
    Ok(())
}

fn kv_values_per_token(hp: &HParams) -> usize {
    match &hp.mla {
        Some(p) => hp.n_layers * (p.kv_lora_rank + p.qk_rope_dim),
        None => hp.n_layers * 2 * hp.n_kv_heads * hp.head_dim,
    }
}

fn human(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}K", n / 1e3)
    } else {
        format!("{n}")
    }
}
