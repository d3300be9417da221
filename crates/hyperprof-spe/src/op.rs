//! What an operation type packet says beyond its class: the second-level
//! class (subclass) of loads and stores, other operations and branches, as
//! the Arm ARM encodes them up to FEAT_SPEv1p4, FEAT_SME and FEAT_GCS (the
//! encodings newer perf decodes; perf 6.1 prints only some of them, and
//! [`crate::text`] keeps its text).

use crate::record::OpType;
use crate::OpClass;

/// The second-level class of an operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subclass {
    /// Load/store of general-purpose registers.
    GpReg,
    /// Load/store of SIMD&FP registers.
    SimdFp,
    /// Load/store of unspecified registers.
    UnspecReg,
    /// MRS/MSR turned into a load/store by HCR_EL2.NV2.
    NvSysreg,
    /// Load/store of allocation tags (FEAT_MTE).
    MteTag,
    /// A memory copy (CPY*) load or store.
    Memcpy,
    /// A memory set (SET*) store.
    Memset,
    /// SVE or SME load/store with the effective vector length in bits.
    SveSme {
        /// Effective vector length.
        evl: u32,
        /// Predicated.
        pred: bool,
        /// Gather/scatter.
        sg: bool,
    },
    /// Guarded control stack access (FEAT_GCS).
    Gcs {
        /// A common GCS instruction (payload bit 2).
        comm: bool,
    },
    /// Atomic, exclusive or acquire/release load/store.
    Extended {
        /// Atomic.
        atomic: bool,
        /// Exclusive.
        excl: bool,
        /// Acquire/release.
        ar: bool,
    },
    /// A load/store subclass no architecture version defines.
    OtherLoadStore,
    /// SVE data processing with the effective vector length in bits.
    Sve {
        /// Effective vector length.
        evl: u32,
        /// Floating point.
        fp: bool,
        /// Predicated.
        pred: bool,
    },
    /// SME data processing with the effective tile size in bits.
    Sme {
        /// Effective tile size.
        ets: u32,
        /// Floating point.
        fp: bool,
    },
    /// Other operation (conditional select when `cond`).
    Other {
        /// Conditional select or compare.
        cond: bool,
    },
    /// A branch or exception return.
    Branch {
        /// Conditional.
        cond: bool,
        /// Indirect.
        indirect: bool,
        /// A GCS-checked branch (payload bit 2).
        gcs: bool,
        /// Call/return kind, payload bits [4:3]: 1 branch with link, 2
        /// return, 3 other; 0 not reported.
        call_return: u8,
    },
    /// The reserved class.
    Reserved,
}

impl Subclass {
    /// The subclass of `op`.
    pub fn of(op: OpType) -> Subclass {
        let p = op.payload;
        match op.class {
            OpClass::LoadStore => {
                if p & 0xE2 == 0x02 {
                    Subclass::Extended {
                        atomic: p & 0x04 != 0,
                        excl: p & 0x08 != 0,
                        ar: p & 0x10 != 0,
                    }
                } else if p == 0x25 {
                    Subclass::Memset
                } else {
                    match p & 0xFE {
                        0x00 => Subclass::GpReg,
                        0x04 => Subclass::SimdFp,
                        0x10 => Subclass::UnspecReg,
                        0x30 => Subclass::NvSysreg,
                        0x14 => Subclass::MteTag,
                        0x20 => Subclass::Memcpy,
                        _ if p & 0x0A == 0x08 => Subclass::SveSme {
                            evl: 32 << ((p >> 4) & 7),
                            pred: p & 0x04 != 0,
                            sg: p & 0x80 != 0,
                        },
                        _ if p & 0xFA == 0x40 => Subclass::Gcs {
                            comm: p & 0x04 != 0,
                        },
                        _ => Subclass::OtherLoadStore,
                    }
                }
            }
            OpClass::Other => match p & 0x89 {
                0x08 => Subclass::Sve {
                    evl: 32 << ((p >> 4) & 7),
                    fp: p & 0x02 != 0,
                    pred: p & 0x04 != 0,
                },
                0x88 => Subclass::Sme {
                    ets: 128 << ((u32::from(p >> 4) & 7) << 1 | u32::from(p >> 2) & 1),
                    fp: p & 0x02 != 0,
                },
                _ => Subclass::Other { cond: p & 1 != 0 },
            },
            OpClass::Branch => Subclass::Branch {
                cond: p & 1 != 0,
                indirect: p & 0x02 != 0,
                gcs: p & 0x04 != 0,
                call_return: (p >> 3) & 3,
            },
            OpClass::Reserved => Subclass::Reserved,
        }
    }

