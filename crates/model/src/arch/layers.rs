//! Blocks shared by the architectures: linear layers, RMS norm weights, causal attention over
//! the KV cache, SwiGLU feed-forward and mixture-of-experts routing.

use crate::error::{ModelError, Result};
use crate::names;
use crate::spec::{Gating, MoeParams};
use crate::tensor::{Tensor, WeightStore};
use mixture_kernels::matmul::{matmul_many, MatJob};
use mixture_kernels::ops::{self, sigmoid, softmax};
use mixture_kernels::pool;
use mixture_kernels::reuse::{self, Buf, Stash};
use mixture_kernels::vecf32::{axpy, axpy_strided, axpy_strided2, dot_strided, dot_strided2};

/// A linear layer `y = x W^T (+ b)` over a stored weight `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Vec<f32>>,
    pub out: usize,
    pub inp: usize,
}

impl Linear {
    /// Load `name` (a `.weight`) with shape `[out, inp]`, and its `.bias` when `bias` is true.
    pub fn load(
        ws: &WeightStore,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let w = ws.get_shaped(name, &[out, inp])?.clone();
        let b = if bias {
            let bname = name.replace(".weight", ".bias");
            Some(ws.get_f32(&bname, out)?)
        } else {
            None
        };
        Ok(Linear { w, b, out, inp })
    }

    /// From an already-selected tensor (e.g. one expert or one head).
    pub fn from_tensor(name: &str, w: Tensor, out: usize, inp: usize) -> Result<Linear> {
        w.expect_shape(name, &[out, inp])?;
        Ok(Linear {
            w,
            b: None,
            out,
            inp,
        })
    }

    /// `x` is `[t, inp]`; returns `[t, out]`.
    pub fn forward(&self, x: &[f32], t: usize) -> Result<Buf> {
        debug_assert_eq!(x.len(), t * self.inp);
        let [y] = Linear::forward_n([(self, x)])?;
        Ok(y)
    }

    /// [`Linear::forward_many`] for a number of layers known here.
    pub fn forward_n<const N: usize>(layers: [(&Linear, &[f32]); N]) -> Result<[Buf; N]> {
        // Every element is written by the matmul.
        let mut outs: [Buf; N] = std::array::from_fn(|i| {
            let (l, x) = layers[i];
            Buf::for_overwrite(x.len() / l.inp.max(1) * l.out)
        });
        Linear::run(&layers, &mut outs)?;
        Ok(outs)
    }

    /// Several linear layers on their own inputs (`x` of each is `[t, inp]` for any `t`), in
    /// one parallel region; returns each output `[t, out]`.
    pub fn forward_many(layers: &[(&Linear, &[f32])]) -> Result<Vec<Buf>> {
        let mut outs = Vec::with_capacity(layers.len());
        Linear::forward_into(layers, &mut outs)?;
        Ok(outs)
    }

    /// [`Linear::forward_many`], each output appended to `outs`.
    pub fn forward_into(layers: &[(&Linear, &[f32])], outs: &mut Vec<Buf>) -> Result<()> {
        let first = outs.len();
        // Every element is written by the matmul.
        outs.extend(
            layers
                .iter()
                .map(|(l, x)| Buf::for_overwrite(x.len() / l.inp.max(1) * l.out)),
        );
        Linear::run(layers, &mut outs[first..])
    }

    /// The matmuls of `layers` into `outs` (one each, sized), then the biases.
    fn run(layers: &[(&Linear, &[f32])], outs: &mut [Buf]) -> Result<()> {
        thread_local! {
            static JOBS: Stash<MatJob<'static>> = const { Stash::new() };
        }
        // On an error the stashed vector is dropped (the next call allocates a new one).
        let mut jobs: Vec<MatJob<'_>> = Stash::take(&JOBS);
        for ((l, x), out) in layers.iter().zip(outs.iter_mut()) {
            jobs.push(MatJob {
                w: l.w.as_weight()?,
                x,
                out: out.as_mut_slice(),
            });
        }
        matmul_many(&mut jobs)?;
        Stash::put(&JOBS, jobs);
        for ((l, _), y) in layers.iter().zip(outs.iter_mut()) {
            if let Some(b) = &l.b {
                for row in y.chunks_exact_mut(l.out) {
                    for (v, bb) in row.iter_mut().zip(b) {
                        *v += bb;
                    }
                }
            }
        }
        Ok(())
    }
}

