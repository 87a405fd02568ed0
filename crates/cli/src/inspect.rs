//! `mixture inspect`: what a model file holds.

use anyhow::Result;
use mixture_model::footprint::Footprint;
use mixture_model::load;
use mixture_model::spec::{Gating, RopeScaling};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub fn inspect(path: &Path, json: bool) -> Result<()> {
    crate::emit(&report(path, json)?);
    Ok(())
}

fn report(path: &Path, json: bool) -> Result<String> {
    let mut o = String::new();
    let m = load(path)?;
    let hp = &m.spec.hparams;
    // Tensor types: count and bytes.
    let mut types: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in m.weights.tensors.values() {
        let e = types.entry(t.dtype.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.bytes().len();
    }
    let fp = Footprint::of(hp, &m.weights);
    let (total, active) = (fp.total_params, fp.active_params);
    let kv_per_token = fp.kv_values_per_token;
    if json {
        let v = serde_json::json!({
            "name": m.spec.name,
            "format": m.spec.format,
            "architecture": m.spec.arch.name(),
            "tokenizer": m.spec.tokenizer,
            "hparams": format!("{hp:?}"),
            "total_params": total,
            "active_params_per_token": active,
            "weight_bytes": fp.total_bytes,
            "active_weight_bytes_per_token": fp.active_bytes,
            "kv_cache_bytes_per_token_f32": kv_per_token * 4,
            "tensor_types": types.iter().map(|(k, (n, b))| (k.clone(), serde_json::json!({"count": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        });
        return Ok(format!("{v}\n"));
    }
    writeln!(o, "name           {}", m.spec.name)?;
    writeln!(o, "format         {}", m.spec.format)?;
    writeln!(o, "architecture   {}", m.spec.arch.name())?;
    writeln!(o, "tokenizer      {}", m.spec.tokenizer)?;
    writeln!(o, "vocab          {}", hp.vocab_size)?;
    writeln!(o, "hidden         {}", hp.hidden)?;
    writeln!(o, "layers         {}", hp.n_layers)?;
    writeln!(
        o,
        "heads          {} (kv {}, head dim {})",
        hp.n_heads, hp.n_kv_heads, hp.head_dim
    )?;
    writeln!(o, "ffn            {}", hp.ffn_hidden)?;
    writeln!(o, "context        {}", hp.context_length)?;
    writeln!(o, "rms eps        {}", hp.rms_eps)?;
    let scaling = match &hp.rope.scaling {
        RopeScaling::None => "none".to_string(),
        s => format!("{s:?}"),
    };
    writeln!(
        o,
        "rope           theta {} dims {} {:?}, scaling {scaling}",
        hp.rope.theta, hp.rope.dims, hp.rope.style
    )?;
    if let Some(p) = &hp.mla {
        writeln!(
            o,
            "MLA            q_lora {} kv_lora {} nope {} rope {} v {}",
            p.q_lora_rank.map_or("none".into(), |r| r.to_string()),
            p.kv_lora_rank,
            p.qk_nope_dim,
            p.qk_rope_dim,
            p.v_head_dim
        )?;
    }
    if let Some(p) = &hp.moe {
        writeln!(
            o,
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
        )?;
    }
    writeln!(
        o,
        "parameters     {} total, {} active per token",
        human(total),
        human(active)
    )?;
    writeln!(
        o,
        "weights        {} bytes, {} read per decoded token",
        fp.total_bytes, fp.active_bytes
    )?;
    writeln!(
        o,
        "KV cache       {} values ({} bytes at f32) per token",
        kv_per_token,
        kv_per_token * 4
    )?;
    writeln!(o, "tensor types")?;
    for (k, (n, b)) in &types {
        writeln!(o, "  {k:<8} {n:>6} tensors {:>12} bytes", b)?;
    }
    Ok(o)
}

pub(crate) fn human(n: usize) -> String {
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
