//! Hugging Face checkpoint directories: `config.json` + safetensors weights (one file, or
//! shards listed in `model.safetensors.index.json`), F32/F16/BF16 as memory-mapped views and
//! DeepSeek-V3/R1's block-scaled FP8, mapped onto the canonical tensor names.
//!
//! Steps: [`config`] reads the hyperparameters; [`files`] maps and parses every shard;
//! FP8 weights are dequantized with their scales ([`fp8`]); [`names`] maps each HF name to
//! its canonical name, splitting DeepSeek's `kv_b_proj` and transformers 5's fused expert
//! tensors on the way.
//!
//! What transformers 5 writes: `save_pretrained` (default `save_original_format=True`) writes
//! the hub's per-expert layout (`mlp.experts.E.{gate,up,down}_proj.weight`, Mixtral
//! `block_sparse_moe.experts.E.w{1,3,2}.weight`); with `save_original_format=False` it writes
//! its in-memory fused layout, `mlp.experts.gate_up_proj` `[E, 2 * ffn, hidden]` (gate rows
//! first) and `mlp.experts.down_proj` `[E, hidden, ffn]` (Mixtral too, under `mlp.`). Both
//! are read.

pub mod config;
pub mod files;
pub mod fp8;
pub mod names;

use crate::convert::split_kv_b;
use crate::error::{ModelError, Result};
use crate::load::LoadedModel;
use crate::tensor::{Tensor, WeightStore};
use config::HfConfig;
use files::RawTensor;
use mixture_kernels::DType;
use names::Target;
use std::collections::BTreeMap;
use std::path::Path;

pub use config::{read_config, read_spec};

