//! The translation regime of an access and its walk: which tables a PE's
//! data accesses and its profiling buffer writes go through.
//!
//! SCTLR_ELx is not modelled: a translation table base of 0 stands for the
//! stage being off (the address passes through unchanged). Stage 2 uses a
//! 40-bit IPA starting at level 1 (VTCR_EL2 is not modelled either).

use hyperprof_arch::ExceptionLevel;

use crate::memory::{PhysMem, PAGE_SIZE};
use crate::mmu::{translate_two_stage, walk_stage2, Access, Fault};
use crate::spe::BufferFault;

/// Stage-2 start level (VTCR_EL2.SL0) the machine uses.
pub const STAGE2_START_LEVEL: u8 = 1;

/// Base address bits [47:1] of a TTBR/VTTBR (ASID/VMID and CnP dropped).
const BADDR: u64 = 0x0000_FFFF_FFFF_FFFE;

/// The tables an access is translated by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regime {
    /// Stage-1 root (PA, or IPA when stage 2 is on); `None`: stage 1 off.
    pub s1_root: Option<u64>,
    /// Stage-2 root; `None`: stage 2 off.
    pub s2_root: Option<u64>,
}

impl Regime {
    /// The regime of a TTBR value and, optionally, a VTTBR value.
    pub fn from_bases(ttbr: u64, vttbr: Option<u64>) -> Regime {
        let root = |v: u64| (v & BADDR != 0).then_some(v & BADDR);
        Regime {
            s1_root: root(ttbr),
            s2_root: vttbr.and_then(root),
        }
    }

    /// Translates `va` for `access`.
    pub fn translate(&self, mem: &PhysMem, va: u64, access: Access) -> Result<u64, Fault> {
        match (self.s1_root, self.s2_root) {
            (Some(s1), s2) => {
                translate_two_stage(mem, s1, s2.map(|r| (r, STAGE2_START_LEVEL)), va, access)
                    .map(|w| w.pa)
            }
            (None, Some(s2)) => {
                walk_stage2(mem, s2, STAGE2_START_LEVEL, va, access.write).map(|w| w.oa)
            }
            (None, None) => Ok(va),
        }
    }
}

/// The physical address of a data access at `el`, or `None` when it does
/// not translate (the record then carries no physical address).
pub fn data_pa(
    mem: &PhysMem,
    regime: &Regime,
    va: u64,
    el: ExceptionLevel,
    write: bool,
) -> Option<u64> {
    let access = Access {
        write,
        el0: el == ExceptionLevel::EL0,
    };
    regime
        .translate(mem, va, access)
        .ok()
        .filter(|pa| mem.is_ram(*pa))
}

/// One physically contiguous piece of a buffer write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical address.
    pub pa: u64,
    /// Offset in the bytes written.
    pub offset: usize,
    /// Length.
    pub len: usize,
}

/// Splits a profiling buffer write of `len` bytes at `va` into physically
/// contiguous pieces, page by page, each page's address given by `walk`
/// (a privileged write through the owning regime, or the unit's cached
/// translation of it). A translation fault is a stage-1 or stage-2 buffer
/// fault with its FSC; a physical address outside RAM is an external abort.
pub fn buffer_segments(
    mem: &PhysMem,
    walk: &mut dyn FnMut(u64) -> Result<u64, Fault>,
    va: u64,
    len: usize,
    out: &mut Vec<Segment>,
) -> Result<(), BufferFault> {
    out.clear();
    let mut done = 0usize;
    while done < len {
        let at = va.wrapping_add(done as u64);
        let in_page = (PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize;
        let n = in_page.min(len - done);
        let pa = walk(at).map_err(|f| match f.stage {
            2 => BufferFault::Stage2 { fsc: f.fsc() },
            _ => BufferFault::Stage1 { fsc: f.fsc() },
        })?;
        if !mem.is_ram(pa) || !mem.is_ram(pa + n as u64 - 1) {
            return Err(BufferFault::External);
        }
        out.push(Segment {
            pa,
            offset: done,
            len: n,
        });
        done += n;
    }
    Ok(())
}
