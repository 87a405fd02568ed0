//! DeepSeek-V2 / V2-Lite / V3 / R1: Multi-head Latent Attention and DeepSeekMoE.
//!
//! MLA (DeepSeek-V2 paper, section 2.1). Per token, keys and values are compressed to a
//! latent `c_kv` of width `kv_lora_rank`; a separate `qk_rope_dim` key part carries the
//! position and is shared by all heads. Queries come from `x` directly (V2-Lite) or through
//! their own low-rank bottleneck `q_lora_rank` (V2, V3). We use the absorbed form throughout:
//! the key up-projection of head h is folded into the query (`q_abs = k_b[h] · q_nope`) and the
//! value up-projection is applied after attention (`o_h = v_b[h] · Σ_p a_p c_p`), so the
//! cache holds only `c_kv` and the roped key: `kv_lora + qk_rope` values per token and layer.
//!
//! DeepSeekMoE: the first `first_dense` layers are dense; the rest have `n_shared` always-on
//! experts plus `n_experts_used` routed experts chosen by softmax (V2) or sigmoid with a
//! selection bias (V3), optionally limited to the best `topk_group` of `n_group` groups.
//!
//! YaRN: the softmax scale is multiplied by `mscale(factor, mscale_all_dim)^2`.

use super::layers::{
    add_in_place, attention, embed, scratch_positions, FeedForward, Ffn, Linear, Moe, RmsNorm,
    SCORES_KEEP_BYTES,
};
use super::rope::{yarn_mscale, Rope};
use super::{Architecture, BatchItem, BatchRows, Logits};
use crate::error::{ModelError, Result};
use crate::kv::KvCache;
use crate::load::LoadedModel;
use crate::names;
use crate::spec::{MlaParams, ModelSpec, RopeScaling};
use mixture_kernels::ops::softmax;
use mixture_kernels::pool;
use mixture_kernels::reuse::{self, Buf, Stash};
use mixture_kernels::vecf32::{axpy_strided, dot_strided};
use std::cell::RefCell;

/// Fewest new tokens for which attention may take the expanded form: below it both forms are
/// cheap, and the absorbed one is what llama.cpp computes (so short sequences match it to
/// the rounding).
const EXPAND_MIN_TOKENS: usize = 64;

/// Which form of MLA a forward pass uses ([`Deepseek2::forward_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MlaForm {
    /// The cheaper one for the sequence at hand.
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    Absorbed,
    #[cfg_attr(not(test), allow(dead_code))]
    Expanded,
}

/// How queries are produced.
enum QueryProj {
    /// `q = W_q x` (V2-Lite).
    Direct(Linear),
    /// `q = W_qb · norm(W_qa x)` (V2, V3).
    LowRank { a: Linear, norm: RmsNorm, b: Linear },
}

struct Block {
    attn_norm: RmsNorm,
    q: QueryProj,
    /// `[kv_lora + rope, hidden]`: latent and rope key.
    kv_a: Linear,
    kv_a_norm: RmsNorm,
    /// Per head `[kv_lora, qk_nope]`: absorbs the key up-projection into the query.
    k_b: Vec<Linear>,
    /// Per head `[v_dim, kv_lora]`: value up-projection.
    v_b: Vec<Linear>,
    wo: Linear,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
}

pub struct Deepseek2 {
    spec: ModelSpec,
    mla: MlaParams,
    token_embd: crate::tensor::Tensor,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    output: Linear,
    rope: Rope,
    scale: f32,
}

