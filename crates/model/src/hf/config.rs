//! `config.json` (and `generation_config.json`) → [`ModelSpec`].
//!
//! Keys are the ones real hub checkpoints use (`rope_theta` + `rope_scaling`), plus the
//! `rope_parameters` object transformers 5 writes with `save_pretrained`. Where a key is
//! absent we use the default of the transformers config class for that architecture, since
//! that is what transformers itself would run; every number is validated and a bad one is a
//! [`ModelError::BadKey`] naming the key.

use crate::error::{ModelError, Result};
use crate::spec::{
    Arch, Gating, HParams, MlaParams, ModelSpec, MoeParams, RopeParams, RopeScaling, RopeStyle,
};
use serde_json::{Map, Value};
use std::path::Path;

/// The Hugging Face model class, finer than [`Arch`] where defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfArch {
    Llama,
    Qwen2,
    Qwen3Moe,
    Mixtral,
    DeepseekV2,
    DeepseekV3,
}

impl HfArch {
    /// From `architectures[0]` (e.g. `LlamaForCausalLM`) or, without it, `model_type`.
    fn from_config(cfg: &Map<String, Value>) -> Result<HfArch> {
        if let Some(archs) = cfg.get("architectures").filter(|v| !v.is_null()) {
            let first = archs
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .ok_or_else(|| bad("architectures", "expected a non-empty list of class names"))?;
            return Ok(match first {
                "LlamaForCausalLM" => HfArch::Llama,
                "Qwen2ForCausalLM" => HfArch::Qwen2,
                "Qwen3MoeForCausalLM" => HfArch::Qwen3Moe,
                "MixtralForCausalLM" => HfArch::Mixtral,
                "DeepseekV2ForCausalLM" => HfArch::DeepseekV2,
                "DeepseekV3ForCausalLM" => HfArch::DeepseekV3,
                other => return Err(ModelError::UnknownArch(other.to_string())),
            });
        }
        let mt = match cfg.get("model_type") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(bad("model_type", "expected a string")),
            None => return Err(ModelError::MissingKey("architectures".into())),
        };
        Ok(match mt {
            "llama" => HfArch::Llama,
            "qwen2" => HfArch::Qwen2,
            "qwen3_moe" => HfArch::Qwen3Moe,
            "mixtral" => HfArch::Mixtral,
            "deepseek_v2" => HfArch::DeepseekV2,
            "deepseek_v3" => HfArch::DeepseekV3,
            other => return Err(ModelError::UnknownArch(other.to_string())),
        })
    }

    pub fn arch(self) -> Arch {
        match self {
            HfArch::Llama => Arch::Llama,
            HfArch::Qwen2 => Arch::Qwen2,
            HfArch::Qwen3Moe => Arch::Qwen3Moe,
            HfArch::Mixtral => Arch::Mixtral,
            HfArch::DeepseekV2 | HfArch::DeepseekV3 => Arch::Deepseek2,
        }
    }

    fn is_deepseek(self) -> bool {
        matches!(self, HfArch::DeepseekV2 | HfArch::DeepseekV3)
    }
}

/// Everything the loader needs from `config.json`.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub hf_arch: HfArch,
    pub hparams: HParams,
    pub tie_word_embeddings: bool,
    /// `quantization_config.weight_block_size` (FP8 checkpoints), `[rows, cols]`.
    pub fp8_block: [usize; 2],
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

fn bad(key: &str, msg: impl Into<String>) -> ModelError {
    ModelError::BadKey {
        key: key.to_string(),
        msg: msg.into(),
    }
}

/// Typed access to one JSON object, with key paths in error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    /// Prefix for error messages, e.g. `rope_scaling.`.
    prefix: &'a str,
}

impl<'a> Obj<'a> {
    fn key(&self, k: &str) -> String {
        format!("{}{}", self.prefix, k)
    }

