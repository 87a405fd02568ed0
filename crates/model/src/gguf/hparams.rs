//! GGUF metadata → [`ModelSpec`]. Keys are llama.cpp's (`{arch}.embedding_length`, ...); every
//! value comes from explicit metadata, with the defaults llama.cpp and the converter use.

use super::parse::{GgufFile, Value};
use crate::error::{ModelError, Result};
use crate::spec::{
    Arch, Gating, HParams, MlaParams, ModelSpec, MoeParams, RopeParams, RopeScaling, RopeStyle,
};

/// Typed access to `{arch}.*` keys.
struct Meta<'a> {
    file: &'a GgufFile,
    prefix: &'a str,
}

impl<'a> Meta<'a> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.prefix)
    }

    fn raw(&self, full: &str) -> Option<&'a Value> {
        self.file.metadata.get(full)
    }

    fn bad(full: &str, msg: impl Into<String>) -> ModelError {
        ModelError::BadKey {
            key: full.to_string(),
            msg: msg.into(),
        }
    }

    /// An unsigned integer under a full key. Per-layer arrays are accepted when all their
    /// entries agree (llama.cpp allows arrays for some counts).
    fn usize_full(&self, full: &str) -> Result<Option<usize>> {
        let Some(v) = self.raw(full) else {
            return Ok(None);
        };
        let as_usize = |v: &Value| v.as_u64().and_then(|x| usize::try_from(x).ok());
        if let Some(items) = v.as_array() {
            let vals: Option<Vec<usize>> = items.iter().map(as_usize).collect();
            let vals =
                vals.ok_or_else(|| Self::bad(full, "expected an array of non-negative integers"))?;
            return match vals.split_first() {
                None => Err(Self::bad(full, "empty array")),
                Some((first, rest)) if rest.iter().all(|x| x == first) => Ok(Some(*first)),
                Some(_) => Err(Self::bad(
                    full,
                    format!("per-layer values {vals:?} differ; not supported"),
                )),
            };
        }
        as_usize(v).map(Some).ok_or_else(|| {
            Self::bad(
                full,
                format!("expected a non-negative integer, found {}", v.type_name()),
            )
        })
    }

    fn usize_opt(&self, k: &str) -> Result<Option<usize>> {
        self.usize_full(&self.key(k))
    }

    fn usize_req(&self, k: &str) -> Result<usize> {
        let full = self.key(k);
        self.usize_full(&full)?.ok_or(ModelError::MissingKey(full))
    }

    fn f32_opt(&self, k: &str) -> Result<Option<f32>> {
        let full = self.key(k);
        match self.raw(&full) {
            None => Ok(None),
            Some(v) => match v.as_f32() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(Self::bad(
                    &full,
                    format!("expected a finite number, found {v:?}"),
                )),
            },
        }
    }

    fn f32_req(&self, k: &str) -> Result<f32> {
        self.f32_opt(k)?
            .ok_or_else(|| ModelError::MissingKey(self.key(k)))
    }

    fn bool_opt(&self, k: &str) -> Result<Option<bool>> {
        let full = self.key(k);
        match self.raw(&full) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                Self::bad(&full, format!("expected a bool, found {}", v.type_name()))
            }),
        }
    }

    fn str_opt(&self, full: &str) -> Result<Option<&'a str>> {
        match self.raw(full) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                Self::bad(full, format!("expected a string, found {}", v.type_name()))
            }),
        }
    }

    fn u32_full(&self, full: &str) -> Result<Option<u32>> {
        match self.usize_full(full)? {
            None => Ok(None),
            Some(x) => u32::try_from(x)
                .map(Some)
                .map_err(|_| Self::bad(full, format!("{x} does not fit in u32"))),
        }
    }
}

fn positive(key: String, v: usize) -> Result<usize> {
    if v == 0 {
        return Err(ModelError::BadKey {
            key,
            msg: "must be positive".into(),
        });
    }
    Ok(v)
}