impl Deepseek2 {
    pub fn new(model: LoadedModel) -> Result<Deepseek2> {
        let LoadedModel {
            spec, weights: ws, ..
        } = model;
        let hp = &spec.hparams;
        let mla = hp.mla.clone().ok_or_else(|| {
            ModelError::Invalid("deepseek2 needs MLA metadata (kv_lora_rank)".into())
        })?;
        let (d, nh, eps) = (hp.hidden, hp.n_heads, hp.rms_eps);
        let (nope, rope_d, vd, lora) = (
            mla.qk_nope_dim,
            mla.qk_rope_dim,
            mla.v_head_dim,
            mla.kv_lora_rank,
        );
        let qd = nope + rope_d;
        let token_embd = ws
            .get_shaped(names::TOKEN_EMBD, &[hp.vocab_size, d])?
            .clone();
        let mut blocks = Vec::with_capacity(hp.n_layers);
        for l in 0..hp.n_layers {
            let q = match mla.q_lora_rank {
                None => QueryProj::Direct(Linear::load(
                    &ws,
                    &names::blk(l, "attn_q"),
                    nh * qd,
                    d,
                    false,
                )?),
                Some(r) => QueryProj::LowRank {
                    a: Linear::load(&ws, &names::blk(l, "attn_q_a"), r, d, false)?,
                    norm: RmsNorm::load(&ws, &names::blk(l, "attn_q_a_norm"), r, eps)?,
                    b: Linear::load(&ws, &names::blk(l, "attn_q_b"), nh * qd, r, false)?,
                },
            };
            let k_b_name = names::blk(l, "attn_k_b");
            let v_b_name = names::blk(l, "attn_v_b");
            let k_b_all = ws.get_shaped(&k_b_name, &[nh, lora, nope])?;
            let v_b_all = ws.get_shaped(&v_b_name, &[nh, vd, lora])?;
            let k_b = (0..nh)
                .map(|h| Linear::from_tensor(&k_b_name, k_b_all.index0(h)?, lora, nope))
                .collect::<Result<Vec<_>>>()?;
            let v_b = (0..nh)
                .map(|h| Linear::from_tensor(&v_b_name, v_b_all.index0(h)?, vd, lora))
                .collect::<Result<Vec<_>>>()?;
            let ffn = match &hp.moe {
                Some(p) if l >= p.first_dense => {
                    FeedForward::Moe(Box::new(Moe::load(&ws, l, d, p)?))
                }
                _ => FeedForward::Dense(Box::new(Ffn::load(&ws, l, "", d, hp.ffn_hidden)?)),
            };
            blocks.push(Block {
                attn_norm: RmsNorm::load(&ws, &names::blk(l, "attn_norm"), d, eps)?,
                q,
                kv_a: Linear::load(
                    &ws,
                    &names::blk(l, "attn_kv_a_mqa"),
                    lora + rope_d,
                    d,
                    false,
                )?,
                kv_a_norm: RmsNorm::load(&ws, &names::blk(l, "attn_kv_a_norm"), lora, eps)?,
                k_b,
                v_b,
                wo: Linear::load(&ws, &names::blk(l, "attn_output"), d, nh * vd, false)?,
                ffn_norm: RmsNorm::load(&ws, &names::blk(l, "ffn_norm"), d, eps)?,
                ffn,
            });
        }
        let output_norm = RmsNorm::load(&ws, names::OUTPUT_NORM, d, eps)?;
        let out_w = ws.get_opt(names::OUTPUT).unwrap_or(&token_embd).clone();
        let output = Linear::from_tensor(names::OUTPUT, out_w, hp.vocab_size, d)?;
        let rope = Rope::new(&hp.rope, None);
        let mut scale = 1.0 / (qd as f32).sqrt();
        if let RopeScaling::Yarn {
            factor,
            mscale_all_dim,
            ..
        } = hp.rope.scaling
        {
            if mscale_all_dim > 0.0 {
                let m = yarn_mscale(factor, mscale_all_dim);
                scale *= m * m;
            }
        }
        Ok(Deepseek2 {
            spec,
            mla,
            token_embd,
            blocks,
            output_norm,
            output,
            rope,
            scale,
        })
    }
}

/// The attention's widths, named as in the shape comments.
struct Dims {
    nh: usize,
    nope: usize,
    rd: usize,
    vd: usize,
    lora: usize,
    /// `nope + rd`: one head of a query or key.
    qd: usize,
    /// `lora + rd`: one cached position.
    kw: usize,
}

