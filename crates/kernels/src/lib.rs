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
pub mod qdot;
pub mod quants;
pub mod threads;
pub mod vecf32;

pub use dtype::{DType, KernelError};
pub use ops::WeightRef;
