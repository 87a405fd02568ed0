//! The Llama decoder and its close relatives.
//!
//! Llama (2/3/3.1, SmolLM2, R1-Distill-Llama): pre-norm blocks of grouped-query attention with
//! rotary positions and a SwiGLU feed-forward. The relatives differ in a few explicit ways,
//! chosen once in [`Variant::of`] from the architecture named in the file:
//! - Qwen2 (R1-Distill-Qwen): biases on the q/k/v projections; often tied embeddings.
//! - Qwen3-MoE: RMS norm on each query and key head before rope; routed experts.
//! - Mixtral: routed experts (softmax top-k, renormalised).

use super::layers::{
    add_in_place, attention_many, embed, AttnSeq, FeedForward, Ffn, Linear, Moe, RmsNorm,
};
use super::rope::Rope;
use super::{Architecture, BatchItem, BatchRows, Logits};
use crate::error::{ModelError, Result};
use crate::kv::KvCache;
use crate::load::LoadedModel;
use crate::names;
use crate::spec::{Arch, ModelSpec};
use mixture_kernels::reuse::Stash;

/// The explicit differences between the family members.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub qkv_bias: bool,
    pub qk_norm: bool,
    pub moe: bool,
}

impl Variant {
    pub fn of(arch: Arch) -> Result<Variant> {
        Ok(match arch {
            Arch::Llama => Variant {
                qkv_bias: false,
                qk_norm: false,
                moe: false,
            },
            Arch::Qwen2 => Variant {
                qkv_bias: true,
                qk_norm: false,
                moe: false,
            },
            Arch::Qwen3Moe => Variant {
                qkv_bias: false,
                qk_norm: true,
                moe: true,
            },
            Arch::Mixtral => Variant {
                qkv_bias: false,
                qk_norm: false,
                moe: true,
            },
            Arch::Deepseek2 => {
                return Err(ModelError::UnknownArch(
                    "deepseek2 is not a Llama variant".into(),
                ))
            }
        })
    }
}

struct Block {
    attn_norm: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    wo: Linear,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
}

pub struct Llama {
    spec: ModelSpec,
    token_embd: crate::tensor::Tensor,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    output: Linear,
    rope: Rope,
}

impl Llama {
    pub fn new(model: LoadedModel) -> Result<Llama> {
        let LoadedModel {
            spec, weights: ws, ..
        } = model;
        let v = Variant::of(spec.arch)?;
        let hp = &spec.hparams;
        let (d, hd, nh, nkv, eps) = (
            hp.hidden,
            hp.head_dim,
            hp.n_heads,
            hp.n_kv_heads,
            hp.rms_eps,
        );
        if nkv == 0 || nh % nkv != 0 {
            return Err(ModelError::Invalid(format!(
                "{nh} query heads cannot share {nkv} kv heads"
            )));
        }
        // Hyperparameters, then weights.
        let token_embd = ws
            .get_shaped(names::TOKEN_EMBD, &[hp.vocab_size, d])?
            .clone();
        let mut blocks = Vec::with_capacity(hp.n_layers);
        for l in 0..hp.n_layers {
            let ffn = match (&hp.moe, v.moe) {
                (Some(p), true) => FeedForward::Moe(Box::new(Moe::load(&ws, l, d, p)?)),
                (None, true) => {
                    return Err(ModelError::Invalid(format!(
                        "{} needs expert metadata",
                        spec.arch.name()
                    )))
                }
                (_, false) => {
                    FeedForward::Dense(Box::new(Ffn::load(&ws, l, "", d, hp.ffn_hidden)?))
                }
            };
            let head_norm = |n: &str| -> Result<Option<RmsNorm>> {
                if v.qk_norm {
                    Ok(Some(RmsNorm::load(&ws, &names::blk(l, n), hd, eps)?))
                } else {
                    Ok(None)
                }
            };
            blocks.push(Block {
                attn_norm: RmsNorm::load(&ws, &names::blk(l, "attn_norm"), d, eps)?,
                wq: Linear::load(&ws, &names::blk(l, "attn_q"), nh * hd, d, v.qkv_bias)?,
                wk: Linear::load(&ws, &names::blk(l, "attn_k"), nkv * hd, d, v.qkv_bias)?,
                wv: Linear::load(&ws, &names::blk(l, "attn_v"), nkv * hd, d, v.qkv_bias)?,
                q_norm: head_norm("attn_q_norm")?,
                k_norm: head_norm("attn_k_norm")?,
                wo: Linear::load(&ws, &names::blk(l, "attn_output"), d, nh * hd, false)?,
                ffn_norm: RmsNorm::load(&ws, &names::blk(l, "ffn_norm"), d, eps)?,
                ffn,
            });
        }
        let output_norm = RmsNorm::load(&ws, names::OUTPUT_NORM, d, eps)?;
        // Tied embeddings: no output matrix, the embedding table is reused.
        let out_w = ws.get_opt(names::OUTPUT).unwrap_or(&token_embd).clone();
        let output = Linear::from_tensor(names::OUTPUT, out_w, hp.vocab_size, d)?;
        let freq_factors = match ws.get_opt("rope_freqs.weight") {
            Some(t) => Some(t.to_f32()?),
            None => None,
        };
        let rope = Rope::new(&hp.rope, freq_factors.as_deref());
        Ok(Llama {
            spec,
            token_embd,
            blocks,
            output_norm,
            output,
            rope,
        })
    }
}