/// Read the architecture and hyperparameters from the metadata of the first file of a model.
/// `token_embd_rows` is the vocabulary size implied by `token_embd.weight`, the last resort when
/// neither `{arch}.vocab_size` nor a token list is present.
pub fn spec_from_gguf(file: &GgufFile, token_embd_rows: Option<usize>) -> Result<ModelSpec> {
    let arch_key = "general.architecture";
    let arch_name = match file.metadata.get(arch_key) {
        None => return Err(ModelError::MissingKey(arch_key.into())),
        Some(v) => v.as_str().ok_or_else(|| ModelError::BadKey {
            key: arch_key.into(),
            msg: format!("expected a string, found {}", v.type_name()),
        })?,
    };
    let m = Meta {
        file,
        prefix: arch_name,
    };
    let arch = match arch_name {
        "llama" => {
            if m.usize_opt("expert_count")?.unwrap_or(0) > 0 {
                Arch::Mixtral
            } else {
                Arch::Llama
            }
        }
        "qwen2" => Arch::Qwen2,
        "qwen3moe" => Arch::Qwen3Moe,
        "deepseek2" => Arch::Deepseek2,
        other => return Err(ModelError::UnknownArch(other.to_string())),
    };

    let hidden = positive(m.key("embedding_length"), m.usize_req("embedding_length")?)?;
    let n_layers = positive(m.key("block_count"), m.usize_req("block_count")?)?;
    let n_heads = positive(
        m.key("attention.head_count"),
        m.usize_req("attention.head_count")?,
    )?;
    let context_length = m.usize_req("context_length")?;
    let rms_eps = m.f32_req("attention.layer_norm_rms_epsilon")?;
    let theta = m.f32_opt("rope.freq_base")?.unwrap_or(10000.0);
    let n_kv_heads_meta = m.usize_opt("attention.head_count_kv")?.unwrap_or(n_heads);
    let key_length = m.usize_opt("attention.key_length")?;
    let value_length = m.usize_opt("attention.value_length")?;
    let rope_dims_meta = m.usize_opt("rope.dimension_count")?;

    let vocab_size = match m.usize_opt("vocab_size")? {
        Some(v) => v,
        None => match file.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => tokens.len(),
            Some(v) => {
                return Err(ModelError::BadKey {
                    key: "tokenizer.ggml.tokens".into(),
                    msg: format!("expected an array, found {}", v.type_name()),
                })
            }
            None => token_embd_rows.ok_or_else(|| ModelError::MissingKey(m.key("vocab_size")))?,
        },
    };
    let vocab_size = positive(m.key("vocab_size"), vocab_size)?;

    // MLA (DeepSeek-V2/V3).
    let mla = if arch == Arch::Deepseek2 {
        Some(mla_params(&m, key_length, value_length, rope_dims_meta)?)
    } else {
        None
    };

    let (head_dim, n_kv_heads) = match &mla {
        // MLA decompresses to full multi-head attention; newer converters write
        // head_count_kv = 1 (the absorbed MQA view), which is not what the model computes.
        Some(p) => (p.qk_nope_dim + p.qk_rope_dim, n_heads),
        None => {
            let hd = match key_length {
                Some(k) => positive(m.key("attention.key_length"), k)?,
                None => {
                    if hidden % n_heads != 0 {
                        return Err(ModelError::BadKey {
                            key: m.key("attention.head_count"),
                            msg: format!(
                                "embedding_length {hidden} is not divisible by {n_heads} heads"
                            ),
                        });
                    }
                    hidden / n_heads
                }
            };
            if let Some(v) = value_length {
                if v != hd {
                    return Err(ModelError::BadKey {
                        key: m.key("attention.value_length"),
                        msg: format!(
                            "value length {v} differs from key length {hd}; not supported for {}",
                            arch.name()
                        ),
                    });
                }
            }
            let kv = positive(m.key("attention.head_count_kv"), n_kv_heads_meta)?;
            if n_heads % kv != 0 {
                return Err(ModelError::BadKey {
                    key: m.key("attention.head_count_kv"),
                    msg: format!("{n_heads} heads are not a multiple of {kv} kv heads"),
                });
            }
            (hd, kv)
        }
    };

    let rope_dims = match &mla {
        Some(p) => p.qk_rope_dim,
        None => rope_dims_meta.unwrap_or(head_dim),
    };
    if rope_dims == 0 || rope_dims % 2 != 0 || rope_dims > head_dim {
        return Err(ModelError::BadKey {
            key: m.key("rope.dimension_count"),
            msg: format!("{rope_dims} rotated dims must be even, positive and at most the head dim {head_dim}"),
        });
    }
    let style = match arch {
        // The converter permutes llama q/k rows so adjacent pairs rotate; DeepSeek's rope
        // dims are stored interleaved as in the HF checkpoint.
        Arch::Llama | Arch::Mixtral | Arch::Deepseek2 => RopeStyle::Interleaved,
        Arch::Qwen2 | Arch::Qwen3Moe => RopeStyle::Neox,
    };
    let scaling = rope_scaling(&m, arch, context_length)?;

    let moe = moe_params(&m, arch)?;
    let ffn_hidden = match (m.usize_opt("feed_forward_length")?, &moe) {
        (Some(f), _) => f,
        (None, Some(p)) if arch == Arch::Qwen3Moe || arch == Arch::Mixtral => p.expert_ffn,
        (None, _) => return Err(ModelError::MissingKey(m.key("feed_forward_length"))),
    };
    if let Some(p) = &moe {
        if p.first_dense > n_layers {
            return Err(ModelError::BadKey {
                key: m.key("leading_dense_block_count"),
                msg: format!("{} exceeds the block count {n_layers}", p.first_dense),
            });
        }
    }

    let tokenizer = m
        .str_opt("tokenizer.ggml.model")?
        .unwrap_or("none")
        .to_string();
    let bos_token_id = m.u32_full("tokenizer.ggml.bos_token_id")?;
    let eos_token_ids = m
        .u32_full("tokenizer.ggml.eos_token_id")?
        .into_iter()
        .collect();
    let name = match m.str_opt("general.name")? {
        Some(n) => n.to_string(),
        None => file
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };

    Ok(ModelSpec {
        arch,
        hparams: HParams {
            vocab_size,
            hidden,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_hidden,
            rms_eps,
            rope: RopeParams {
                theta,
                dims: rope_dims,
                style,
                scaling,
            },
            context_length,
            moe,
            mla,
        },
        name,
        format: format!("GGUF v{}", file.version),
        tokenizer,
        bos_token_id,
        eos_token_ids,
    })
}

