//! Several matmuls in one parallel region: `out_j[t, n_j] = x_j[t, k_j] · w_j[n_j, k_j]ᵀ`.
//!
//! Decode runs many small matmuls per layer (q / k / v, gate / up, every routed expert); each
//! separate parallel region costs a fork and a join. Here the activations of each job are
//! quantized once (shared between jobs that read the same activations in the same format),
//! then the rows of all jobs are cut into tasks of [`ROWS_PER_TASK`] rows and run as one
//! parallel loop, so no thread idles while another finishes a job.
//!
//! Jobs with at least [`gemm_min_tokens`] tokens (prefill, and batched decode outside
//! [`with_row_dots`]), and every job under [`with_tiled`], go through [`crate::gemm`]'s tiled
//! micro-kernel where the CPU has it: each task converts its rows once and multiplies them
//! with every token, writing straight into the output. The other jobs take the per-row dots;
//! several tokens at a time where the ISA has multi-row kernels (on AVX-512 the 32-element
//! formats' take their activations rearranged into groups, [`qdot::GroupedActs`]), each token
//! with the bits it would get alone.

use crate::dtype::{DType, KernelError};
use crate::gemm;
use crate::ops::WeightRef;
use crate::pool;
use crate::qdot::{self, GroupedActs, QuantActs, RowDot};
use crate::reuse::{self, Stash};
use crate::vecf32;
use std::cell::RefCell;

/// Weight rows per task: small enough that threads share uneven work, large enough to
/// amortise scheduling.
pub const ROWS_PER_TASK: usize = 16;

/// Tokens from which a job against `dtype` weights takes the tiled prefill kernel (below it,
/// the per-row dots, several tokens per call where the ISA has multi-row kernels). The tiled kernel converts
/// every row it reads, so it pays off only once enough tokens share that work; where, depends
/// on how fast each format's row dots already are. Measured single-threaded with
/// `cargo run -p mixture-kernels --release --example qdot_speed prefill 5 T` (T = 4..256,
/// AVX-512, k = 2048): Q2_K/Q3_K break even at ~24, Q4_K/Q5_K at ~32-64, Q6_K at ~200, Q8_0
/// at ~8. Against the grouped multi-row dots of Q4_0/Q4_1/Q5_0/Q5_1 (`prefill 9 T K`, T =
/// 16..64, K = 576 and 2048, Zen 4, column "grp rows" against "tiled"): Q4_0/Q5_0 at ~32-48,
/// Q4_1 at ~48-64, Q5_1 above 64 (before the grouped kernels they broke even at 4-12).
///
/// With AMX (Intel Xeon, 4th generation on) the tiled kernel's products are so cheap that it
/// breaks even at 8-16 tokens for most formats (Q6_K, whose conversion is slow, at ~128).
///
/// With AVX2 only (K-quants alone have a tiled kernel there; `prefill 3 T 2048` on a 2-core
/// EPYC without AVX-512): Q2_K..Q5_K break even at ~32 tokens, Q6_K at ~100; at 64 tokens the
/// tiled kernel is 1.2-1.5x the multi-row dots, at 256 tokens 1.3-1.8x.
pub fn gemm_min_tokens(dtype: DType) -> usize {
    if gemm::Kernel::best() == gemm::Kernel::Amx {
        // `prefill 5 T 2048` (T = 8..128), one thread, AMX tiles against the better of
        // `dot_rows` and `grp rows`.
        return match dtype {
            DType::Q8_0 => 8,
            DType::Q4_0 => 12,
            DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q4K | DType::Q5K => 16,
            DType::Q3K => 24,
            DType::Q2K => 32,
            DType::Q6K => 128,
            _ => usize::MAX,
        };
    }
    if gemm::Kernel::best() == gemm::Kernel::Avx2 {
        return match dtype {
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K => 32,
            DType::Q6K => 96,
            _ => usize::MAX,
        };
    }
    match dtype {
        DType::Q8_0 => 8,
        DType::Q4_0 | DType::Q5_0 => 32,
        DType::Q4_1 => 48,
        DType::Q5_1 => 64,
        DType::Q2K | DType::Q3K => 32,
        DType::Q4K | DType::Q5K => 64,
        DType::Q6K => 256,
        _ => usize::MAX,
    }
}