    /// The value, treating JSON `null` as absent.
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| {
                    bad(
                        &self.key(k),
                        format!("expected a non-negative integer, found {n}"),
                    )
                })?,
            other => {
                return Err(bad(
                    &self.key(k),
                    format!("expected a non-negative integer, found {other}"),
                ))
            }
        };
        usize::try_from(n)
            .map(Some)
            .map_err(|_| bad(&self.key(k), format!("{n} is too large")))
    }

    fn req_usize(&self, k: &str) -> Result<usize> {
        self.opt_usize(k)?
            .ok_or_else(|| ModelError::MissingKey(self.key(k)))
    }

    /// A required size that must be at least 1.
    fn req_pos(&self, k: &str) -> Result<usize> {
        positive(&self.key(k), self.req_usize(k)?)
    }

    fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let f = v
            .as_f64()
            .ok_or_else(|| bad(&self.key(k), format!("expected a number, found {v}")))?;
        let f = f as f32;
        if !f.is_finite() {
            return Err(bad(&self.key(k), format!("{v} is not a finite f32")));
        }
        Ok(Some(f))
    }

    fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(bad(
                &self.key(k),
                format!("expected true or false, found {v}"),
            )),
        }
    }

    fn opt_str(&self, k: &str) -> Result<Option<&'a str>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(bad(&self.key(k), format!("expected a string, found {v}"))),
        }
    }

    fn opt_obj(&self, k: &str) -> Result<Option<&'a Map<String, Value>>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(bad(&self.key(k), format!("expected an object, found {v}"))),
        }
    }
}

fn positive(key: &str, n: usize) -> Result<usize> {
    if n == 0 {
        return Err(bad(key, "must be at least 1"));
    }
    Ok(n)
}

fn positive_f32(key: &str, f: f32) -> Result<f32> {
    if f <= 0.0 {
        return Err(bad(key, format!("must be positive, found {f}")));
    }
    Ok(f)
}

/// Token ids: an integer, a list of integers, or null.
fn token_ids(key: &str, v: Option<&Value>) -> Result<Vec<u32>> {
    let one = |v: &Value| -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(key, format!("expected a token id, found {v}")))
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

fn read_json(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match serde_json::from_slice::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ModelError::Hf {
            path: path.to_path_buf(),
            msg: "expected a JSON object".into(),
        }),
        Err(e) => Err(ModelError::Hf {
            path: path.to_path_buf(),
            msg: format!("not valid JSON: {e}"),
        }),
    }
}

/// Read `config.json` (and `generation_config.json` if present) from a checkpoint directory.
pub fn read_config(dir: &Path) -> Result<HfConfig> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(ModelError::Hf {
            path: dir.to_path_buf(),
            msg: "directory has no config.json".into(),
        });
    }
    let cfg = read_json(&path)?;
    let gen_path = dir.join("generation_config.json");
    let gen = if gen_path.is_file() {
        Some(read_json(&gen_path)?)
    } else {
        None
    };
    // Name the file in key errors.
    parse_config(&cfg, gen.as_ref()).map_err(|e| match e {
        ModelError::MissingKey(_) | ModelError::BadKey { .. } | ModelError::UnknownArch(_) => {
            ModelError::Hf {
                path: path.clone(),
                msg: e.to_string(),
            }
        }
        other => other,
    })
}

/// Read the [`ModelSpec`] of a checkpoint directory without touching its weights.
pub fn read_spec(dir: &Path) -> Result<ModelSpec> {
    Ok(spec_from(dir, &read_config(dir)?))
}

pub(crate) fn spec_from(dir: &Path, cfg: &HfConfig) -> ModelSpec {
    let name = dir
        .canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let tokenizer = if dir.join("tokenizer.json").is_file() {
        "tokenizer.json"
    } else {
        "none"
    };
    ModelSpec {
        arch: cfg.hf_arch.arch(),
        hparams: cfg.hparams.clone(),
        name,
        format: "Hugging Face safetensors".into(),
        tokenizer: tokenizer.into(),
        bos_token_id: cfg.bos_token_id,
        eos_token_ids: cfg.eos_token_ids.clone(),
    }
}

