//! (SIMD kernels go here.)

use crate::qdot::{DotTable, Isa};

pub fn install(_t: &mut DotTable, _isa: Isa) {}