impl Deepseek2 {
    fn dims(&self) -> Dims {
        let m = &self.mla;
        Dims {
            nh: self.spec.hparams.n_heads,
            nope: m.qk_nope_dim,
            rd: m.qk_rope_dim,
            vd: m.v_head_dim,
            lora: m.kv_lora_rank,
            qd: m.qk_nope_dim + m.qk_rope_dim,
            kw: m.kv_lora_rank + m.qk_rope_dim,
        }
    }

    /// Whether attention over `n_pos` positions (the last `t` of them new) costs fewer
    /// multiply-adds with the keys and values expanded per head ([`Self::attend_expanded`]:
    /// prefill from a short cache) than absorbed into the queries ([`Self::attend_absorbed`]:
    /// decode, or a few tokens after a long cache).
    fn expand_is_cheaper(&self, t: usize, n_pos: usize) -> bool {
        if t < EXPAND_MIN_TOKENS {
            return false;
        }
        let m = &self.mla;
        let (lora, qd) = (m.kv_lora_rank, m.qk_nope_dim + m.qk_rope_dim);
        let visible = n_pos.saturating_sub(t / 2); // mean positions each new token sees
        let absorbed =
            t * visible * (2 * lora + m.qk_rope_dim) + t * lora * (m.qk_nope_dim + m.v_head_dim);
        let expanded =
            n_pos * lora * (m.qk_nope_dim + m.v_head_dim) + t * visible * (qd + m.v_head_dim);
        expanded < absorbed
    }

