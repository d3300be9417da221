//! Per-register field layouts, one module per register named after it
//! (`pmscr_el1`, `mdcr_el2`, ...). The modules are re-exported at the crate
//! root; this module only groups the source files by architectural area.
//!
//! Each register module holds its fields as [`Field`](crate::Field)
//! constants named as in the Arm ARM, named field values where the Arm ARM
//! gives them, and a `RES0` mask where the register is fully described.

mod el2;
mod fgt;
mod gic;
mod id;
mod pmu;
mod spe;
mod timer;

pub use el2::*;
pub use fgt::*;
pub use gic::*;
pub use id::*;
pub use pmu::*;
pub use spe::*;
pub use timer::*;

#[cfg(test)]
pub(crate) mod testutil {
    use crate::Field;

    /// Asserts that `fields` are pairwise disjoint, disjoint from `res0`,
    /// and (when `complete`) that together with `res0` they cover all 64 bits.
    pub(crate) fn assert_layout(fields: &[Field], res0: u64, complete: bool) {
        let mut seen = res0;
        for f in fields {
            assert_eq!(
                seen & f.mask(),
                0,
                "field {f:?} overlaps another field or RES0"
            );
            seen |= f.mask();
        }
        if complete {
            assert_eq!(
                seen,
                u64::MAX,
                "layout leaves bits {:#x} undescribed",
                !seen
            );
        }
    }
}
