//! Numeric kernels for mixture.
//!
//! This crate knows about numbers, block formats and threads; it never knows about models,
//! files or tokens. Models call a handful of ops (`matmul`, `rms_norm`, `rope`, `softmax`, ...)
//! on plain slices and dimensions.

pub mod actquant;
pub mod dtype;
pub mod gemm;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod qdot;
pub mod quants;
pub mod reuse;
pub mod threads;
pub mod vecf32;

pub use dtype::{DType, KernelError};
pub use ops::WeightRef;

/// The kernels this CPU runs, in words: the row dots' instruction set and which formats the
/// tiled prefill kernel takes (for `bench` output and benchmark records).
pub fn describe() -> String {
    let isa = format!("{:?}", qdot::table().isa).to_lowercase();
    let tiled = match gemm::Kernel::best() {
        gemm::Kernel::Amx => "amx tiled prefill for every integer format",
        gemm::Kernel::Avx512 => "avx512 tiled prefill for every integer format",
        gemm::Kernel::Avx2 => "avx2 tiled prefill for the K-quants",
        gemm::Kernel::Scalar => "no tiled prefill",
    };
    format!("{isa} row dots, {tiled}")
}