/// Parse a `config.json` object (and optionally `generation_config.json`).
pub fn parse_config(
    cfg: &Map<String, Value>,
    gen: Option<&Map<String, Value>>,
) -> Result<HfConfig> {
    let hf_arch = HfArch::from_config(cfg)?;
    let c = Obj {
        map: cfg,
        prefix: "",
    };

    let vocab_size = c.req_pos("vocab_size")?;
    let hidden = c.req_pos("hidden_size")?;
    let n_layers = c.req_pos("num_hidden_layers")?;
    let n_heads = c.req_pos("num_attention_heads")?;
    let n_kv_heads = positive(
        "num_key_value_heads",
        c.opt_usize("num_key_value_heads")?.unwrap_or(n_heads),
    )?;
    if n_heads % n_kv_heads != 0 {
        return Err(bad(
            "num_key_value_heads",
            format!("{n_kv_heads} does not divide num_attention_heads {n_heads}"),
        ));
    }
    let ffn_hidden = c.req_pos("intermediate_size")?;
    let default_eps = if hf_arch == HfArch::Mixtral {
        1e-5
    } else {
        1e-6
    };
    let rms_eps = positive_f32(
        "rms_norm_eps",
        c.opt_f32("rms_norm_eps")?.unwrap_or(default_eps),
    )?;
    let context_length = c.req_pos("max_position_embeddings")?;

    let mla = if hf_arch.is_deepseek() {
        Some(parse_mla(&c)?)
    } else {
        None
    };

    // Per-head q/k/v width. DeepSeek's config `head_dim` is the rope part only; for MLA the
    // full query/key head is `qk_nope + qk_rope`.
    let head_dim = match &mla {
        Some(m) => m.qk_nope_dim + m.qk_rope_dim,
        None => match c.opt_usize("head_dim")? {
            Some(h) => positive("head_dim", h)?,
            None => {
                if hidden % n_heads != 0 {
                    return Err(bad(
                        "hidden_size",
                        format!(
                            "{hidden} is not divisible by num_attention_heads {n_heads} (and no head_dim is given)"
                        ),
                    ));
                }
                hidden / n_heads
            }
        },
    };

    // Rope: DeepSeek rotates adjacent pairs of its qk_rope part (V2: complex multiplication;
    // V3: `rope_interleave`, default true); the Llama family's HF weights use rotate_half.
    let (rope_dims, style) = match (&mla, hf_arch) {
        (Some(m), HfArch::DeepseekV3) => {
            let interleave = c.opt_bool("rope_interleave")?.unwrap_or(true);
            let style = if interleave {
                RopeStyle::Interleaved
            } else {
                RopeStyle::Neox
            };
            (m.qk_rope_dim, style)
        }
        (Some(m), _) => (m.qk_rope_dim, RopeStyle::Interleaved),
        (None, _) => (head_dim, RopeStyle::Neox),
    };
    if rope_dims % 2 != 0 {
        return Err(bad(
            if mla.is_some() {
                "qk_rope_head_dim"
            } else {
                "head_dim"
            },
            format!("rotary dimension {rope_dims} must be even"),
        ));
    }
    let (theta, scaling) = parse_rope(&c, context_length)?;

    let moe = parse_moe(&c, hf_arch, n_layers, ffn_hidden)?;

    let hparams = HParams {
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
    };

    let tie_word_embeddings = c.opt_bool("tie_word_embeddings")?.unwrap_or(false);

    let mut fp8_block = [128, 128];
    if let Some(q) = c.opt_obj("quantization_config")? {
        let q = Obj {
            map: q,
            prefix: "quantization_config.",
        };
        if let Some(v) = q.get("weight_block_size") {
            let key = q.key("weight_block_size");
            let a = v
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| bad(&key, format!("expected [rows, cols], found {v}")))?;
            for (slot, x) in fp8_block.iter_mut().zip(a) {
                let n = x
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(&key, format!("expected positive integers, found {v}")))?;
                *slot = n;
            }
        }
    }

    // Special tokens: config.json, then generation_config.json (which often lists more eos).
    let mut bos_token_id = token_ids("bos_token_id", c.get("bos_token_id"))?
        .first()
        .copied();
    let mut eos_token_ids = token_ids("eos_token_id", c.get("eos_token_id"))?;
    if let Some(g) = gen {
        let g = Obj {
            map: g,
            prefix: "generation_config.",
        };
        if bos_token_id.is_none() {
            bos_token_id = token_ids(&g.key("bos_token_id"), g.get("bos_token_id"))?
                .first()
                .copied();
        }
        for id in token_ids(&g.key("eos_token_id"), g.get("eos_token_id"))? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }

    Ok(HfConfig {
        hf_arch,
        hparams,
        tie_word_embeddings,
        fp8_block,
        bos_token_id,
        eos_token_ids,
    })
}