    /// Absorbed MLA: the key up-projection folded into the queries, attention over the latent
    /// cache, the value up-projection after it. `q` is `[T, nh * qd]` (roped) for the rows of
    /// a whole batch; each segment names a sequence's rows in it and that sequence's layer
    /// cache `[n_pos, lora + rope]` (new tokens last). The projections run once over all the
    /// segments' rows. Returns `[Σ t, nh * vd]`, the segments' rows in order.
    fn attend_absorbed(&self, block: &Block, q: &[f32], segs: &[AbsorbSeg<'_>]) -> Result<Buf> {
        let Dims {
            nh,
            nope,
            rd,
            vd,
            lora,
            qd,
            kw,
        } = self.dims();
        thread_local! {
            // This function's vectors, kept between calls (`reuse`).
            static JOBS: Stash<(&'static Linear, &'static [f32])> = const { Stash::new() };
            static HEADS: Stash<Buf> = const { Stash::new() };
            static LATENTS: Stash<&'static mut [f32]> = const { Stash::new() };
            /// The participants' scores and rope scores ([`pool::PerSlot`]).
            static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
        }
        let t: usize = segs.iter().map(|s| s.rows.len()).sum();
        if t == 0 {
            return Ok(Buf::zeros(0));
        }
        // Absorb the key up-projection into the queries: per head, [t, nope] → [t, lora];
        // all heads in one parallel region.
        let mut q_nope = Buf::for_overwrite(nh * t * nope); // nh x [t, nope], every row copied
        for (head, qh) in q_nope.chunks_exact_mut(t * nope).enumerate() {
            let rows = segs.iter().flat_map(|s| s.rows.clone());
            for (row, qr) in rows.zip(qh.chunks_exact_mut(nope)) {
                qr.copy_from_slice(&q[(row * nh + head) * qd..][..nope]);
            }
        }
        let mut jobs: Vec<(&Linear, &[f32])> = Stash::take(&JOBS);
        jobs.extend(block.k_b.iter().zip(q_nope.chunks_exact(t * nope)));
        let mut q_abs: Vec<Buf> = Stash::take(&HEADS);
        Linear::forward_into(&jobs, &mut q_abs)?; // nh x [t, lora]
        jobs.clear();
        // Attention over each latent cache, heads in parallel: Σ_p a_p c_p, [t, lora].
        let max_pos = segs.iter().map(|s| s.cache_k.len() / kw).max().unwrap_or(0);
        let mut latents = Buf::zeros(nh * t * lora); // nh x [t, lora]
        let mut per_head: Vec<&mut [f32]> = Stash::take(&LATENTS);
        per_head.extend(latents.chunks_exact_mut(t * lora));
        reuse::with_local(&SCORES, |buf| {
            let slots = pool::PerSlot::new(buf, 2 * scratch_positions(max_pos));
            pool::for_each_mut_slot(&mut per_head, |slot, head, latent| {
                let q_abs = &q_abs[head];
                // SAFETY: `slot` is this task's participant slot.
                let scratch = unsafe { slots.get(slot) };
                let (scores, rope_scores) = scratch.split_at_mut(max_pos);
                let mut i = 0; // row within the segments
                for s in segs {
                    let (n_pos, st) = (s.cache_k.len() / kw, s.rows.len());
                    for (ti, row) in s.rows.clone().enumerate() {
                        let visible = n_pos - st + ti + 1;
                        let qa = &q_abs[i * lora..(i + 1) * lora];
                        let qr = &q[(row * nh + head) * qd + nope..][..rd];
                        let scores = &mut scores[..visible];
                        let rope_scores = &mut rope_scores[..visible];
                        dot_strided(qa, s.cache_k, kw, scores);
                        dot_strided(qr, &s.cache_k[lora..], kw, rope_scores);
                        for (sc, r) in scores.iter_mut().zip(rope_scores.iter()) {
                            *sc = (*sc + r) * self.scale;
                        }
                        softmax(scores);
                        let out = &mut latent[i * lora..(i + 1) * lora];
                        axpy_strided(out, scores, s.cache_k, kw);
                        i += 1;
                    }
                }
            });
            reuse::trim(buf, SCORES_KEEP_BYTES);
        });
        Stash::put(&LATENTS, per_head);
        q_abs.clear();
        // The value up-projection, all heads in one region: [t, lora] → [t, vd].
        jobs.extend(block.v_b.iter().zip(latents.chunks_exact(t * lora)));
        Linear::forward_into(&jobs, &mut q_abs)?;
        Stash::put(&JOBS, jobs);
        let mut attn = Buf::for_overwrite(t * nh * vd); // [t, nh * vd], every head copied
        for (head, o) in q_abs.iter().enumerate() {
            for ti in 0..t {
                attn[(ti * nh + head) * vd..][..vd].copy_from_slice(&o[ti * vd..(ti + 1) * vd]);
            }
        }
        Stash::put(&HEADS, q_abs);
        Ok(attn)
    }

    /// Expanded MLA, as the paper writes it: every cached position's latent up-projected to
    /// per-head keys (`k_b[h]ᵀ · c`, plus the shared rope key) and values (`v_b[h] · c`), then
    /// plain attention. Same arguments and result as [`Self::attend_absorbed`].
    fn attend_expanded(&self, block: &Block, q: &[f32], t: usize, cache_k: &[f32]) -> Result<Buf> {
        let Dims {
            nh,
            nope,
            rd: _,
            vd,
            lora,
            qd,
            kw,
        } = self.dims();
        let n_pos = cache_k.len() / kw;
        let latents: Vec<f32> = cache_k
            .chunks_exact(kw)
            .flat_map(|row| row[..lora].iter().copied())
            .collect(); // [n_pos, lora]
                        // Values: v_b[h] · c for every head, one parallel region. nh x [n_pos, vd]
        let jobs: Vec<(&Linear, &[f32])> = block.v_b.iter().map(|l| (l, &latents[..])).collect();
        let values_h = Linear::forward_many(&jobs)?;
        // Keys: c · k_b[h] ([lora, nope], so a sum of its rows weighted by c), heads in
        // parallel. nh x [n_pos, nope]
        let keys_h: Vec<Vec<f32>> = pool::map(block.k_b.len(), |h| -> Result<Vec<f32>> {
            let l = &block.k_b[h];
            let kb = l.w.to_f32()?; // [lora, nope]
            let mut k = vec![0f32; n_pos * nope];
            for (kp, c) in k.chunks_exact_mut(nope).zip(latents.chunks_exact(lora)) {
                // Σ_l c[l] kb[l], l in order: one `axpy` per l, the key held in registers.
                axpy_strided(kp, c, &kb, nope);
            }
            Ok(k)
        })
        .into_iter()
        .collect::<Result<_>>()?;
        let mut keys = vec![0f32; n_pos * nh * qd]; // [n_pos, nh, nope + rope]
        let mut values = vec![0f32; n_pos * nh * vd]; // [n_pos, nh, vd]
        for p in 0..n_pos {
            let rope_key = &cache_k[p * kw + lora..(p + 1) * kw];
            for h in 0..nh {
                let k = &mut keys[(p * nh + h) * qd..][..qd];
                k[..nope].copy_from_slice(&keys_h[h][p * nope..][..nope]);
                k[nope..].copy_from_slice(rope_key);
                values[(p * nh + h) * vd..][..vd].copy_from_slice(&values_h[h][p * vd..][..vd]);
            }
        }
        Ok(attention(q, t, &keys, &values, nh, nh, qd, vd, self.scale))
    }
}

impl Architecture for Deepseek2 {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn kv_widths(&self) -> Vec<(usize, usize)> {
        vec![(self.mla.kv_lora_rank + self.mla.qk_rope_dim, 0); self.spec.hparams.n_layers]
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Result<Vec<f32>> {
        self.forward_in(tokens, cache, logits, MlaForm::Auto)
    }

    fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(items.len());
        self.forward_batch_in(items, MlaForm::Auto, &mut out)?;
        Ok(out)
    }
}

thread_local! {
    // The forward pass's per-layer lists, kept between layers (`reuse`).
    static EXPAND: Stash<bool> = const { Stash::new() };
    static SEGS: Stash<AbsorbSeg<'static>> = const { Stash::new() };
}

/// One sequence's part of a batched absorbed attention ([`Deepseek2::attend_absorbed`]).
struct AbsorbSeg<'a> {
    /// Its rows in the batch's stacked queries.
    rows: std::ops::Range<usize>,
    /// Its layer cache, the new tokens last.
    cache_k: &'a [f32],
}

impl Deepseek2 {
    /// [`Architecture::forward`] with the MLA form chosen by `form`.
    fn forward_in(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        logits: Logits,
        form: MlaForm,
    ) -> Result<Vec<f32>> {
        let item = BatchItem {
            tokens,
            cache,
            logits,
        };
        super::forward_one(item, |items, out| self.forward_batch_in(items, form, out))
    }

    /// [`Architecture::forward_batch`] with the MLA form chosen by `form`: every projection
    /// and feed-forward once over the stacked rows of all sequences (`T` rows); rope, the
    /// cache append and attention per sequence (the absorbed form's per-head projections
    /// also run once over the rows of every sequence that takes it). Each item's logits
    /// are appended to `out`.
    fn forward_batch_in(
        &self,
        items: &mut [BatchItem<'_>],
        form: MlaForm,
        out: &mut Vec<Vec<f32>>,
    ) -> Result<()> {
        let hp = &self.spec.hparams;
        let (d, nh) = (hp.hidden, hp.n_heads);
        let MlaParams {
            qk_nope_dim: nope,
            qk_rope_dim: rd,
            kv_lora_rank: lora,
            v_head_dim: vd,
            ..
        } = self.mla;
        let (qd, kw) = (nope + rd, lora + rd);
        let rows = BatchRows::of(items, self.blocks.len(), hp.context_length)?;
        let total = rows.tokens.len();
        let mut x = embed(&self.token_embd, &rows.tokens, d)?; // [T, d]
        for (l, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x); // [T, d]

            // The query's first projection and the KV compression read the same input.
            let q_in = match &block.q {
                QueryProj::Direct(w) => w,
                QueryProj::LowRank { a, .. } => a,
            };
            // [T, q_lora or nh * qd], [T, lora + rd]
            let [q0, mut ckv] = Linear::forward_n([(q_in, &h), (&block.kv_a, &h)])?;
            let mut q = match &block.q {
                QueryProj::Direct(_) => q0, // [T, nh * qd]
                QueryProj::LowRank { norm, b, .. } => {
                    let mut c = q0; // [T, q_lora]
                    norm.apply(&mut c);
                    b.forward(&c, total)? // [T, nh * qd]
                }
            };
            // Per sequence: positions and the cache append; then which form it attends in.
            let mut expand: Vec<bool> = Stash::take(&EXPAND);
            for (i, it) in items.iter_mut().enumerate() {
                let r = rows.range(i);
                let pos0 = it.cache.len;
                for (ti, row) in r.clone().enumerate() {
                    let c = &mut ckv[row * kw..(row + 1) * kw];
                    block.kv_a_norm.apply(&mut c[..lora]); // latent c_kv
                    self.rope.apply(&mut c[lora..], 1, rd, 0, pos0 + ti); // shared rope key
                    self.rope.apply(
                        &mut q[row * nh * qd..(row + 1) * nh * qd],
                        nh,
                        qd,
                        nope,
                        pos0 + ti,
                    );
                }
                let kv = &mut it.cache.layers[l];
                kv.k.extend_from_slice(&ckv[r.start * kw..r.end * kw]);
                expand.push(match form {
                    MlaForm::Auto => self.expand_is_cheaper(r.len(), kv.k.len() / kw),
                    MlaForm::Absorbed => false,
                    MlaForm::Expanded => true,
                });
            }
            let w = nh * vd;
            let mut attn = Buf::zeros(total * w); // [T, nh * vd]
            let mut segs: Vec<AbsorbSeg<'_>> = Stash::take(&SEGS);
            for (i, it) in items.iter().enumerate() {
                let r = rows.range(i);
                let cache_k = &it.cache.layers[l].k;
                if expand[i] {
                    let a = self.attend_expanded(
                        block,
                        &q[r.start * nh * qd..r.end * nh * qd],
                        r.len(),
                        cache_k,
                    )?;
                    attn[r.start * w..r.end * w].copy_from_slice(&a);
                } else {
                    segs.push(AbsorbSeg { rows: r, cache_k });
                }
            }
            Stash::put(&EXPAND, expand);
            if !segs.is_empty() {
                let a = self.attend_absorbed(block, &q, &segs)?; // [Σ t, nh * vd]
                if segs.len() == items.len() {
                    attn = a; // every row, in order
                } else {
                    let mut at = 0;
                    for s in &segs {
                        let n = s.rows.len() * w;
                        attn[s.rows.start * w..s.rows.end * w].copy_from_slice(&a[at..at + n]);
                        at += n;
                    }
                }
            }
            Stash::put(&SEGS, segs);
            add_in_place(&mut x, &block.wo.forward(&attn, total)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Both MLA forms compute the same attention: on the f32 fixtures (no activation rounding)
    /// their logits agree to float rounding, for a prefill long enough that `Auto` expands,
    /// and for tokens decoded after it.
    #[test]
    fn expanded_and_absorbed_attention_agree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        for name in ["deepseek2", "deepseek3"] {
            let loaded = crate::load(&root.join(name).join("model.f32.gguf")).expect("load");
            let m = Deepseek2::new(loaded).expect("build");
            let vocab = m.spec.hparams.vocab_size as u64;
            let ids: Vec<u32> = (0..80u64)
                .map(|i| ((i * 7919 + 13) % vocab) as u32)
                .collect();
            let (prompt, next) = ids.split_at(72);
            let run = |form: MlaForm| {
                let mut cache = m.new_cache();
                let mut all = m
                    .forward_in(prompt, &mut cache, Logits::All, form)
                    .expect("prefill");
                all.extend(
                    m.forward_in(next, &mut cache, Logits::All, form)
                        .expect("decode"),
                );
                all
            };
            let (a, e) = (run(MlaForm::Absorbed), run(MlaForm::Expanded));
            assert_eq!(a.len(), e.len());
            let worst = a
                .iter()
                .zip(&e)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
            assert!(
                worst <= 1e-4 * scale.max(1.0),
                "{name}: max |Δ logit| {worst} (scale {scale})"
            );
            assert!(
                m.expand_is_cheaper(prompt.len(), prompt.len()),
                "{name}: prefill expands"
            );
            assert!(
                !m.expand_is_cheaper(1, prompt.len() + 1),
                "{name}: decode absorbs"
            );
        }
    }
}
