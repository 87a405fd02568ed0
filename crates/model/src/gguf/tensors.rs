//! GGUF tensor names → the canonical scheme of [`crate::names`].
//!
//! GGUF names are already canonical except for:
//! - 3-D routed experts `blk.N.ffn_{gate,up,down}_exps.weight` (`[n_expert, rows, cols]`),
//!   split into per-expert views `blk.N.exp.E.ffn_*.weight` (no copy);
//! - old Mixtral files' per-expert `blk.N.ffn_{gate,up,down}.E.weight`, renamed to the same;
//! - older DeepSeek files' `blk.N.attn_kv_b.weight`, split into `attn_k_b` / `attn_v_b`.

use super::parse::GgufFile;
use crate::convert::split_kv_b;
use crate::error::{ModelError, Result};
use crate::names;
use crate::spec::ModelSpec;
use crate::tensor::{Tensor, WeightStore};

const EXPERT_MATS: [&str; 3] = ["ffn_gate", "ffn_up", "ffn_down"];

/// What a stored name becomes.
#[derive(Debug, PartialEq, Eq)]
enum Mapped<'a> {
    Keep,
    /// `blk.N.ffn_X_exps.weight` → one view per expert.
    Experts {
        layer: usize,
        mat: &'a str,
    },
    /// `blk.N.ffn_X.E.weight` → `blk.N.exp.E.ffn_X.weight`.
    Expert {
        layer: usize,
        expert: usize,
        mat: &'a str,
    },
    /// `blk.N.attn_kv_b.weight` → `attn_k_b` + `attn_v_b`.
    KvB {
        layer: usize,
    },
}

fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn classify(name: &str) -> Mapped<'_> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        ["blk", n, mat, "weight"] => {
            let Some(layer) = parse_index(n) else {
                return Mapped::Keep;
            };
            if *mat == "attn_kv_b" {
                return Mapped::KvB { layer };
            }
            match mat
                .strip_suffix("_exps")
                .and_then(|m| EXPERT_MATS.iter().find(|&&x| x == m))
            {
                Some(m) => Mapped::Experts { layer, mat: m },
                None => Mapped::Keep,
            }
        }
        ["blk", n, mat, e, "weight"] => match (
            parse_index(n),
            parse_index(e),
            EXPERT_MATS.iter().find(|&&x| x == *mat),
        ) {
            (Some(layer), Some(expert), Some(m)) => Mapped::Expert {
                layer,
                expert,
                mat: m,
            },
            _ => Mapped::Keep,
        },
        _ => Mapped::Keep,
    }
}

fn insert_unique(ws: &mut WeightStore, name: String, t: Tensor, from: &str) -> Result<()> {
    if ws.contains(&name) {
        return Err(ModelError::Invalid(format!(
            "tensor `{name}` (from `{from}`) appears more than once in the model"
        )));
    }
    ws.insert(name, t);
    Ok(())
}

/// Build the weight store from all files of a model under canonical names.
pub fn canonical_weights(files: &[GgufFile], spec: &ModelSpec) -> Result<WeightStore> {
    let mut ws = WeightStore::default();
    let mut kv_b = Vec::new();
    for file in files {
        for info in &file.tensors {
            let t = file.tensor(info);
            match classify(&info.name) {
                Mapped::Keep => insert_unique(&mut ws, info.name.clone(), t, &info.name)?,
                Mapped::Expert { layer, expert, mat } => {
                    insert_unique(&mut ws, names::expert(layer, expert, mat), t, &info.name)?
                }
                Mapped::Experts { layer, mat } => {
                    if t.shape.len() != 3 {
                        return Err(ModelError::Invalid(format!(
                            "tensor `{}`: expected 3 dimensions [n_expert, rows, cols], found {:?}",
                            info.name, t.shape
                        )));
                    }
                    if let Some(moe) = &spec.hparams.moe {
                        if t.shape[0] != moe.n_experts {
                            return Err(ModelError::Shape {
                                name: info.name.clone(),
                                expected: vec![moe.n_experts, t.shape[1], t.shape[2]],
                                found: t.shape.clone(),
                            });
                        }
                    }
                    for e in 0..t.shape[0] {
                        let view = t.index0(e)?;
                        insert_unique(&mut ws, names::expert(layer, e, mat), view, &info.name)?;
                    }
                }
                Mapped::KvB { layer } => kv_b.push((layer, info.name.clone(), t)),
            }
        }
    }
    for (layer, name, t) in kv_b {
        let k_name = names::blk(layer, "attn_k_b");
        let v_name = names::blk(layer, "attn_v_b");
        let mla = match &spec.hparams.mla {
            // Newer files carry both forms only if someone added them; prefer the split pair.
            Some(_) if ws.contains(&k_name) && ws.contains(&v_name) => continue,
            Some(mla) => mla,
            // Not an MLA model: keep the tensor as it is.
            None => {
                insert_unique(&mut ws, name.clone(), t, &name)?;
                continue;
            }
        };
        // Check the shape here with checked arithmetic: the dims come from the file.
        let rows = mla
            .qk_nope_dim
            .checked_add(mla.v_head_dim)
            .and_then(|r| r.checked_mul(spec.hparams.n_heads));
        match rows {
            Some(r) if t.shape == [r, mla.kv_lora_rank] => {}
            _ => {
                return Err(ModelError::Shape {
                    name,
                    expected: vec![rows.unwrap_or(usize::MAX), mla.kv_lora_rank],
                    found: t.shape.clone(),
                })
            }
        }
        let (k_b, v_b) = split_kv_b(
            &name,
            &t,
            spec.hparams.n_heads,
            mla.qk_nope_dim,
            mla.v_head_dim,
            mla.kv_lora_rank,
        )?;
        insert_unique(&mut ws, k_name, k_b, &name)?;
        insert_unique(&mut ws, v_name, v_b, &name)?;
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        assert_eq!(classify("token_embd.weight"), Mapped::Keep);
        assert_eq!(classify("blk.3.attn_q.weight"), Mapped::Keep);
        assert_eq!(classify("blk.3.ffn_gate_shexp.weight"), Mapped::Keep);
        assert_eq!(classify("blk.3.exp_probs_b.bias"), Mapped::Keep);
        assert_eq!(classify("blk.3.ffn_gate_inp.weight"), Mapped::Keep);
        assert_eq!(
            classify("blk.12.ffn_down_exps.weight"),
            Mapped::Experts {
                layer: 12,
                mat: "ffn_down"
            }
        );
        assert_eq!(
            classify("blk.1.ffn_up.7.weight"),
            Mapped::Expert {
                layer: 1,
                expert: 7,
                mat: "ffn_up"
            }
        );
        assert_eq!(classify("blk.2.attn_kv_b.weight"), Mapped::KvB { layer: 2 });
        assert_eq!(classify("blk.x.attn_kv_b.weight"), Mapped::Keep);
        assert_eq!(classify("blk.1.ffn_up.+7.weight"), Mapped::Keep);
        assert_eq!(classify("blk.1.ffn_norm.7.weight"), Mapped::Keep);
    }
}