fn parse_mla(c: &Obj) -> Result<MlaParams> {
    let q_lora_rank = match c.opt_usize("q_lora_rank")? {
        Some(r) => Some(positive("q_lora_rank", r)?),
        None => None,
    };
    Ok(MlaParams {
        q_lora_rank,
        kv_lora_rank: c.req_pos("kv_lora_rank")?,
        qk_nope_dim: c.req_pos("qk_nope_head_dim")?,
        qk_rope_dim: c.req_pos("qk_rope_head_dim")?,
        v_head_dim: c.req_pos("v_head_dim")?,
    })
}

/// `rope_theta` + `rope_scaling` (hub layout) or transformers 5's `rope_parameters`.
fn parse_rope(c: &Obj, context_length: usize) -> Result<(f32, RopeScaling)> {
    let params = c.opt_obj("rope_parameters")?;
    let p = params.map(|m| Obj {
        map: m,
        prefix: "rope_parameters.",
    });
    let theta = match c.opt_f32("rope_theta")? {
        Some(t) => t,
        None => match &p {
            Some(p) => p.opt_f32("rope_theta")?.unwrap_or(10000.0),
            None => 10000.0,
        },
    };
    let theta = positive_f32("rope_theta", theta)?;
    let scaling = match c.opt_obj("rope_scaling")? {
        Some(s) => parse_scaling(
            &Obj {
                map: s,
                prefix: "rope_scaling.",
            },
            context_length,
        )?,
        None => match &p {
            Some(p) => parse_scaling(p, context_length)?,
            None => RopeScaling::None,
        },
    };
    Ok((theta, scaling))
}