/// An RMS norm weight.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub w: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(ws: &WeightStore, name: &str, dim: usize, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm {
            w: ws.get_f32(name, dim)?,
            eps,
        })
    }

    /// Normalise each `dim`-wide row in place.
    pub fn apply(&self, x: &mut [f32]) {
        ops::rms_norm(x, &self.w, self.eps);
    }

    /// Normalised copy.
    pub fn forward(&self, x: &[f32]) -> Buf {
        let mut y = Buf::copy_of(x);
        self.apply(&mut y);
        y
    }
}

/// Causal multi-head attention of `t` new queries against all cached keys/values.
///
/// `q`: `[t, n_heads * qk_dim]`; `keys`: `[n_pos, n_kv * qk_dim]`, `values`:
/// `[n_pos, n_kv * v_dim]` where the new tokens are the last `t` positions. Query head `h`
/// reads kv head `h / (n_heads / n_kv)`. Returns `[t, n_heads * v_dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    t: usize,
    keys: &[f32],
    values: &[f32],
    n_heads: usize,
    n_kv: usize,
    qk_dim: usize,
    v_dim: usize,
    scale: f32,
) -> Buf {
    debug_assert_eq!(q.len(), t * n_heads * qk_dim);
    attention_many(
        &[AttnSeq { q, keys, values }],
        n_heads,
        n_kv,
        qk_dim,
        v_dim,
        scale,
    )
}

/// One sequence's queries and cache in [`attention_many`].
pub struct AttnSeq<'a> {
    /// `[t, n_heads * qk_dim]`: the sequence's new tokens.
    pub q: &'a [f32],
    /// `[n_pos, n_kv * qk_dim]`, the new tokens last.
    pub keys: &'a [f32],
    /// `[n_pos, n_kv * v_dim]`.
    pub values: &'a [f32],
}

/// Elements per parallel piece of the feed-forward's `silu(gate) * up` (one `exp` each; a
/// decoded token's few thousand stay on one thread).
const SWIGLU_PIECE: usize = 4096;

/// Positions per block of keys (or values) that every query head of a kv head takes in turn.
const POS_BLOCK: usize = 64;