impl Architecture for Llama {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn kv_widths(&self) -> Vec<(usize, usize)> {
        let hp = &self.spec.hparams;
        vec![(hp.n_kv_heads * hp.head_dim, hp.n_kv_heads * hp.head_dim); hp.n_layers]
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Result<Vec<f32>> {
        let item = BatchItem {
            tokens,
            cache,
            logits,
        };
        super::forward_one(item, |items, out| self.run(items, out))
    }

    fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(items.len());
        self.run(items, &mut out)?;
        Ok(out)
    }
}

impl Llama {
    /// Every projection and feed-forward runs once over the stacked rows of all sequences
    /// (`T` = their tokens together); rope, the cache append and attention per sequence.
    /// Each item's logits are appended to `out`.
    fn run(&self, items: &mut [BatchItem<'_>], out: &mut Vec<Vec<f32>>) -> Result<()> {
        let hp = &self.spec.hparams;
        let (d, hd, nh, nkv) = (hp.hidden, hp.head_dim, hp.n_heads, hp.n_kv_heads);
        let (qw, kvw) = (nh * hd, nkv * hd);
        let rows = BatchRows::of(items, self.blocks.len(), hp.context_length)?;
        let total = rows.tokens.len();
        let mut x = embed(&self.token_embd, &rows.tokens, d)?; // [T, d]
        for (l, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x); // [T, d]
                                                 // [T, nh * hd], [T, nkv * hd] x2
            let [mut q, mut k, v] =
                Linear::forward_n([(&block.wq, &h), (&block.wk, &h), (&block.wv, &h)])?;
            if let (Some(qn), Some(kn)) = (&block.q_norm, &block.k_norm) {
                qn.apply(&mut q); // per head: rows of hd
                kn.apply(&mut k);
            }
            for (i, it) in items.iter_mut().enumerate() {
                let r = rows.range(i);
                let pos0 = it.cache.len;
                for (ti, row) in r.clone().enumerate() {
                    let pos = pos0 + ti;
                    self.rope
                        .apply(&mut q[row * qw..(row + 1) * qw], nh, hd, 0, pos);
                    self.rope
                        .apply(&mut k[row * kvw..(row + 1) * kvw], nkv, hd, 0, pos);
                }
                let kv = &mut it.cache.layers[l];
                kv.k.extend_from_slice(&k[r.start * kvw..r.end * kvw]);
                kv.v.extend_from_slice(&v[r.start * kvw..r.end * kvw]);
            }
            let mut seqs: Vec<AttnSeq<'_>> = Stash::take(&SEQS);
            seqs.extend(items.iter().enumerate().map(|(i, it)| {
                let r = rows.range(i);
                let kv = &it.cache.layers[l];
                AttnSeq {
                    q: &q[r.start * qw..r.end * qw],
                    keys: &kv.k,
                    values: &kv.v,
                }
            }));
            let scale = 1.0 / (hd as f32).sqrt();
            let a = attention_many(&seqs, nh, nkv, hd, hd, scale); // [T, nh * hd]
            Stash::put(&SEQS, seqs);
            add_in_place(&mut x, &block.wo.forward(&a, total)?);
            let h = block.ffn_norm.forward(&x);
            add_in_place(&mut x, &block.ffn.forward(&h, total, d)?);
        }
        for it in items.iter_mut() {
            it.cache.len += it.tokens.len();
        }
        // Per item [rows, vocab].
        rows.logits(items, x, d, &self.output_norm, &self.output, out)
    }
}

thread_local! {
    /// The sequences' attention inputs of one layer, kept between layers (`reuse`).
    static SEQS: Stash<AttnSeq<'static>> = const { Stash::new() };
}
