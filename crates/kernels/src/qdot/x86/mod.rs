//! x86-64 kernels: AVX2 (with FMA and F16C) and AVX-512 (F, BW, VL, VNNI). Each file fills
//! the entries it implements into a [`DotTable`]; anything it leaves keeps the scalar twin.

#[cfg(target_arch = "x86_64")]
mod grouped;
#[cfg(target_arch = "x86_64")]
mod kquants;
#[cfg(target_arch = "x86_64")]
mod kquants_n;
#[cfg(target_arch = "x86_64")]
mod legacy;
#[cfg(target_arch = "x86_64")]
mod legacy_n;

/// Sum of a 256-bit register's 8 f32 lanes (AVX2), for the kernels outside `qdot` too.
#[cfg(target_arch = "x86_64")]
pub(crate) use legacy::hsum as hsum256;

use super::{DotTable, Isa};

pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Fill `t` with the kernels for `isa` (the caller has checked the CPU supports it).
#[allow(unused_variables)]
pub fn install(t: &mut DotTable, isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    {
        legacy::install(t, isa);
        legacy_n::install(t, isa);
        grouped::install(t, isa);
        kquants::install(t, isa);
    }
}
