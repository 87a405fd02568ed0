//! Decode's memory-bound case in isolation: one token against weights far larger than the
//! caches, through `matmul_many` on every thread, in GB/s of weight bytes, next to the bus
//! speed the bandwidth probe measures. Shows how much of the bus the row kernels and the pool
//! reach without a model around them.
//!
//! `cargo run -p mixture-kernels --release --example matmul_stream [FORMAT [MIB [JOBS [ROUNDS [THREADS]]]]]`
//! (FORMAT one of q4_k, q5_0, q8_0, q6_k, q4_0, q4_1; default q4_k, 1024 MiB, 8 jobs, 5 rounds;
//! each job is a 1408 x 2048 weight like one DeepSeek-V2-Lite expert's gate, all of a round's
//! jobs in one `matmul_many` call, as decode runs a layer's routed experts).

use mixture_kernels::matmul::{matmul_many, MatJob};
use mixture_kernels::{threads, DType, WeightRef};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fmt = match args.get(1).map(String::as_str).unwrap_or("q4_k") {
        "q4_k" => DType::Q4K,
        "q5_0" => DType::Q5_0,
        "q8_0" => DType::Q8_0,
        "q6_k" => DType::Q6K,
        "q4_0" => DType::Q4_0,
        "q4_1" => DType::Q4_1,
        other => panic!("unknown format {other}"),
    };
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let per_call: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let rounds: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5);
    let n_threads = threads::init(args.get(5).and_then(|s| s.parse().ok()));
    let (rows, cols) = (1408, 2048);
    let rb = fmt.row_bytes(cols).expect("row bytes");
    let jb = rows * rb;
    let n_jobs = ((mib << 20) / jb).max(per_call);
    // Small random-looking bytes with tame scales: the values do not matter for speed, but
    // f16 NaNs or infinities could slow the float parts.
    let mut data = vec![0u8; n_jobs * jb];
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for b in data.iter_mut() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = (s as u8) & 0x3f;
    }
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let mut outs = vec![vec![0f32; rows]; per_call];
    let bw = threads::read_bandwidth_of(&[&data], 3);
    println!(
        "{n_threads} threads, {fmt:?}, {n_jobs} jobs of {rows} x {cols} ({:.0} MiB), {per_call} per call",
        data.len() as f64 / (1 << 20) as f64
    );
    println!("bandwidth probe      {:6.1} GB/s", bw / 1e9);
    for round in 0..rounds {
        let t0 = Instant::now();
        for call in data.chunks(per_call * jb) {
            let mut jobs: Vec<MatJob> = call
                .chunks_exact(jb)
                .zip(outs.iter_mut())
                .map(|(w, out)| MatJob {
                    w: WeightRef::new(fmt, rows, cols, w).expect("weight"),
                    x: &x,
                    out,
                })
                .collect();
            matmul_many(&mut jobs).expect("matmul");
        }
        let s = t0.elapsed().as_secs_f64();
        println!(
            "round {round}: matmul {:6.1} GB/s ({:.0}% of the probe)",
            data.len() as f64 / s / 1e9,
            100.0 * data.len() as f64 / s / bw
        );
    }
}