/// DeepSeek MLA dimensions. Two layouts exist:
/// - newer converters: `key_length = kv_lora + qk_rope`, `value_length = kv_lora` (the
///   absorbed MQA view) plus `key_length_mla = qk_nope + qk_rope`, `value_length_mla = v_dim`;
/// - older files: `key_length = qk_nope + qk_rope`, `value_length = v_dim`, no `*_mla` keys.
///
/// `qk_rope` is `rope.dimension_count` in both.
fn mla_params(
    m: &Meta<'_>,
    key_length: Option<usize>,
    value_length: Option<usize>,
    rope_dims: Option<usize>,
) -> Result<MlaParams> {
    let kv_lora_rank = positive(
        m.key("attention.kv_lora_rank"),
        m.usize_req("attention.kv_lora_rank")?,
    )?;
    let q_lora_rank = m.usize_opt("attention.q_lora_rank")?.filter(|&r| r > 0);
    let qk_rope_dim =
        rope_dims.ok_or_else(|| ModelError::MissingKey(m.key("rope.dimension_count")))?;
    let k_mla = m.usize_opt("attention.key_length_mla")?;
    let v_mla = m.usize_opt("attention.value_length_mla")?;
    let (k_key, k_full, v_key, v_full) = match (k_mla, v_mla) {
        (Some(k), Some(v)) => (
            "attention.key_length_mla",
            k,
            "attention.value_length_mla",
            v,
        ),
        (None, None) => (
            "attention.key_length",
            key_length.ok_or_else(|| ModelError::MissingKey(m.key("attention.key_length")))?,
            "attention.value_length",
            value_length.ok_or_else(|| ModelError::MissingKey(m.key("attention.value_length")))?,
        ),
        (Some(_), None) => return Err(ModelError::MissingKey(m.key("attention.value_length_mla"))),
        (None, Some(_)) => return Err(ModelError::MissingKey(m.key("attention.key_length_mla"))),
    };
    let qk_nope_dim = k_full
        .checked_sub(qk_rope_dim)
        .filter(|&n| n > 0)
        .ok_or_else(|| ModelError::BadKey {
            key: m.key(k_key),
            msg: format!(
                "key length {k_full} must exceed the rope dims {qk_rope_dim} (qk_nope = key length - rope dims)"
            ),
        })?;
    let v_head_dim = positive(m.key(v_key), v_full)?;
    Ok(MlaParams {
        q_lora_rank,
        kv_lora_rank,
        qk_nope_dim,
        qk_rope_dim,
        v_head_dim,
    })
}