fn parse_scaling(s: &Obj, context_length: usize) -> Result<RopeScaling> {
    let kind = match s.opt_str("rope_type")? {
        Some(k) => k,
        None => s.opt_str("type")?.ok_or_else(|| {
            bad(
                &s.key("type"),
                "rope scaling object has neither `type` nor `rope_type`",
            )
        })?,
    };
    let factor = |s: &Obj| -> Result<f32> {
        let f = s
            .opt_f32("factor")?
            .ok_or_else(|| ModelError::MissingKey(s.key("factor")))?;
        positive_f32(&s.key("factor"), f)
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: factor(s)? }),
        "yarn" => {
            if s.get("attention_factor").is_some() {
                return Err(bad(
                    &s.key("attention_factor"),
                    "an explicit YaRN attention_factor is not supported",
                ));
            }
            let original_context = positive(
                &s.key("original_max_position_embeddings"),
                s.opt_usize("original_max_position_embeddings")?
                    .unwrap_or(context_length),
            )?;
            // transformers: without `factor`, YaRN uses max_position / original.
            let factor = match s.opt_f32("factor")? {
                Some(f) => positive_f32(&s.key("factor"), f)?,
                None => context_length as f32 / original_context as f32,
            };
            // transformers treats 0/absent beta as the paper's defaults.
            let beta_fast = s
                .opt_f32("beta_fast")?
                .filter(|&b| b != 0.0)
                .unwrap_or(32.0);
            let beta_slow = s.opt_f32("beta_slow")?.filter(|&b| b != 0.0).unwrap_or(1.0);
            // `mscale`/`mscale_all_dim` are kept as HF has them, absent = 0: transformers only
            // uses the ratio mscale(factor, mscale)/mscale(factor, mscale_all_dim) when both are
            // non-zero (else mscale(factor, 1)), and DeepSeek scales the softmax by
            // mscale(factor, mscale_all_dim)^2 only when that one is non-zero.
            let mscale = s.opt_f32("mscale")?.unwrap_or(0.0);
            let mscale_all_dim = s.opt_f32("mscale_all_dim")?.unwrap_or(0.0);
            if mscale < 0.0 || mscale_all_dim < 0.0 {
                return Err(bad(&s.key("mscale"), "must not be negative"));
            }
            Ok(RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
            })
        }
        "llama3" => {
            let need = |k: &str| -> Result<f32> {
                let v = s
                    .opt_f32(k)?
                    .ok_or_else(|| ModelError::MissingKey(s.key(k)))?;
                positive_f32(&s.key(k), v)
            };
            let low_freq_factor = need("low_freq_factor")?;
            let high_freq_factor = need("high_freq_factor")?;
            if high_freq_factor <= low_freq_factor {
                return Err(bad(
                    &s.key("high_freq_factor"),
                    format!("{high_freq_factor} must exceed low_freq_factor {low_freq_factor}"),
                ));
            }
            Ok(RopeScaling::Llama3 {
                factor: factor(s)?,
                low_freq_factor,
                high_freq_factor,
                original_context: s.req_pos("original_max_position_embeddings")?,
            })
        }
        other => Err(bad(
            &s.key("type"),
            format!(
                "unsupported rope scaling `{other}` (supported: default, linear, yarn, llama3)"
            ),
        )),
    }
}