fn hf_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Hf {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Load a Hugging Face checkpoint directory.
pub fn load(dir: &Path) -> Result<LoadedModel> {
    let cfg = read_config(dir)?;
    let spec = config::spec_from(dir, &cfg);
    let wf = files::find_weight_files(dir)?;
    let raw = files::read_all(&wf, &names::is_skipped)?;
    let raw = dequantize_fp8(dir, raw, &cfg)?;
    let weights = map_names(dir, raw, &cfg)?;
    Ok(LoadedModel {
        spec,
        weights,
        files: wf.files,
    })
}

/// Replace each FP8 weight and its `_scale_inv` by one dequantized F32 tensor.
fn dequantize_fp8(
    dir: &Path,
    mut raw: BTreeMap<String, RawTensor>,
    cfg: &HfConfig,
) -> Result<BTreeMap<String, Tensor>> {
    let fp8: Vec<String> = raw
        .iter()
        .filter(|(_, r)| r.tensor.dtype == DType::F8E4M3)
        .map(|(n, _)| n.clone())
        .collect();
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    for name in fp8 {
        let sname = fp8::scale_name(&name);
        let (Some(w), scale) = (raw.remove(&name), raw.remove(&sname)) else {
            continue;
        };
        let Some(scale) = scale else {
            return Err(hf_err(
                dir,
                format!("tensor `{name}` is FP8 (F8_E4M3) but has no block scale `{sname}`"),
            ));
        };
        let t = fp8::dequantize_fp8(&name, &w.tensor, &scale.tensor, cfg.fp8_block)?;
        out.insert(name, t);
    }
    let dequantized: Vec<String> = out.keys().cloned().collect();
    for (name, r) in raw {
        if let Some(weight) = name.strip_suffix("_scale_inv") {
            if !dequantized.iter().any(|w| w == weight) {
                return Err(hf_err(
                    dir,
                    format!("`{name}` is a block scale but `{weight}` is not an FP8 tensor"),
                ));
            }
        }
        out.insert(name, r.tensor);
    }
    Ok(out)
}

/// Insert under a canonical name, refusing a second tensor for the same name.
fn put(dir: &Path, ws: &mut WeightStore, canon: String, hf: &str, t: Tensor) -> Result<()> {
    if ws.contains(&canon) {
        return Err(hf_err(
            dir,
            format!("`{hf}` maps to `{canon}`, which another tensor already provides"),
        ));
    }
    ws.insert(canon, t);
    Ok(())
}

/// Rows `[start, start + n)` of a 2-D tensor, sharing its bytes where they are mapped.
fn rows(t: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    let (r, c) = match t.shape.as_slice() {
        [r, c] => (*r, *c),
        s => return Err(ModelError::Invalid(format!("row slice of a {s:?} tensor"))),
    };
    if start + n > r {
        return Err(ModelError::Invalid(format!(
            "rows {start}..{} out of range for {r} rows",
            start + n
        )));
    }
    let rb = t.dtype.row_bytes(c)?;
    Ok(Tensor {
        dtype: t.dtype,
        shape: vec![n, c],
        data: t.data.slice(start * rb, n * rb),
    })
}

fn map_names(dir: &Path, raw: BTreeMap<String, Tensor>, cfg: &HfConfig) -> Result<WeightStore> {
    let hp = &cfg.hparams;
    let mut ws = WeightStore::default();
    for (hf, t) in raw {
        match names::map_name(&hf) {
            Target::Skip => {}
            Target::Keep => put(dir, &mut ws, hf.clone(), &hf, t)?,
            Target::Canon(c) => put(dir, &mut ws, c, &hf, t)?,
            Target::KvB { layer } => {
                let mla = hp.mla.as_ref().ok_or_else(|| {
                    hf_err(dir, format!("`{hf}` in a model without MLA parameters"))
                })?;
                let (k_b, v_b) = split_kv_b(
                    &hf,
                    &t,
                    hp.n_heads,
                    mla.qk_nope_dim,
                    mla.v_head_dim,
                    mla.kv_lora_rank,
                )?;
                put(dir, &mut ws, crate::names::blk(layer, "attn_k_b"), &hf, k_b)?;
                put(dir, &mut ws, crate::names::blk(layer, "attn_v_b"), &hf, v_b)?;
            }
            Target::FusedGateUp { layer } => {
                let (e, two_ff, h) = fused_shape(&hf, &t, cfg)?;
                if two_ff % 2 != 0 {
                    return Err(hf_err(
                        dir,
                        format!("`{hf}`: fused gate_up has an odd row count {two_ff}"),
                    ));
                }
                let ff = two_ff / 2;
                let _ = h;
                for x in 0..e {
                    let one = t.index0(x)?;
                    let gate = rows(&one, 0, ff)?;
                    let up = rows(&one, ff, ff)?;
                    put(
                        dir,
                        &mut ws,
                        crate::names::expert(layer, x, "ffn_gate"),
                        &hf,
                        gate,
                    )?;
                    put(
                        dir,
                        &mut ws,
                        crate::names::expert(layer, x, "ffn_up"),
                        &hf,
                        up,
                    )?;
                }
            }
            Target::FusedDown { layer } => {
                let (e, _, _) = fused_shape(&hf, &t, cfg)?;
                for x in 0..e {
                    let one = t.index0(x)?;
                    put(
                        dir,
                        &mut ws,
                        crate::names::expert(layer, x, "ffn_down"),
                        &hf,
                        one,
                    )?;
                }
            }
        }
    }
    if !ws.contains(crate::names::OUTPUT) && !cfg.tie_word_embeddings {
        return Err(hf_err(
            dir,
            "lm_head.weight is missing and config.json does not set tie_word_embeddings",
        ));
    }
    Ok(ws)
}

/// `[n_expert, a, b]` of a fused expert tensor, checked against the config's expert count.
fn fused_shape(hf: &str, t: &Tensor, cfg: &HfConfig) -> Result<(usize, usize, usize)> {
    let (e, a, b) = match t.shape.as_slice() {
        [e, a, b] => (*e, *a, *b),
        s => {
            return Err(ModelError::Invalid(format!(
                "tensor `{hf}`: fused experts must be 3-D, found shape {s:?}"
            )))
        }
    };
    match &cfg.hparams.moe {
        Some(m) if m.n_experts == e => Ok((e, a, b)),
        Some(m) => Err(ModelError::Invalid(format!(
            "tensor `{hf}`: {e} experts, config says {}",
            m.n_experts
        ))),
        None => Err(ModelError::Invalid(format!(
            "tensor `{hf}`: fused experts in a model without experts"
        ))),
    }
}