fn rope_scaling(m: &Meta<'_>, arch: Arch, context_length: usize) -> Result<RopeScaling> {
    let type_key = m.key("rope.scaling.type");
    let kind = m.str_opt(&type_key)?;
    let factor = m.f32_opt("rope.scaling.factor")?;
    let need_factor = || -> Result<f32> {
        let f = factor.ok_or_else(|| ModelError::MissingKey(m.key("rope.scaling.factor")))?;
        if f <= 0.0 {
            return Err(ModelError::BadKey {
                key: m.key("rope.scaling.factor"),
                msg: format!("{f} must be positive"),
            });
        }
        Ok(f)
    };
    Ok(match kind {
        None => {
            // Old files: `{arch}.rope.scale_linear`.
            match m.f32_opt("rope.scale_linear")? {
                Some(f) if f > 0.0 && f != 1.0 => RopeScaling::Linear { factor: f },
                _ => RopeScaling::None,
            }
        }
        Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear {
            factor: need_factor()?,
        },
        Some("yarn") => {
            let factor = need_factor()?;
            let original_context = m
                .usize_opt("rope.scaling.original_context_length")?
                .unwrap_or(context_length);
            // HF defaults: mscale 1, mscale_all_dim 0 (no softmax correction).
            let (mscale, mscale_all_dim) = match m.f32_opt("rope.scaling.yarn_log_multiplier")? {
                None => (1.0, 0.0),
                Some(log_mul) => {
                    // The converter writes 0.1 * mscale_all_dim for DeepSeek
                    // (llama.cpp divides by 0.1 again). HF's `mscale` is not stored; llama.cpp
                    // assumes mscale == mscale_all_dim for DeepSeek, true of V2, V2-Lite and
                    // V3/R1 configs, so we do too.
                    if arch == Arch::Deepseek2 {
                        let all = log_mul / 0.1;
                        (all, all)
                    } else {
                        (1.0, log_mul)
                    }
                }
            };
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast: m.f32_opt("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                beta_slow: m.f32_opt("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                mscale,
                mscale_all_dim,
            }
        }
        Some(other) => {
            return Err(ModelError::BadKey {
                key: type_key,
                msg: format!("rope scaling `{other}` is not supported (none, linear, yarn)"),
            })
        }
    })
}

fn moe_params(m: &Meta<'_>, arch: Arch) -> Result<Option<MoeParams>> {
    let n_experts = m.usize_opt("expert_count")?.unwrap_or(0);
    if n_experts == 0 {
        if arch == Arch::Qwen3Moe {
            return Err(ModelError::MissingKey(m.key("expert_count")));
        }
        return Ok(None);
    }
    if matches!(arch, Arch::Llama | Arch::Qwen2) {
        return Ok(None);
    }
    let n_experts_used = m.usize_req("expert_used_count")?;
    if n_experts_used == 0 || n_experts_used > n_experts {
        return Err(ModelError::BadKey {
            key: m.key("expert_used_count"),
            msg: format!("{n_experts_used} must be between 1 and the expert count {n_experts}"),
        });
    }
    let expert_ffn = match (m.usize_opt("expert_feed_forward_length")?, arch) {
        (Some(f), _) => f,
        // Mixtral GGUFs carry the expert width as feed_forward_length.
        (None, Arch::Mixtral) => m.usize_req("feed_forward_length")?,
        (None, _) => m.usize_req("expert_feed_forward_length")?,
    };
    let expert_ffn = positive(m.key("expert_feed_forward_length"), expert_ffn)?;
    let gating_key = m.key("expert_gating_func");
    let gating = match m.usize_opt("expert_gating_func")? {
        // 0 ("none") is what files without the key get in llama.cpp: softmax.
        None | Some(0) | Some(1) => Gating::Softmax,
        Some(2) => Gating::Sigmoid,
        Some(other) => {
            return Err(ModelError::BadKey {
                key: gating_key,
                msg: format!(
                    "expert gating function {other} is not supported (1 = softmax, 2 = sigmoid)"
                ),
            })
        }
    };
    let norm = m.bool_opt("expert_weights_norm")?;
    let scale = m.f32_opt("expert_weights_scale")?;
    let (n_shared, norm_topk, routed_scale) = match arch {
        // The converter writes expert_weights_norm only when norm_topk_prob is true.
        Arch::Deepseek2 => (
            m.usize_opt("expert_shared_count")?.unwrap_or(0),
            norm.unwrap_or(false),
            scale.unwrap_or(1.0),
        ),
        // llama.cpp always renormalises for Mixtral and Qwen3-MoE (the converter writes no key).
        _ => (0, norm.unwrap_or(true), scale.unwrap_or(1.0)),
    };
    let n_group = m.usize_opt("expert_group_count")?.unwrap_or(1).max(1);
    let topk_group = m.usize_opt("expert_group_used_count")?.unwrap_or(1).max(1);
    if topk_group > n_group || n_experts % n_group != 0 {
        return Err(ModelError::BadKey {
            key: m.key("expert_group_used_count"),
            msg: format!(
                "{topk_group} of {n_group} groups over {n_experts} experts is not a valid grouping"
            ),
        });
    }
    Ok(Some(MoeParams {
        n_experts,
        n_experts_used,
        n_shared,
        expert_ffn,
        gating,
        norm_topk,
        routed_scale,
        n_group,
        topk_group,
        first_dense: m.usize_opt("leading_dense_block_count")?.unwrap_or(0),
    }))
}
