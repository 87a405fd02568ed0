//! The canonical tensor-name scheme. Both GGUF and Hugging Face checkpoints map onto it at load
//! time, so each architecture has one implementation whatever the file format.
//!
//! The scheme is llama.cpp's (`LLM_TENSOR_*` names, `blk.{layer}.{name}.weight`), with one
//! addition: routed experts are addressed per (layer, expert) as
//! `blk.{layer}.exp.{expert}.ffn_{gate,up,down}.weight`, so an expert cache can later keep or
//! stream single experts. GGUF's 3-D `ffn_*_exps` tensors are split into per-expert views at
//! load (no copy).
//!
//! Canonical shapes are PyTorch order `[out, in]` for matrices (rows contiguous).
//!
//! | canonical | HF | notes |
//! |---|---|---|
//! | `token_embd.weight` | `model.embed_tokens.weight` | `[vocab, hidden]` |
//! | `output_norm.weight` | `model.norm.weight` | |
//! | `output.weight` | `lm_head.weight` | absent when embeddings are tied |
//! | `blk.N.attn_norm.weight` | `...input_layernorm.weight` | |
//! | `blk.N.attn_q/k/v.weight` (+ `.bias`) | `...self_attn.{q,k,v}_proj` | GGUF llama: rows permuted for interleaved rope |
//! | `blk.N.attn_q_norm/attn_k_norm.weight` | `...self_attn.{q,k}_norm` | Qwen3 |
//! | `blk.N.attn_output.weight` | `...self_attn.o_proj` | |
//! | `blk.N.attn_q_a.weight`, `attn_q_a_norm`, `attn_q_b` | `q_a_proj`, `q_a_layernorm`, `q_b_proj` | MLA with q_lora_rank |
//! | `blk.N.attn_kv_a_mqa.weight`, `attn_kv_a_norm` | `kv_a_proj_with_mqa`, `kv_a_layernorm` | MLA |
//! | `blk.N.attn_k_b.weight` `[n_head, kv_lora, qk_nope]` | from `kv_b_proj` | MLA, absorbed form |
//! | `blk.N.attn_v_b.weight` `[n_head, v_dim, kv_lora]` | from `kv_b_proj` | MLA, absorbed form |
//! | `blk.N.ffn_norm.weight` | `post_attention_layernorm` | |
//! | `blk.N.ffn_gate/up/down.weight` | `mlp.{gate,up,down}_proj` | dense FFN |
//! | `blk.N.ffn_gate_inp.weight` | `mlp.gate.weight` / `block_sparse_moe.gate` | router `[n_expert, hidden]` |
//! | `blk.N.exp_probs_b.bias` | `mlp.gate.e_score_correction_bias` | DeepSeek-V3 |
//! | `blk.N.exp.E.ffn_gate/up/down.weight` | `mlp.experts.E.{gate,up,down}_proj` / Mixtral `w1,w3,w2` | routed expert |
//! | `blk.N.ffn_gate/up/down_shexp.weight` | `mlp.shared_experts.{gate,up,down}_proj` | DeepSeek shared experts |
//!
//! DeepSeek-V3 multi-token-prediction layers (HF `model.layers.{n_layers}`) keep their names
//! under `blk.{n_layers}.*` and are loaded but unused for now.

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
pub const OUTPUT: &str = "output.weight";

/// `blk.{layer}.{name}.weight`
pub fn blk(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}.weight")
}

/// `blk.{layer}.{name}.bias`
pub fn blk_bias(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}.bias")
}

/// `blk.{layer}.exp.{expert}.{name}.weight` with name one of `ffn_gate`, `ffn_up`, `ffn_down`.
pub fn expert(layer: usize, expert: usize, name: &str) -> String {
    format!("blk.{layer}.exp.{expert}.{name}.weight")
}