/// [`attention`] for several sequences, each against its own cache, in one parallel region.
/// Returns the sequences' outputs stacked: `[Σ t, n_heads * v_dim]`.
pub fn attention_many(
    seqs: &[AttnSeq<'_>],
    n_heads: usize,
    n_kv: usize,
    qk_dim: usize,
    v_dim: usize,
    scale: f32,
) -> Buf {
    thread_local! {
        // This function's vectors, kept between calls (`reuse`).
        static ROWS: Stash<(usize, usize)> = const { Stash::new() };
        static UNITS: Stash<(usize, usize)> = const { Stash::new() };
        static CHUNKS: Stash<Option<&'static mut [f32]>> = const { Stash::new() };
        static TASKS: Stash<AttnTask<'static>> = const { Stash::new() };
        /// The participants' scores ([`pool::PerSlot`]).
        static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // Every output row as (sequence, token within it).
    let mut rows: Vec<(usize, usize)> = Stash::take(&ROWS);
    let mut max_pos = 0;
    for (si, s) in seqs.iter().enumerate() {
        let t = s.q.len() / (n_heads * qk_dim);
        max_pos = max_pos.max(s.keys.len() / (n_kv * qk_dim));
        rows.extend((0..t).map(|ti| (si, ti)));
    }
    let group = n_heads / n_kv;
    let mut out = Buf::zeros(rows.len() * n_heads * v_dim);
    // One task per (token, kv head), for all the query heads that read it: each block of
    // keys and values is then read from memory once and stays in L1 while every head takes
    // it. When that leaves too few tasks to share, one task per (token, head). Each head's
    // sums are the same either way (scores one per key; values added in position order).
    let per_task = if rows.len() * n_kv >= 4 * pool::threads() {
        group
    } else {
        1
    };
    let tasks_per_row = n_heads / per_task;
    // A prompt's consecutive tokens go in pairs: each key and value row is then read once for
    // both (the paired kernels give each token the bits of the single ones, and the second
    // token's extra key is done alone), which halves the reads attention's time goes to.
    let mut units: Vec<(usize, usize)> = Stash::take(&UNITS); // (first row, rows: 1 or 2)
    let mut r = 0;
    while r < rows.len() {
        let n = if r + 1 < rows.len() && rows[r + 1].0 == rows[r].0 {
            2
        } else {
            1
        };
        units.push((r, n));
        r += n;
    }
    // Head-major order: the pool hands each thread a contiguous share of the tasks, so a
    // thread then takes every token of a few heads in turn, and those heads' keys and values
    // stay in its L2 (in token order, one prompt's heads would stream from L3 for each token).
    let mut chunks: Vec<Option<&mut [f32]>> = Stash::take(&CHUNKS);
    chunks.extend(out.chunks_mut(per_task * v_dim).map(Some));
    let mut tasks: Vec<AttnTask<'_>> = Stash::take(&TASKS);
    for hg in 0..tasks_per_row {
        for &(r0, n) in &units {
            let mut take = |r: usize| {
                chunks[r * tasks_per_row + hg]
                    .take()
                    .expect("each output once")
            };
            let first = take(r0);
            let second = (n == 2).then(|| take(r0 + 1));
            tasks.push(AttnTask {
                h0: hg * per_task,
                row: r0,
                first,
                second,
            });
        }
    }
    reuse::with_local(&SCORES, |buf| {
        let slots = pool::PerSlot::new(buf, 2 * per_task * scratch_positions(max_pos));
        pool::for_each_mut_slot(&mut tasks, |slot, _, task| {
            // SAFETY: `slot` is this task's participant slot.
            let scratch = unsafe { slots.get(slot) };
            let (h0, (si, ti)) = (task.h0, rows[task.row]);
            let AttnSeq { q, keys, values } = seqs[si];
            let t = q.len() / (n_heads * qk_dim);
            let n_pos = keys.len() / (n_kv * qk_dim);
            let visible = n_pos - t + ti + 1;
            let kvh = h0 / group;
            let (ks, vs) = (n_kv * qk_dim, n_kv * v_dim);
            let keys = &keys[kvh * qk_dim..];
            let values = &values[kvh * v_dim..];
            let query = |ti: usize, j: usize| &q[(ti * n_heads + h0 + j) * qk_dim..][..qk_dim];
            let (sa, sb) = scratch.split_at_mut(per_task * max_pos);
            let sa = &mut sa[..per_task * visible];
            let paired = task.second.is_some();
            // The second token (if any) sees one key more.
            let sb = &mut sb[..if paired { per_task * (visible + 1) } else { 0 }];
            for p0 in (0..visible).step_by(POS_BLOCK) {
                let n = POS_BLOCK.min(visible - p0);
                for j in 0..per_task {
                    let a = &mut sa[j * visible..][p0..p0 + n];
                    if paired {
                        let b = &mut sb[j * (visible + 1)..][p0..p0 + n];
                        dot_strided2(query(ti, j), query(ti + 1, j), &keys[p0 * ks..], ks, a, b);
                    } else {
                        dot_strided(query(ti, j), &keys[p0 * ks..], ks, a);
                    }
                }
            }
            if paired {
                for j in 0..per_task {
                    let b = &mut sb[j * (visible + 1)..][visible..visible + 1];
                    dot_strided(query(ti + 1, j), &keys[visible * ks..], ks, b);
                }
            }
            let probs = |s: &mut [f32], len: usize| {
                for s in s.chunks_exact_mut(len) {
                    for v in s.iter_mut() {
                        *v *= scale;
                    }
                    softmax(s);
                }
            };
            probs(sa, visible);
            if paired {
                probs(sb, visible + 1);
            }
            for p0 in (0..visible).step_by(POS_BLOCK) {
                let n = POS_BLOCK.min(visible - p0);
                for j in 0..per_task {
                    let oa = &mut task.first[j * v_dim..][..v_dim];
                    let wa = &sa[j * visible..][p0..p0 + n];
                    let vals = &values[p0 * vs..];
                    match task.second.as_deref_mut() {
                        Some(ob) => {
                            let ob = &mut ob[j * v_dim..][..v_dim];
                            let wb = &sb[j * (visible + 1)..][p0..p0 + n];
                            axpy_strided2(oa, ob, wa, wb, vals, vs);
                        }
                        None => axpy_strided(oa, wa, vals, vs),
                    }
                }
            }
            if let Some(ob) = task.second.as_deref_mut() {
                for j in 0..per_task {
                    let ob = &mut ob[j * v_dim..][..v_dim];
                    let wb = &sb[j * (visible + 1)..][visible..visible + 1];
                    axpy_strided(ob, wb, &values[visible * vs..], vs);
                }
            }
        });
        // Decode at this context needs the same scores each step; only a pathological size
        // is not kept.
        reuse::trim(buf, SCORES_KEEP_BYTES);
    });
    Stash::put(&TASKS, tasks);
    Stash::put(&CHUNKS, chunks);
    Stash::put(&UNITS, units);
    Stash::put(&ROWS, rows);
    out
}

/// Attention keeps its participants' score buffers between calls up to this size.
pub(crate) const SCORES_KEEP_BYTES: usize = 64 << 20;

/// Positions a kept score scratch is sized for when `n` are needed: whole steps of 1024, so
/// that a decoding sequence's scratch grows once per 1024 positions, not with every token.
pub(crate) fn scratch_positions(n: usize) -> usize {
    n.div_ceil(1024).max(1) * 1024
}

/// One task of [`attention_many`]: query heads `h0..h0 + per_task` of the token in `row`
/// (`first`: its output for those heads) and, when `second` is there, of the next token too.
struct AttnTask<'a> {
    h0: usize,
    row: usize,
    first: &'a mut [f32],
    second: Option<&'a mut [f32]>,
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct Ffn {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Ffn {
    /// Load `blk.{layer}.ffn_{gate,up,down}{suffix}.weight` with width `ff`.
    pub fn load(
        ws: &WeightStore,
        layer: usize,
        suffix: &str,
        hidden: usize,
        ff: usize,
    ) -> Result<Ffn> {
        Ok(Ffn {
            gate: Linear::load(
                ws,
                &names::blk(layer, &format!("ffn_gate{suffix}")),
                ff,
                hidden,
                false,
            )?,
            up: Linear::load(
                ws,
                &names::blk(layer, &format!("ffn_up{suffix}")),
                ff,
                hidden,
                false,
            )?,
            down: Linear::load(
                ws,
                &names::blk(layer, &format!("ffn_down{suffix}")),
                hidden,
                ff,
                false,
            )?,
        })
    }

    /// Load routed expert `e` of `layer`.
    pub fn load_expert(
        ws: &WeightStore,
        layer: usize,
        e: usize,
        hidden: usize,
        ff: usize,
    ) -> Result<Ffn> {
        let get = |n: &str, out: usize, inp: usize| {
            let name = names::expert(layer, e, n);
            Linear::from_tensor(&name, ws.get(&name)?.clone(), out, inp)
        };
        Ok(Ffn {
            gate: get("ffn_gate", ff, hidden)?,
            up: get("ffn_up", ff, hidden)?,
            down: get("ffn_down", hidden, ff)?,
        })
    }

    /// `x`: `[t, hidden]` → `[t, hidden]`.
    pub fn forward(&self, x: &[f32], t: usize) -> Result<Buf> {
        debug_assert_eq!(x.len(), t * self.gate.inp);
        thread_local! {
            static OUT: Stash<Buf> = const { Stash::new() };
        }
        let mut outs: Vec<Buf> = Stash::take(&OUT);
        let done = Ffn::forward_into(&[(self, x)], &mut outs);
        let y = outs.pop();
        Stash::put(&OUT, outs);
        done?;
        Ok(y.unwrap_or_default())
    }

    /// Several FFNs on their own inputs: all gate and up projections in one parallel region,
    /// then all down projections in another; each output (`[t, hidden]`) appended to `outs`.
    pub fn forward_into(ffns: &[(&Ffn, &[f32])], outs: &mut Vec<Buf>) -> Result<()> {
        thread_local! {
            // This function's vectors, kept between calls (`reuse`).
            static LAYERS: Stash<(&'static Linear, &'static [f32])> = const { Stash::new() };
            static GATE_UP: Stash<Buf> = const { Stash::new() };
            static PIECES: Stash<(&'static mut [f32], &'static [f32])> = const { Stash::new() };
        }
        let mut layers: Vec<(&Linear, &[f32])> = Stash::take(&LAYERS);
        layers.extend(ffns.iter().flat_map(|(f, x)| [(&f.gate, *x), (&f.up, *x)]));
        let mut gu: Vec<Buf> = Stash::take(&GATE_UP);
        Linear::forward_into(&layers, &mut gu)?;
        // silu(gate) * up in pieces of SWIGLU_PIECE, in parallel (the pool keeps a single
        // piece on its caller).
        let mut pieces: Vec<(&mut [f32], &[f32])> = Stash::take(&PIECES);
        for pair in gu.chunks_exact_mut(2) {
            let (g, u) = pair.split_at_mut(1);
            pieces.extend(g[0].chunks_mut(SWIGLU_PIECE).zip(u[0].chunks(SWIGLU_PIECE)));
        }
        pool::for_each_mut(&mut pieces, |_, (g, u)| ops::swiglu(g, u));
        Stash::put(&PIECES, pieces);
        layers.clear();
        layers.extend(
            ffns.iter()
                .zip(gu.chunks_exact(2))
                .map(|((f, _), gu)| (&f.down, gu[0].as_slice())),
        );
        Linear::forward_into(&layers, outs)?;
        Stash::put(&LAYERS, layers);
        Stash::put(&GATE_UP, gu);
        Ok(())
    }
}

/// A mixture-of-experts feed-forward block: router, routed experts, optional shared experts.
#[derive(Debug, Clone)]
pub struct Moe {
    pub params: MoeParams,
    pub router: Linear,
    /// DeepSeek-V3 selection bias (`e_score_correction_bias`).
    pub score_bias: Option<Vec<f32>>,
    pub experts: Vec<Ffn>,
    pub shared: Option<Ffn>,
}

impl Moe {
    pub fn load(ws: &WeightStore, layer: usize, hidden: usize, p: &MoeParams) -> Result<Moe> {
        if p.n_experts_used == 0 || p.n_experts_used > p.n_experts {
            return Err(ModelError::Invalid(format!(
                "experts used per token ({}) must be in 1..={}",
                p.n_experts_used, p.n_experts
            )));
        }
        if p.n_group == 0
            || !p.n_experts.is_multiple_of(p.n_group)
            || p.topk_group == 0
            || p.topk_group > p.n_group
        {
            return Err(ModelError::Invalid(format!(
                "expert groups: {} experts, {} groups, {} groups used",
                p.n_experts, p.n_group, p.topk_group
            )));
        }
        let router = Linear::load(
            ws,
            &names::blk(layer, "ffn_gate_inp"),
            p.n_experts,
            hidden,
            false,
        )?;
        let bias_name = names::blk_bias(layer, "exp_probs_b");
        let score_bias = match p.gating {
            Gating::Sigmoid if ws.contains(&bias_name) => {
                Some(ws.get_f32(&bias_name, p.n_experts)?)
            }
            _ => None,
        };
        let experts = (0..p.n_experts)
            .map(|e| Ffn::load_expert(ws, layer, e, hidden, p.expert_ffn))
            .collect::<Result<Vec<_>>>()?;
        let shared = if p.n_shared > 0 {
            Some(Ffn::load(
                ws,
                layer,
                "_shexp",
                hidden,
                p.n_shared * p.expert_ffn,
            )?)
        } else {
            None
        };
        Ok(Moe {
            params: p.clone(),
            router,
            score_bias,
            experts,
            shared,
        })
    }

    /// Pick experts and their weights for one token's router logits.
    pub fn route(&self, logits: &[f32]) -> Vec<(usize, f32)> {
        let mut chosen = Vec::new();
        self.route_into(logits, &mut chosen);
        chosen
    }

    /// [`Moe::route`], the choice appended to `chosen` (no allocation once this thread's
    /// scratch is sized).
    pub fn route_into(&self, logits: &[f32], chosen: &mut Vec<(usize, f32)>) {
        thread_local! {
            static SCRATCH: std::cell::RefCell<RouteScratch> = std::cell::RefCell::default();
        }
        reuse::with_local(&SCRATCH, |sc| self.route_with(logits, sc, chosen));
    }

    fn route_with(&self, logits: &[f32], sc: &mut RouteScratch, chosen: &mut Vec<(usize, f32)>) {
        let p = &self.params;
        let n = p.n_experts;
        // Scores used for the weights, and (possibly biased) scores used for selection.
        let scores = &mut sc.scores;
        scores.clear();
        scores.extend_from_slice(logits);
        match p.gating {
            Gating::Softmax => softmax(scores),
            Gating::Sigmoid => scores.iter_mut().for_each(|s| *s = sigmoid(*s)),
        }
        let select = &mut sc.select;
        select.clear();
        match &self.score_bias {
            Some(b) => select.extend(scores.iter().zip(b).map(|(s, b)| s + b)),
            None => select.extend_from_slice(scores),
        }
        if p.n_group > 1 {
            // Group-limited routing: keep the best `topk_group` groups. A group's score is
            // its best expert (V2 greedy) or the sum of its best two (V3 noaux_tc).
            let per = n / p.n_group;
            let group_scores = &mut sc.group_scores;
            group_scores.clear();
            for g in 0..p.n_group {
                let s = &mut sc.group;
                s.clear();
                s.extend_from_slice(&select[g * per..(g + 1) * per]);
                s.sort_unstable_by(|a, b| b.total_cmp(a));
                let score = match p.gating {
                    Gating::Softmax => s[0],
                    Gating::Sigmoid => s.iter().take(2).sum(),
                };
                group_scores.push((g, score));
            }
            // Ties broken by index: a total order, so the unstable sort (which allocates
            // nothing) gives the stable sort's result.
            group_scores.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let keep = &mut sc.keep;
            keep.clear();
            keep.resize(p.n_group, false);
            for &(g, _) in group_scores.iter().take(p.topk_group) {
                keep[g] = true;
            }
            for (i, s) in select.iter_mut().enumerate() {
                if !keep[i / per] {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        let order = &mut sc.order;
        order.clear();
        order.extend(0..n);
        order.sort_unstable_by(|&a, &b| select[b].total_cmp(&select[a]).then(a.cmp(&b)));
        let first = chosen.len();
        chosen.extend(order.iter().take(p.n_experts_used).map(|&e| (e, scores[e])));
        let chosen = &mut chosen[first..];
        if p.norm_topk {
            let sum: f32 = chosen.iter().map(|c| c.1).sum::<f32>()
                + match p.gating {
                    Gating::Sigmoid => 1e-20,
                    Gating::Softmax => 0.0,
                };
            for c in chosen.iter_mut() {
                c.1 /= sum;
            }
        }
        for c in chosen.iter_mut() {
            c.1 *= p.routed_scale;
        }
    }

    /// `x`: `[t, hidden]` → `[t, hidden]`. Each token runs only its routed experts; the tokens
    /// routed to one expert go through it together, as one batched matmul per weight.
    pub fn forward(&self, x: &[f32], t: usize, hidden: usize) -> Result<Buf> {
        thread_local! {
            // This function's vectors, kept between calls (`reuse`).
            static ASSIGN: Stash<(usize, usize, f32)> = const { Stash::new() };
            static USED: Stash<(usize, usize, usize, Option<usize>)> = const { Stash::new() };
            static INPUTS: Stash<Buf> = const { Stash::new() };
            static FFNS: Stash<(&'static Ffn, &'static [f32])> = const { Stash::new() };
            static OUTS: Stash<Buf> = const { Stash::new() };
            /// One token's choice of experts.
            static CHOSEN: Stash<(usize, f32)> = const { Stash::new() };
        }
        let ne = self.params.n_experts;
        let logits = self.router.forward(x, t)?; // [t, n_experts]
                                                 // Every (expert, token, weight) routed, by expert then token.
        let mut assign: Vec<(usize, usize, f32)> = Stash::take(&ASSIGN);
        let mut chosen: Vec<(usize, f32)> = Stash::take(&CHOSEN);
        for ti in 0..t {
            chosen.clear();
            self.route_into(&logits[ti * ne..(ti + 1) * ne], &mut chosen);
            assign.extend(chosen.iter().map(|&(e, w)| (e, ti, w)));
        }
        Stash::put(&CHOSEN, chosen);
        drop(logits);
        // (expert, token) pairs are distinct: the unstable sort gives one order.
        assign.sort_unstable_by_key(|a| (a.0, a.1));
        // Each used expert: (expert, its span of `assign`, its gathered input if not `x`).
        let mut used: Vec<(usize, usize, usize, Option<usize>)> = Stash::take(&USED);
        let mut inputs: Vec<Buf> = Stash::take(&INPUTS);
        let mut at = 0;
        while at < assign.len() {
            let e = assign[at].0;
            let end = at + assign[at..].iter().take_while(|a| a.0 == e).count();
            let span = &assign[at..end];
            // Every token in order (always so for one token): the input is `x` itself.
            let all = span.len() == t && span.iter().enumerate().all(|(i, a)| a.1 == i);
            let input = (!all).then(|| {
                let mut xe = Buf::for_overwrite(span.len() * hidden); // every row copied
                for (row, a) in xe.chunks_exact_mut(hidden).zip(span) {
                    row.copy_from_slice(&x[a.1 * hidden..(a.1 + 1) * hidden]);
                }
                inputs.push(xe);
                inputs.len() - 1
            });
            used.push((e, at, end, input));
            at = end;
        }
        // The shared experts and every used routed expert together, as one batch of FFNs.
        let mut ffns: Vec<(&Ffn, &[f32])> = Stash::take(&FFNS);
        if let Some(s) = &self.shared {
            ffns.push((s, x));
        }
        ffns.extend(used.iter().map(|&(e, _, _, input)| {
            let xe = match input {
                Some(i) => inputs[i].as_slice(),
                None => x,
            };
            (&self.experts[e], xe)
        }));
        let mut ys: Vec<Buf> = Stash::take(&OUTS);
        Ffn::forward_into(&ffns, &mut ys)?;
        Stash::put(&FFNS, ffns);
        Stash::put(&INPUTS, inputs);
        let mut each = ys.drain(..);
        let mut out = match &self.shared {
            Some(_) => each.next().unwrap_or_default(),
            None => Buf::zeros(t * hidden),
        };
        for (&(_, from, to, _), y) in used.iter().zip(each) {
            for (&(_, ti, w), yr) in assign[from..to].iter().zip(y.chunks_exact(hidden)) {
                axpy(&mut out[ti * hidden..(ti + 1) * hidden], w, yr);
            }
        }
        Stash::put(&OUTS, ys);
        Stash::put(&USED, used);
        Stash::put(&ASSIGN, assign);
        Ok(out)
    }
}

/// [`Moe::route`]'s working vectors.
#[derive(Default)]
struct RouteScratch {
    scores: Vec<f32>,
    select: Vec<f32>,
    group: Vec<f32>,
    group_scores: Vec<(usize, f32)>,
    keep: Vec<bool>,
    order: Vec<usize>,
}

/// Either a dense FFN or a mixture of experts.
#[derive(Debug, Clone)]
pub enum FeedForward {
    Dense(Box<Ffn>),
    Moe(Box<Moe>),
}

impl FeedForward {
    pub fn forward(&self, x: &[f32], t: usize, hidden: usize) -> Result<Buf> {
        match self {
            FeedForward::Dense(f) => f.forward(x, t),
            FeedForward::Moe(m) => m.forward(x, t, hidden),
        }
    }
}

/// Token embedding lookup with range checking.
pub fn embed(table: &Tensor, tokens: &[u32], hidden: usize) -> Result<Buf> {
    let w = table.as_weight()?;
    let mut x = Buf::zeros(tokens.len() * hidden);
    for (i, &tok) in tokens.iter().enumerate() {
        if tok as usize >= w.rows {
            return Err(ModelError::TokenOutOfRange {
                id: tok,
                vocab: w.rows,
            });
        }
        w.dequantize_row(tok as usize, &mut x[i * hidden..(i + 1) * hidden])?;
    }
    Ok(x)
}

/// `a += b` elementwise.
pub fn add_in_place(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}
