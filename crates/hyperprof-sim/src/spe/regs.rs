//! The unit's writable registers and the controls it reads from the PE.
//!
//! Each register has two copies: the value software reads and writes
//! (direct reads of a system register see earlier direct writes in program
//! order) and the value the profiling unit acts on, which takes software
//! writes only at a context synchronization event (Arm ARM D24.1.2
//! "Synchronization requirements for System registers": indirect reads by
//! the unit need an ISB, exception entry or exception return).

use hyperprof_arch::SysReg;

/// What the PE tells its SPE unit at a context synchronization event: the
/// EL2 controls that decide who owns the buffer and which Exception levels
/// are sampled (`ProfilingBufferOwner()`, `StatisticalProfilingEnabled()`,
/// Arm ARM J1.1.1.66-67 and J1.1.1.126).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Control {
    /// EL2 is implemented and enabled.
    pub el2_implemented: bool,
    /// HCR_EL2 (E2H and TGE are read).
    pub hcr_el2: u64,
    /// MDCR_EL2 (E2PB is read).
    pub mdcr_el2: u64,
}

/// A register of the unit's bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reg {
    PmscrEl1,
    PmscrEl2,
    Pmsnevfr,
    Pmsicr,
    Pmsirr,
    Pmsfcr,
    Pmsevfr,
    Pmslatfr,
    Pmblimitr,
    Pmbptr,
    Pmbsr,
    Pmsdsfr,
}

/// Number of registers in the bank.
pub(crate) const NREGS: usize = 12;

/// The unit's writable registers, one per bank slot (the ID registers
/// PMSIDR_EL1 and PMBIDR_EL1 and the alias PMSCR_EL12 are not in the bank).
pub const REGISTERS: [SysReg; NREGS] = [
    SysReg::PMSCR_EL1,
    SysReg::PMSCR_EL2,
    SysReg::PMSNEVFR_EL1,
    SysReg::PMSICR_EL1,
    SysReg::PMSIRR_EL1,
    SysReg::PMSFCR_EL1,
    SysReg::PMSEVFR_EL1,
    SysReg::PMSLATFR_EL1,
    SysReg::PMBLIMITR_EL1,
    SysReg::PMBPTR_EL1,
    SysReg::PMBSR_EL1,
    SysReg::PMSDSFR_EL1,
];

impl Reg {
    /// The bank register behind a system register (PMSCR_EL12 is PMSCR_EL1;
    /// the PE resolves the VHE redirection before calling, this only keeps
    /// a stray alias from being lost).
    pub(crate) fn from_sysreg(reg: SysReg) -> Option<Reg> {
        Some(match reg {
            SysReg::PMSCR_EL1 | SysReg::PMSCR_EL12 => Reg::PmscrEl1,
            SysReg::PMSCR_EL2 => Reg::PmscrEl2,
            SysReg::PMSNEVFR_EL1 => Reg::Pmsnevfr,
            SysReg::PMSICR_EL1 => Reg::Pmsicr,
            SysReg::PMSIRR_EL1 => Reg::Pmsirr,
            SysReg::PMSFCR_EL1 => Reg::Pmsfcr,
            SysReg::PMSEVFR_EL1 => Reg::Pmsevfr,
            SysReg::PMSLATFR_EL1 => Reg::Pmslatfr,
            SysReg::PMBLIMITR_EL1 => Reg::Pmblimitr,
            SysReg::PMBPTR_EL1 => Reg::Pmbptr,
            SysReg::PMBSR_EL1 => Reg::Pmbsr,
            SysReg::PMSDSFR_EL1 => Reg::Pmsdsfr,
            _ => return None,
        })
    }

    /// Index into the bank.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The dirty bit of this register.
    pub(crate) const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Two copies of the bank: architectural (software's view) and effective
/// (the unit's view), and which registers software wrote since the last
/// synchronization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bank {
    visible: [u64; NREGS],
    effective: [u64; NREGS],
    dirty: u16,
}

impl Bank {
    /// Software's view.
    pub(crate) fn visible(&self, r: Reg) -> u64 {
        self.visible[r.index()]
    }