/// One matmul: `x` holds `t = x.len() / w.cols` rows; `out.len() == t * w.rows`.
pub struct MatJob<'a> {
    pub w: WeightRef<'a>,
    pub x: &'a [f32],
    pub out: &'a mut [f32],
}

/// How a job's rows are dotted with its activations.
enum Dot<'a> {
    Quant(RowDot<'a>),
    /// The tiled kernel, against these activations.
    Gemm(&'a gemm::TiledActs),
    /// Float weights: each row dequantized to f32, then dotted with `x`.
    Float(&'a [f32]),
}

enum Dst<'a> {
    /// One token: the output's own rows.
    Rows(&'a mut [f32]),
    /// Several tokens on the per-row dots: row `first_row + i` of token `c` goes to
    /// `c * rows + first_row + i` of the job's output, for `i` below the count.
    Strided(OutPtr, usize),
    /// The job's output `[t, n]` itself, from the task's first row on (tiled kernel).
    Out(OutPtr, usize),
}

struct Task<'a> {
    job: usize,
    first_row: usize,
    dst: Dst<'a>,
}

/// A job's output, written by several tasks at disjoint rows of every token.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements (their own weight rows) of the output.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Which kernel family a thread's matmuls take ([`Family::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// By token count: the tiled kernel from [`gemm_min_tokens`] tokens up.
    Auto,
    /// See [`with_row_dots`].
    RowDots,
    /// See [`with_tiled`].
    Tiled,
}

impl Family {
    /// Run `f` with every matmul it starts on this thread on this family.
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Family);
        impl Drop for Restore {
            fn drop(&mut self) {
                FAMILY.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(FAMILY.with(|c| c.replace(self)));
        f()
    }
}

thread_local! {
    /// Set while [`with_row_dots`] or [`with_tiled`] runs on this thread.
    static FAMILY: std::cell::Cell<Family> = const { std::cell::Cell::new(Family::Auto) };
}

/// Run `f` with every matmul it starts on this thread kept on the per-row dots, whatever its
/// token count: then each token's result is the same bits whichever other tokens share its
/// job (the row dots compute every token alone; the tiled kernel rounds and sums differently).
/// The batching scheduler runs its decode rows so, which makes a sequence's output independent
/// of what else runs with it.
pub fn with_row_dots<R>(f: impl FnOnce() -> R) -> R {
    Family::RowDots.run(f)
}

/// Run `f` with every matmul it starts on this thread on the tiled kernel wherever this CPU
/// has one for the format ([`gemm::fast_for`]), whatever its token count (other formats keep
/// the per-row dots). The tiled kernels compute each token's column alone too (the same sums
/// in the same order whichever tokens share a tile), so a token's result is again the same
/// bits whichever other tokens share its job — while a batch of several sequences' prompts
/// shares each weight pass. The batching scheduler runs prompts so.
pub fn with_tiled<R>(f: impl FnOnce() -> R) -> R {
    Family::Tiled.run(f)
}

/// Whether a job of `t` tokens against `dtype` weights runs on the tiled prefill kernel.
pub fn takes_tiled_kernel(dtype: DType, t: usize) -> bool {
    let fast = gemm::fast_for(dtype);
    match FAMILY.with(|c| c.get()) {
        Family::Auto => t >= gemm_min_tokens(dtype) && fast,
        Family::RowDots => false,
        Family::Tiled => fast,
    }
}