    /// A short name as newer perf prints it after LD/ST, SVE-OTHER, B
    /// ("GP-REG", "MEMCPY", "GCS", "SME", ...); "" for an atomic, exclusive
    /// or acquire/release access and for branches.
    pub fn name(self) -> &'static str {
        match self {
            Subclass::GpReg => "GP-REG",
            Subclass::SimdFp => "SIMD-FP",
            Subclass::UnspecReg => "UNSPEC-REG",
            Subclass::NvSysreg => "NV-SYSREG",
            Subclass::MteTag => "MTE-TAG",
            Subclass::Memcpy => "MEMCPY",
            Subclass::Memset => "MEMSET",
            Subclass::SveSme { .. } | Subclass::Sve { .. } => "SVE",
            Subclass::Sme { .. } => "SME",
            Subclass::Gcs { .. } => "GCS",
            Subclass::Other { .. } => "OTHER",
            Subclass::Extended { .. }
            | Subclass::OtherLoadStore
            | Subclass::Branch { .. }
            | Subclass::Reserved => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(class: OpClass, payload: u8) -> Subclass {
        Subclass::of(OpType { class, payload })
    }

    #[test]
    fn load_store_subclasses() {
        use OpClass::LoadStore as L;
        assert_eq!(of(L, 0x00), Subclass::GpReg);
        assert_eq!(of(L, 0x01), Subclass::GpReg, "a store");
        assert_eq!(of(L, 0x05), Subclass::SimdFp);
        assert_eq!(of(L, 0x14), Subclass::MteTag);
        assert_eq!(of(L, 0x21), Subclass::Memcpy);
        assert_eq!(of(L, 0x25), Subclass::Memset);
        assert_eq!(of(L, 0x24), Subclass::OtherLoadStore);
        assert_eq!(of(L, 0x44), Subclass::Gcs { comm: true });
        assert_eq!(of(L, 0x41), Subclass::Gcs { comm: false });
        assert_eq!(
            of(L, 0x1f),
            Subclass::Extended {
                atomic: true,
                excl: true,
                ar: true
            }
        );
        assert_eq!(
            of(L, 0xdc),
            Subclass::SveSme {
                evl: 1024,
                pred: true,
                sg: true
            }
        );
        assert_eq!(of(L, 0x30).name(), "NV-SYSREG");
    }

    #[test]
    fn other_and_branch_subclasses() {
        assert_eq!(
            of(OpClass::Other, 0x2e),
            Subclass::Sve {
                evl: 128,
                fp: true,
                pred: true
            }
        );
        assert_eq!(
            of(OpClass::Other, 0x9e),
            Subclass::Sme {
                ets: 128 << 3,
                fp: true
            }
        );
        assert_eq!(of(OpClass::Other, 1), Subclass::Other { cond: true });
        assert_eq!(
            of(OpClass::Branch, 0x0f),
            Subclass::Branch {
                cond: true,
                indirect: true,
                gcs: true,
                call_return: 1
            }
        );
        assert_eq!(of(OpClass::Reserved, 0), Subclass::Reserved);
        assert_eq!(of(OpClass::Other, 0x88).name(), "SME");
    }
}
