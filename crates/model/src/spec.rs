//! Hyperparameters of a model, read from explicit metadata (GGUF keys or HF `config.json`),
//! never guessed from shapes or layer counts.

pub use mixture_kernels::ops::RopeStyle;

/// The architectures mixture implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3/3.1, SmolLM2, R1-Distill-Llama.
    Llama,
    /// Qwen2 / Qwen2.5 (qkv bias), R1-Distill-Qwen.
    Qwen2,
    /// Qwen3-MoE (q/k norm, routed experts).
    Qwen3Moe,
    /// Mixtral (Llama with routed experts).
    Mixtral,
    /// DeepSeek-V2, V2-Lite, V3, R1 (MLA + DeepSeekMoE).
    Deepseek2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Mixtral => "mixtral",
            Arch::Deepseek2 => "deepseek2",
        }
    }
}

/// Rotary-embedding frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Position interpolation: positions divided by `factor`.
    Linear {
        factor: f32,
    },
    /// YaRN (DeepSeek-V2/V3 use it with `mscale`/`mscale_all_dim`).
    Yarn {
        factor: f32,
        original_context: usize,
        beta_fast: f32,
        beta_slow: f32,
        /// HF `mscale` (scales cos/sin by mscale(factor, mscale)/mscale(factor, mscale_all_dim)).
        mscale: f32,
        /// HF `mscale_all_dim`; DeepSeek multiplies the softmax scale by mscale(factor, this)^2.
        mscale_all_dim: f32,
    },
    /// Llama 3.1 frequency-dependent scaling.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeParams {
    pub theta: f32,
    /// Number of rotated dimensions per head (head_dim, or qk_rope_head_dim for MLA).
    pub dims: usize,
    pub style: RopeStyle,
    pub scaling: RopeScaling,
}

/// How router logits become expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    Softmax,
    /// Sigmoid scores; selection adds `exp_probs_b` (DeepSeek-V3 `noaux_tc`).
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MoeParams {
    pub n_experts: usize,
    pub n_experts_used: usize,
    /// DeepSeek shared experts (0 elsewhere); their FFN width is `n_shared * expert_ffn`.
    pub n_shared: usize,
    /// Width of one routed expert's FFN.
    pub expert_ffn: usize,
    pub gating: Gating,
    /// Renormalise the selected weights to sum to one.
    pub norm_topk: bool,
    /// Multiplier on routed weights (DeepSeek `routed_scaling_factor`; 1 elsewhere).
    pub routed_scale: f32,
    /// Group-limited routing (1 = plain greedy top-k).
    pub n_group: usize,
    pub topk_group: usize,
    /// The first `first_dense` layers use a dense FFN of width `HParams::ffn_hidden`.
    pub first_dense: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MlaParams {
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_dim: usize,
    pub qk_rope_dim: usize,
    pub v_head_dim: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HParams {
    pub vocab_size: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Per-head dimension of q/k/v (non-MLA).
    pub head_dim: usize,
    /// Dense FFN width.
    pub ffn_hidden: usize,
    pub rms_eps: f32,
    pub rope: RopeParams,
    pub context_length: usize,
    pub moe: Option<MoeParams>,
    pub mla: Option<MlaParams>,
}

/// What a file says about the model besides weights.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub arch: Arch,
    pub hparams: HParams,
    /// Display name (`general.name`, or the directory name).
    pub name: String,
    /// "GGUF v3", "Hugging Face safetensors", ...
    pub format: String,
    /// Tokenizer kind, for `inspect` ("gpt2 (BPE)", "llama (SentencePiece)", "tokenizer.json", "none").
    pub tokenizer: String,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}
