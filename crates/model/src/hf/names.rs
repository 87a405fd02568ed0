//! Hugging Face tensor names → the canonical scheme of [`crate::names`].

use crate::names;

/// What to do with one HF tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Store under this canonical name.
    Canon(String),
    /// DeepSeek `kv_b_proj`: split into `attn_k_b` + `attn_v_b`.
    KvB { layer: usize },
    /// Fused experts as transformers 5 holds them in memory (and writes with
    /// `save_original_format=False`): `[n_expert, 2 * ffn, hidden]`, gate rows first.
    FusedGateUp { layer: usize },
    /// Fused experts' down projections: `[n_expert, hidden, ffn]`.
    FusedDown { layer: usize },
    /// A buffer that is not a weight (e.g. `rotary_emb.inv_freq`).
    Skip,
    /// Not a tensor we know: keep it under its HF name.
    Keep,
}

/// True for tensors that are recomputed, not loaded.
pub fn is_skipped(hf: &str) -> bool {
    hf.ends_with(".inv_freq")
        || hf.ends_with("rotary_emb._cos_cached")
        || hf.ends_with("rotary_emb._sin_cached")
}

/// Per-layer modules with a `.weight` (and possibly `.bias`) → canonical base name.
const LAYER_MODULES: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("self_attn.q_a_proj", "attn_q_a"),
    ("self_attn.q_a_layernorm", "attn_q_a_norm"),
    ("self_attn.q_b_proj", "attn_q_b"),
    ("self_attn.kv_a_proj_with_mqa", "attn_kv_a_mqa"),
    ("self_attn.kv_a_layernorm", "attn_kv_a_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("mlp.gate", "ffn_gate_inp"),
    ("block_sparse_moe.gate", "ffn_gate_inp"),
    ("mlp.shared_experts.gate_proj", "ffn_gate_shexp"),
    ("mlp.shared_experts.up_proj", "ffn_up_shexp"),
    ("mlp.shared_experts.down_proj", "ffn_down_shexp"),
    // DeepSeek-V3 multi-token prediction layer (llama.cpp's `blk.N.nextn.*`).
    ("embed_tokens", "nextn.embed_tokens"),
    ("enorm", "nextn.enorm"),
    ("hnorm", "nextn.hnorm"),
    ("eh_proj", "nextn.eh_proj"),
    ("shared_head.norm", "nextn.shared_head_norm"),
    ("shared_head.head", "nextn.shared_head_head"),
];

/// Per-expert projections → canonical `ffn_*`.
const EXPERT_MODULES: &[(&str, &str)] = &[
    ("gate_proj", "ffn_gate"),
    ("up_proj", "ffn_up"),
    ("down_proj", "ffn_down"),
    // Mixtral
    ("w1", "ffn_gate"),
    ("w3", "ffn_up"),
    ("w2", "ffn_down"),
];

/// A decimal index without sign or leading zeros.
fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Map one HF tensor name.
pub fn map_name(hf: &str) -> Target {
    if is_skipped(hf) {
        return Target::Skip;
    }
    match hf {
        "model.embed_tokens.weight" => return Target::Canon(names::TOKEN_EMBD.into()),
        "model.norm.weight" => return Target::Canon(names::OUTPUT_NORM.into()),
        "lm_head.weight" => return Target::Canon(names::OUTPUT.into()),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return Target::Keep;
    };
    let Some((idx, rest)) = rest.split_once('.') else {
        return Target::Keep;
    };
    let Some(layer) = parse_index(idx) else {
        return Target::Keep;
    };
    map_layer(layer, rest).unwrap_or(Target::Keep)
}

fn map_layer(layer: usize, rest: &str) -> Option<Target> {
    match rest {
        "self_attn.kv_b_proj.weight" => return Some(Target::KvB { layer }),
        "mlp.gate.e_score_correction_bias" => {
            return Some(Target::Canon(names::blk_bias(layer, "exp_probs_b")))
        }
        _ => {}
    }
    for prefix in ["mlp.experts.", "block_sparse_moe.experts."] {
        if let Some(e) = rest.strip_prefix(prefix) {
            return map_expert(layer, e);
        }
    }
    let (module, kind) = rest.rsplit_once('.')?;
    let canon = LAYER_MODULES
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, c)| *c)?;
    match kind {
        "weight" => Some(Target::Canon(names::blk(layer, canon))),
        "bias" => Some(Target::Canon(names::blk_bias(layer, canon))),
        _ => None,
    }
}

/// `E.{gate,up,down}_proj.weight`, Mixtral `E.w{1,3,2}.weight`, or fused `gate_up_proj` /
/// `down_proj` (with or without `.weight`).
fn map_expert(layer: usize, rest: &str) -> Option<Target> {
    match rest {
        "gate_up_proj" | "gate_up_proj.weight" => return Some(Target::FusedGateUp { layer }),
        "down_proj" | "down_proj.weight" => return Some(Target::FusedDown { layer }),
        _ => {}
    }
    let (idx, rest) = rest.split_once('.')?;
    let expert = parse_index(idx)?;
    let module = rest.strip_suffix(".weight")?;
    let canon = EXPERT_MODULES
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, c)| *c)?;
    Some(Target::Canon(names::expert(layer, expert, canon)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> Target {
        Target::Canon(s.to_string())
    }

    #[test]
    fn maps_the_table() {
        assert_eq!(
            map_name("model.embed_tokens.weight"),
            canon("token_embd.weight")
        );
        assert_eq!(map_name("lm_head.weight"), canon("output.weight"));
        assert_eq!(
            map_name("model.layers.3.self_attn.q_proj.bias"),
            canon("blk.3.attn_q.bias")
        );
        assert_eq!(
            map_name("model.layers.0.mlp.gate.weight"),
            canon("blk.0.ffn_gate_inp.weight")
        );
        assert_eq!(
            map_name("model.layers.0.mlp.gate_proj.weight"),
            canon("blk.0.ffn_gate.weight")
        );
        assert_eq!(
            map_name("model.layers.1.block_sparse_moe.experts.7.w3.weight"),
            canon("blk.1.exp.7.ffn_up.weight")
        );
        assert_eq!(
            map_name("model.layers.1.mlp.gate.e_score_correction_bias"),
            canon("blk.1.exp_probs_b.bias")
        );
        assert_eq!(
            map_name("model.layers.61.shared_head.head.weight"),
            canon("blk.61.nextn.shared_head_head.weight")
        );
        assert_eq!(
            map_name("model.layers.2.mlp.experts.gate_up_proj"),
            Target::FusedGateUp { layer: 2 }
        );
        assert_eq!(
            map_name("model.layers.2.self_attn.kv_b_proj.weight"),
            Target::KvB { layer: 2 }
        );
        assert_eq!(
            map_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            Target::Skip
        );
        for keep in [
            "model.layers.01.input_layernorm.weight",
            "model.layers.x.input_layernorm.weight",
            "model.layers.0.mlp.experts.1.w4.weight",
            "model.layers.0.something.weight",
            "vision_tower.weight",
            "model.layers.99999999999999999999999.input_layernorm.weight",
        ] {
            assert_eq!(map_name(keep), Target::Keep, "{keep}");
        }
    }
}