/// Per-job facts of one [`matmul_many`] call.
#[derive(Clone, Copy)]
struct JobInfo {
    /// Tokens.
    t: usize,
    /// On the tiled kernel, against `gemm_acts[i]`.
    gemm: Option<usize>,
    /// On the row dots, against `acts[i]` (`None` and not tiled: float weights).
    act: Option<usize>,
}

/// A job's weights and how its rows are dotted.
struct Plan<'a> {
    w: WeightRef<'a>,
    t: usize,
    dot: Dot<'a>,
}

/// A participant's scratch in [`matmul_many`]: a float row, the tiled kernel's buffers, a
/// `[n, t]` block (each sized when a task first needs it).
type WorkerScratch = (Vec<f32>, gemm::Scratch, Vec<f32>);

/// Activations quantized for the tiled kernel: (input pointer, length, activations).
type GemmActs = (usize, usize, gemm::TiledActs);
/// Activations quantized for the row dots: (input pointer, length, kind, activations).
type RowActs = (usize, usize, Option<qdot::ActKind>, QuantActs);

thread_local! {
    // The vectors of one `matmul_many` call, kept between calls (`reuse`): a decoded token
    // runs a few hundred matmuls and allocates none of these again.
    static INFO: Stash<JobInfo> = const { Stash::new() };
    static GEMM_ACTS: Stash<GemmActs> = const { Stash::new() };
    static ACTS: Stash<RowActs> = const { Stash::new() };
    static GROUPED: Stash<Option<GroupedActs>> = const { Stash::new() };
    static PLANS: Stash<Plan<'static>> = const { Stash::new() };
    static TASKS: Stash<Task<'static>> = const { Stash::new() };
    /// The participants' scratch ([`pool::PerSlot`]).
    static SCRATCH: RefCell<Vec<WorkerScratch>> = const { RefCell::new(Vec::new()) };
}

