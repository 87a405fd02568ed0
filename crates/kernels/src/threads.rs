//! The thread pool: rayon's global pool, sized once at start-up. Every op opens at most one
//! parallel region on it.

use std::hint::black_box;
use std::time::Instant;

/// Physical cores of this machine (hyper-threads share a core's execution units and memory
/// port, so decode gains nothing from them); at least 1.
pub fn physical_cores() -> usize {
    num_cpus::get_physical().max(1)
}

/// Size the global pool: `threads`, or the physical cores when `None`. Returns the size in
/// effect. Call before any parallel work; a second call keeps the first size.
pub fn init(threads: Option<usize>) -> usize {
    let n = threads.unwrap_or_else(physical_cores).max(1);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    rayon::current_num_threads()
}

/// Measured memory read bandwidth in bytes per second with every thread of the pool reading
/// its share of a `bytes`-sized buffer (make it much larger than the last-level cache); the
/// best of `passes` passes.
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    use rayon::prelude::*;
    let words = (bytes / 8).max(1 << 16);
    // Filled with non-zero data so the pages are really backed.
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = 1 << 16;
    let mut best = 0f64;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        let s: u64 = buf
            .par_chunks(chunk)
            .map(|c| {
                let mut acc = [0u64; 8];
                for w in c.chunks_exact(8) {
                    for i in 0..8 {
                        acc[i] = acc[i].wrapping_add(w[i]);
                    }
                }
                acc.iter().fold(0u64, |a, b| a.wrapping_add(*b))
            })
            .reduce(|| 0, |a, b| a.wrapping_add(b));
        black_box(s);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((words * 8) as f64 / secs);
    }
    best
}

/// Read every byte of `data` once, in parallel (brings memory-mapped weights into the page
/// cache before timing). Returns a checksum so the reads are not optimised away.
pub fn touch(data: &[u8]) -> u64 {
    use rayon::prelude::*;
    data.par_chunks(1 << 20)
        .map(|c| c.iter().step_by(64).map(|&b| b as u64).sum::<u64>())
        .sum()
}