    /// The unit's view.
    pub(crate) fn effective(&self, r: Reg) -> u64 {
        self.effective[r.index()]
    }

    /// Whether software wrote `r` since the last synchronization.
    pub(crate) fn written(&self, r: Reg) -> bool {
        self.dirty & r.bit() != 0
    }

    /// A direct (software) write: visible now, effective at the next sync.
    pub(crate) fn write(&mut self, r: Reg, v: u64) {
        self.visible[r.index()] = v;
        self.dirty |= r.bit();
    }

    /// An indirect write by the unit (PMBPTR_EL1 advancing, PMBSR_EL1
    /// events, PMSICR_EL1 counting). Software sees it unless it has written
    /// the register since the last synchronization: that write reaches the
    /// unit at the next sync and replaces the unit's value.
    pub(crate) fn hw_write(&mut self, r: Reg, v: u64) {
        self.effective[r.index()] = v;
        if self.dirty & r.bit() == 0 {
            self.visible[r.index()] = v;
        }
    }

    /// A direct write of `r` reaching the unit before the next
    /// synchronization (which the architecture allows, in any order).
    pub(crate) fn take_early(&mut self, r: Reg) {
        if self.written(r) {
            self.effective[r.index()] = self.visible[r.index()];
            self.dirty &= !r.bit();
        }
    }

    /// Context synchronization: every register written since becomes
    /// effective.
    pub(crate) fn sync(&mut self) {
        for i in 0..NREGS {
            if self.dirty & (1 << i) != 0 {
                self.effective[i] = self.visible[i];
            }
        }
        self.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spe_register_maps_to_a_distinct_slot() {
        let regs = REGISTERS;
        let mut seen = [false; NREGS];
        for r in regs {
            let i = Reg::from_sysreg(r).map(Reg::index);
            let i = i.unwrap_or(usize::MAX);
            assert!(i < NREGS, "{r:?}");
            assert!(!seen[i], "{r:?} shares a slot");
            seen[i] = true;
        }
        assert_eq!(Reg::from_sysreg(SysReg::PMSCR_EL12), Some(Reg::PmscrEl1));
        assert_eq!(Reg::from_sysreg(SysReg::PMSIDR_EL1), None);
        assert_eq!(Reg::from_sysreg(SysReg::PMBIDR_EL1), None);
        assert_eq!(Reg::from_sysreg(SysReg::HCR_EL2), None);
    }

    #[test]
    fn an_early_write_reaches_the_unit_alone_and_only_once() {
        let mut b = Bank::default();
        b.write(Reg::Pmbptr, 0x1000);
        b.write(Reg::Pmblimitr, 0x2001);
        b.take_early(Reg::Pmblimitr);
        assert_eq!(b.effective(Reg::Pmblimitr), 0x2001);
        assert_eq!(
            b.effective(Reg::Pmbptr),
            0,
            "the pointer waits for the sync"
        );
        assert!(!b.written(Reg::Pmblimitr) && b.written(Reg::Pmbptr));
        // Unwritten since the sync: nothing to take.
        b.hw_write(Reg::Pmbsr, 0x8);
        b.take_early(Reg::Pmbsr);
        assert_eq!(b.effective(Reg::Pmbsr), 0x8);
        b.sync();
        assert_eq!(b.effective(Reg::Pmbptr), 0x1000);
    }

    #[test]
    fn writes_reach_the_unit_at_sync_and_win_over_hardware_updates() {
        let mut b = Bank::default();
        b.write(Reg::Pmbptr, 0x1000);
        assert_eq!(b.visible(Reg::Pmbptr), 0x1000);
        assert_eq!(b.effective(Reg::Pmbptr), 0);
        // The unit advances its pointer meanwhile: software's pending write wins.
        b.hw_write(Reg::Pmbptr, 0x40);
        assert_eq!(b.visible(Reg::Pmbptr), 0x1000);
        b.sync();
        assert_eq!(b.effective(Reg::Pmbptr), 0x1000);
        // After the sync hardware updates are visible again.
        b.hw_write(Reg::Pmbptr, 0x1040);
        assert_eq!(b.visible(Reg::Pmbptr), 0x1040);
    }
}