fn parse_moe(
    c: &Obj,
    hf_arch: HfArch,
    n_layers: usize,
    ffn_hidden: usize,
) -> Result<Option<MoeParams>> {
    let n_experts_key = ["num_local_experts", "num_experts", "n_routed_experts"]
        .into_iter()
        .find(|k| c.get(k).is_some());
    let used = |n_experts: usize| -> Result<usize> {
        let k = c.req_pos("num_experts_per_tok")?;
        if k > n_experts {
            return Err(bad(
                "num_experts_per_tok",
                format!("{k} exceeds the number of experts {n_experts}"),
            ));
        }
        Ok(k)
    };
    let n_experts = |c: &Obj| -> Result<usize> {
        let key = n_experts_key.ok_or_else(|| {
            ModelError::MissingKey(
                match hf_arch {
                    HfArch::Mixtral => "num_local_experts",
                    HfArch::Qwen3Moe => "num_experts",
                    _ => "n_routed_experts",
                }
                .into(),
            )
        })?;
        c.req_pos(key)
    };
    let moe = match hf_arch {
        HfArch::Llama | HfArch::Qwen2 => return Ok(None),
        HfArch::Mixtral => {
            let n = n_experts(c)?;
            MoeParams {
                n_experts: n,
                n_experts_used: used(n)?,
                n_shared: 0,
                expert_ffn: ffn_hidden,
                gating: Gating::Softmax,
                norm_topk: true,
                routed_scale: 1.0,
                n_group: 1,
                topk_group: 1,
                first_dense: 0,
            }
        }
        HfArch::Qwen3Moe => {
            let n = n_experts(c)?;
            let step = c.opt_usize("decoder_sparse_step")?.unwrap_or(1);
            let mlp_only = match c.get("mlp_only_layers") {
                None => 0,
                Some(Value::Array(a)) => a.len(),
                Some(v) => {
                    return Err(bad(
                        "mlp_only_layers",
                        format!("expected a list, found {v}"),
                    ))
                }
            };
            if step != 1 || mlp_only != 0 {
                return Err(bad(
                    "decoder_sparse_step",
                    "only models whose every layer is MoE are supported \
                     (decoder_sparse_step 1, empty mlp_only_layers)",
                ));
            }
            MoeParams {
                n_experts: n,
                n_experts_used: used(n)?,
                n_shared: 0,
                expert_ffn: c.req_pos("moe_intermediate_size")?,
                gating: Gating::Softmax,
                norm_topk: c.opt_bool("norm_topk_prob")?.unwrap_or(false),
                routed_scale: 1.0,
                n_group: 1,
                topk_group: 1,
                first_dense: 0,
            }
        }
        HfArch::DeepseekV2 | HfArch::DeepseekV3 => {
            let v3 = hf_arch == HfArch::DeepseekV3;
            let n = n_experts(c)?;
            if let Some(freq) = c.opt_usize("moe_layer_freq")? {
                if freq != 1 {
                    return Err(bad(
                        "moe_layer_freq",
                        format!("only 1 is supported, found {freq}"),
                    ));
                }
            }
            // transformers' DeepseekV3 always scores with a sigmoid, V2 with a softmax; the
            // hub configs say so explicitly in `scoring_func`.
            let gating = match c.opt_str("scoring_func")? {
                None if v3 => Gating::Sigmoid,
                None | Some("softmax") => Gating::Softmax,
                Some("sigmoid") => Gating::Sigmoid,
                Some(other) => {
                    return Err(bad(
                        "scoring_func",
                        format!("unsupported `{other}` (supported: softmax, sigmoid)"),
                    ))
                }
            };
            // V2's `greedy` ignores groups; `group_limited_greedy` (V2) and `noaux_tc` (V3,
            // which transformers always applies) select within groups.
            let grouped = match c.opt_str("topk_method")? {
                None => v3,
                Some("greedy") => false,
                Some("group_limited_greedy") | Some("noaux_tc") => true,
                Some(other) => {
                    return Err(bad(
                        "topk_method",
                        format!(
                        "unsupported `{other}` (supported: greedy, group_limited_greedy, noaux_tc)"
                    ),
                    ))
                }
            };
            let (n_group, topk_group) = if grouped {
                let (dg, dt) = if v3 { (8, 4) } else { (1, 1) };
                let g = positive("n_group", c.opt_usize("n_group")?.unwrap_or(dg))?;
                let t = positive("topk_group", c.opt_usize("topk_group")?.unwrap_or(dt))?;
                (g, t)
            } else {
                (1, 1)
            };
            if n % n_group != 0 {
                return Err(bad(
                    "n_group",
                    format!("{n_group} does not divide the number of experts {n}"),
                ));
            }
            if topk_group > n_group {
                return Err(bad(
                    "topk_group",
                    format!("{topk_group} exceeds n_group {n_group}"),
                ));
            }
            let first_dense =
                c.opt_usize("first_k_dense_replace")?
                    .unwrap_or(if v3 { 3 } else { 0 });
            if first_dense > n_layers {
                return Err(bad(
                    "first_k_dense_replace",
                    format!("{first_dense} exceeds num_hidden_layers {n_layers}"),
                ));
            }
            let routed_scale = positive_f32(
                "routed_scaling_factor",
                c.opt_f32("routed_scaling_factor")?
                    .unwrap_or(if v3 { 2.5 } else { 1.0 }),
            )?;
            MoeParams {
                n_experts: n,
                n_experts_used: used(n)?,
                n_shared: c.opt_usize("n_shared_experts")?.unwrap_or(0),
                expert_ffn: c.req_pos("moe_intermediate_size")?,
                gating,
                norm_topk: c.opt_bool("norm_topk_prob")?.unwrap_or(v3),
                routed_scale,
                n_group,
                topk_group,
                first_dense,
            }
        }
    };
    Ok(Some(moe))
}
