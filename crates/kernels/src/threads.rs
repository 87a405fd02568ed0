//! Thread counts: the forward pass's spinning pool ([`crate::pool`]) and rayon's global pool
//! (loading, the bandwidth probe) are sized together, once at start-up. Every op opens at
//! most one parallel region.

use std::hint::black_box;
use std::time::Instant;

/// Physical cores of this machine (hyper-threads share a core's execution units and memory
/// port, so decode gains nothing from them); at least 1.
pub fn physical_cores() -> usize {
    num_cpus::get_physical().max(1)
}

/// Size both pools: `threads`, or the physical cores when `None`. Returns the forward pass's
/// pool size in effect. Call before any parallel work; a second call keeps the first size.
pub fn init(threads: Option<usize>) -> usize {
    let n = threads.unwrap_or_else(physical_cores).max(1);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    crate::pool::init(n)
}

/// Sum of the words of `c` (the aligned middle read as u64), eight running sums so the
/// loads are independent.
fn sum_words(c: &[u8]) -> u64 {
    // SAFETY: every bit pattern is a valid u64.
    let (head, mid, tail) = unsafe { c.align_to::<u64>() };
    let mut acc = [0u64; 8];
    let mut chunks = mid.chunks_exact(8);
    for w in &mut chunks {
        // Software prefetch 4 KiB ahead, as the kernels do: one thread's hardware prefetcher
        // alone does not keep the bus busy, and the probe should measure what the bus gives.
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching is a hint and never faults, whatever the address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch(w.as_ptr().wrapping_add(512) as *const i8, _MM_HINT_T0);
        }
        for i in 0..8 {
            acc[i] = acc[i].wrapping_add(w[i]);
        }
    }
    let rest = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, b| a.wrapping_add(*b));
    let edges = head.iter().chain(tail).map(|&b| b as u64).sum::<u64>();
    acc.iter()
        .fold(rest.wrapping_add(edges), |a, b| a.wrapping_add(*b))
}

/// Measured memory read bandwidth in bytes per second: every thread of the pool streams its
/// share of `data` (all slices, in 1 MiB pieces); the best of `passes` passes. Give it far more
/// bytes than the last-level cache holds, e.g. a model's weights once they are in the page
/// cache, so that nothing extra is allocated.
pub fn read_bandwidth_of(data: &[&[u8]], passes: usize) -> f64 {
    use rayon::prelude::*;
    let pieces: Vec<&[u8]> = data.iter().flat_map(|d| d.chunks(1 << 20)).collect();
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut best = 0f64;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        let s = pieces
            .par_iter()
            .map(|p| sum_words(p))
            .reduce(|| 0, |a, b| a.wrapping_add(b));
        black_box(s);
        best = best.max(total as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// [`read_bandwidth_of`] a freshly allocated, filled buffer of `bytes` bytes.
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    let buf: Vec<u8> = (0..bytes.max(1 << 20)).map(|i| i as u8).collect();
    read_bandwidth_of(&[&buf], passes)
}

/// Read every byte of `data` once, in parallel (brings memory-mapped weights into the page
/// cache before timing). Returns a checksum so the reads are not optimised away.
pub fn touch(data: &[u8]) -> u64 {
    use rayon::prelude::*;
    data.par_chunks(1 << 20)
        .map(|c| c.iter().step_by(64).map(|&b| b as u64).sum::<u64>())
        .sum()
}