/// Run every job; see the module docs.
pub fn matmul_many(jobs: &mut [MatJob<'_>]) -> Result<(), KernelError> {
    // Shapes, and which jobs take the tiled kernel (activations quantized for it once per
    // distinct input).
    let mut info: Vec<JobInfo> = Stash::take(&INFO);
    let mut gemm_acts: Vec<GemmActs> = Stash::take(&GEMM_ACTS);
    for j in jobs.iter() {
        let k = j.w.cols;
        assert!(k > 0 && j.x.len() % k == 0, "matmul: activation shape");
        let t = j.x.len() / k;
        assert_eq!(j.out.len(), t * j.w.rows, "matmul: output shape");
        let gemm = takes_tiled_kernel(j.w.dtype, t).then(|| {
            let key = (j.x.as_ptr() as usize, j.x.len());
            let found = gemm_acts
                .iter()
                .position(|a| (a.0, a.1) == key && a.2.fits(j.w.dtype));
            found.unwrap_or_else(|| {
                let a = gemm::TiledActs::quantize(j.w.dtype, j.x, j.w.cols);
                gemm_acts.push((key.0, key.1, a));
                gemm_acts.len() - 1
            })
        });
        info.push(JobInfo { t, gemm, act: None });
    }
    // The other jobs' activations, quantized once per distinct (activations, format).
    let mut acts: Vec<RowActs> = Stash::take(&ACTS);
    for (j, inf) in jobs.iter().zip(info.iter_mut()) {
        if inf.gemm.is_some() {
            continue;
        }
        let key = (
            j.x.as_ptr() as usize,
            j.x.len(),
            qdot::ActKind::of(j.w.dtype),
        );
        let found = acts
            .iter()
            .position(|a| (a.0, a.1, a.2) == key && key.2.is_some());
        inf.act = match found {
            Some(i) => Some(i),
            None => QuantActs::for_weight(j.w.dtype, j.x, j.w.cols).map(|q| {
                acts.push((key.0, key.1, key.2, q));
                acts.len() - 1
            }),
        };
    }
    let table = qdot::table();
    // Jobs of several tokens on a format with grouped multi-row kernels: their activations
    // also rearranged into groups, once per distinct input (the kernels give each token the
    // bits of its single-row dot, so the one-token jobs of decode need no groups).
    let mut grouped: Vec<Option<GroupedActs>> = Stash::take(&GROUPED);
    grouped.extend(acts.iter().enumerate().map(|(i, a)| {
        jobs.iter()
            .zip(info.iter())
            .find(|(j, inf)| inf.act == Some(i) && inf.t > 1 && table.g.has(j.w.dtype))
            .and_then(|(j, _)| GroupedActs::new(&a.3, j.w.cols))
    }));
    let mut plans: Vec<Plan<'_>> = Stash::take(&PLANS);
    plans.extend(jobs.iter().zip(info.iter()).map(|(j, inf)| {
        let dot = match (inf.act, inf.gemm) {
            (_, Some(g)) => Dot::Gemm(&gemm_acts[g].2),
            (Some(i), None) => {
                let rd = RowDot::new(table, j.w.dtype, &acts[i].3, j.w.cols)
                    .expect("activations are quantized for this weight type");
                Dot::Quant(match &grouped[i] {
                    Some(ga) => rd.with_groups(table, j.w.dtype, ga),
                    None => rd,
                })
            }
            (None, None) => Dot::Float(j.x),
        };
        Plan {
            w: j.w,
            t: inf.t,
            dot,
        }
    }));
    let mut tasks: Vec<Task<'_>> = Stash::take(&TASKS);
    for (ji, (j, inf)) in jobs.iter_mut().zip(info.iter()).enumerate() {
        let t = inf.t;
        if t == 0 {
            continue;
        }
        if t > 1 || inf.gemm.is_some() {
            // Tiled jobs (several tokens, or any under `with_tiled`) and the per-row dots of
            // several tokens write the `[t, rows]` output themselves, a task's rows at a time.
            let out = OutPtr(j.out.as_mut_ptr());
            for first_row in (0..j.w.rows).step_by(ROWS_PER_TASK) {
                let n = ROWS_PER_TASK.min(j.w.rows - first_row);
                tasks.push(Task {
                    job: ji,
                    first_row,
                    dst: if inf.gemm.is_some() {
                        Dst::Out(out, n)
                    } else {
                        Dst::Strided(out, n)
                    },
                });
            }
            continue;
        }
        for (c, dst) in j.out.chunks_mut(ROWS_PER_TASK).enumerate() {
            tasks.push(Task {
                job: ji,
                first_row: c * ROWS_PER_TASK,
                dst: Dst::Rows(dst),
            });
        }
    }
    let kernel = gemm::Kernel::best();
    let result = reuse::with_local(&SCRATCH, |buf| {
        let slots = pool::PerSlot::new(buf, 1);
        pool::try_for_each_mut_slot(&mut tasks, |slot, _, task| {
            // SAFETY: `slot` is this task's participant slot.
            let (row_f32, bufs, tmp) = &mut unsafe { slots.get(slot) }[0];
            run_task(&plans[task.job], task, kernel, row_f32, bufs, tmp)
        })
    });
    // Everything back for the next call; the quantized activations' buffers too.
    Stash::put(&TASKS, tasks);
    Stash::put(&PLANS, plans);
    Stash::put(&GROUPED, grouped);
    for (.., q) in acts.drain(..) {
        q.recycle();
    }
    Stash::put(&ACTS, acts);
    Stash::put(&GEMM_ACTS, gemm_acts);
    Stash::put(&INFO, info);
    result
}

/// One task of [`matmul_many`]: its rows of its job, for every token.
fn run_task(
    plan: &Plan<'_>,
    task: &mut Task<'_>,
    kernel: gemm::Kernel,
    row_f32: &mut Vec<f32>,
    bufs: &mut gemm::Scratch,
    tmp: &mut Vec<f32>,
) -> Result<(), KernelError> {
    let (w, t) = (&plan.w, plan.t);
    let rb = w.row_bytes();
    let dst = match &mut task.dst {
        Dst::Rows(d) => d,
        &mut Dst::Strided(out, n) => {
            // The task's rows for every token, `[n, t]`, then scattered into place.
            tmp.clear();
            tmp.resize(n * t, 0f32);
            dot_into(w, &plan.dot, task.first_row, t, tmp, row_f32)?;
            for (i, d) in tmp.chunks_exact(t).enumerate() {
                for (c, &v) in d.iter().enumerate() {
                    // SAFETY: row `first_row + i < rows` of token `c < t` is inside the
                    // `[t, rows]` output; only this task writes its rows.
                    unsafe { *out.0.add(c * w.rows + task.first_row + i) = v };
                }
            }
            return Ok(());
        }
        &mut Dst::Out(out, n) => {
            let Dot::Gemm(a) = &plan.dot else {
                unreachable!("only tiled jobs write their output directly")
            };
            let data = &w.data[task.first_row * rb..(task.first_row + n) * rb];
            let out = gemm::Out {
                // SAFETY: row `first_row + r` of token `c` is `c * rows + first_row + r`,
                // inside the `[t, rows]` output; no other task writes these rows.
                ptr: unsafe { out.0.add(task.first_row) },
                ld: w.rows,
            };
            // SAFETY: as above; `kernel` was chosen for this CPU; `a` was quantized for
            // this job's weights.
            unsafe { gemm::run_rows(kernel, w.dtype, data, rb, n, w.cols, a, bufs, out) };
            return Ok(());
        }
    };
    dot_into(w, &plan.dot, task.first_row, t, dst, row_f32)
}

/// Rows `first_row..` of `w` (as many as `dst` holds, `t` values each) dotted with every
/// token: `dst[i * t + c]` = row `first_row + i` · token `c`.
fn dot_into(
    w: &WeightRef<'_>,
    dot: &Dot<'_>,
    first_row: usize,
    t: usize,
    dst: &mut [f32],
    row_f32: &mut Vec<f32>,
) -> Result<(), KernelError> {
    let rb = w.row_bytes();
    if let (Dot::Quant(rd), 1) = (dot, t) {
        // One token (decode): the task's rows in one call.
        let rows = &w.data[first_row * rb..(first_row + dst.len()) * rb];
        rd.dot_weight_rows(rows, rb, dst);
        return Ok(());
    }
    for (i, d) in dst.chunks_exact_mut(t).enumerate() {
        let r = first_row + i;
        let wr = &w.data[r * rb..(r + 1) * rb];
        match dot {
            Dot::Quant(rd) => rd.dot_rows(wr, 0, d),
            Dot::Gemm(_) => unreachable!("tiled jobs are handled by the caller"),
            Dot::Float(x) => {
                let k = w.cols;
                // SAFETY: every bit pattern is an f32; `align_to` only takes the aligned middle.
                let (head, stored, _) = unsafe { wr.align_to::<f32>() };
                let as_stored = cfg!(target_endian = "little") && w.dtype == DType::F32;
                let row: &[f32] = if as_stored && head.is_empty() && stored.len() == k {
                    // F32 rows as stored (the routers' gates): no copy.
                    stored
                } else {
                    // Sized here, where it is needed, so that a decode step (whose float
                    // weights, the routers, are dotted as stored) never sizes it.
                    if row_f32.len() < k {
                        row_f32.resize(k, 0.0);
                    }
                    let row = &mut row_f32[..k];
                    w.dtype.dequantize_row(wr, row)?;
                    row
                };
                for (ti, o) in d.iter_mut().enumerate() {
                    *o = vecf32::dot(&x[ti * k..(ti + 1) * k], row);
                }
            }
        }
    }
    Ok(())
}

impl DType {
    /// Whether matmuls against this type run on the integer kernels.
    pub fn is_quantized_for_dot(self) -> bool {
        qdot::ActKind::of(self).is_some()
    }
}
