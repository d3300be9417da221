//! The Generic Timer of a PE (Arm ARM D12): the system counter as this
//! PE reads it, the EL1 virtual timer, CNTHCTL_EL2's traps of the
//! physical counter and timer, and the virtual timer's interrupt line.
//!
//! - The system counter ticks at [`CNTFRQ`] (1 GHz), one tick per cycle.
//!   The machine runs its PEs one at a time, so its clock is one time
//!   line: every cycle any PE executes advances every PE's count
//!   ([`crate::machine::Machine`] keeps them equal), and so does idle
//!   time the machine skips ([`crate::machine::Machine::advance_clock`]).
//!   CNTPCT_EL0 is that count; CNTVCT_EL0 is CNTPCT_EL0 - CNTVOFF_EL2;
//!   SPE timestamps take the same values. The PMU's cycle counter counts
//!   only the cycles its own PE executes (a PE waiting in WFI has its
//!   clock gated and counts nothing).
//! - The EL1 virtual timer (CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTV_TVAL_EL0)
//!   drives the virtual timer interrupt (PPI 27) while enabled, unmasked
//!   and its condition (CNTVCT_EL0 >= CVAL) is met. From EL2 with
//!   HCR_EL2.E2H set the EL0 names reach the EL2 virtual timer, which is
//!   not modelled (UNDEFINED); a VHE hypervisor uses CNTV_CTL_EL02 and
//!   CNTV_CVAL_EL02.
//! - The EL1 physical timer is not modelled in hardware: a guest's
//!   accesses trap to EL2 (CNTHCTL_EL2.EL1PTEN clear, as KVM leaves it
//!   when it emulates the guest's physical timer); anywhere else they are
//!   UNDEFINED.
//! - The EL0 checks of CNTKCTL_EL1 belong to the context that holds that
//!   register (a code context's bus applies them before it asks the PE).
//! - CNTFRQ_EL0 is fixed: firmware's write at the highest Exception level
//!   is not modelled, every write is UNDEFINED.

use hyperprof_arch::{cnt_ctl, cnthctl_el2, hcr_el2, AccessFault, ExceptionLevel, SysReg};

use super::Pe;

/// CNTFRQ_EL0: the system counter's frequency, 1 GHz. Armv8.6 fixes the
/// frequency at 1 GHz; QEMU's virt board reports the same for `-cpu max`
/// since version 9.1 (`GTIMER_DEFAULT_HZ` 1000000000 in target/arm/
/// internals.h; older machine types and CPUs keep `GTIMER_BACKCOMPAT_HZ`,
/// 62.5 MHz). One tick is one cycle of the machine's clock.
pub const CNTFRQ: u64 = 1_000_000_000;

/// CNTHCTL_EL2 out of reset, as Linux's EL2 set-up leaves it: EL1 (and,
/// under a VHE host, EL0) may read the physical counter and use the
/// physical timer, in both layouts (bits 0 and 1, bits 10 and 11).
pub const CNTHCTL_EL2_RESET: u64 = cnthctl_el2::EL1PCTEN_NVHE.mask()
    | cnthctl_el2::EL1PCEN_NVHE.mask()
    | cnthctl_el2::EL1PCTEN.mask()
    | cnthctl_el2::EL1PTEN.mask();

/// The EL1 virtual timer's registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerRegs {
    /// CNTV_CTL_EL0's writable bits (ENABLE, IMASK).
    pub ctl: u64,
    /// CNTV_CVAL_EL0.
    pub cval: u64,
}

impl TimerRegs {
    /// The physical count at which the timer's interrupt is up, seen at
    /// physical count `now` with the timer's count `offset` below the
    /// physical one: `now` itself when it is up already; `None` when the
    /// timer is disabled or masked, or its count reaches CVAL only after
    /// the physical count wraps (never, in practice).
    pub fn deadline(&self, offset: u64, now: u64) -> Option<u64> {
        let on = cnt_ctl::ENABLE.is_set(self.ctl) && !cnt_ctl::IMASK.is_set(self.ctl);
        if !on {
            return None;
        }
        let count = now.wrapping_sub(offset);
        if count >= self.cval {
            Some(now)
        } else {
            now.checked_add(self.cval - count)
        }
    }
}

fn undefined<T>() -> Result<T, AccessFault> {
    Err(AccessFault::Undefined)
}

fn trap_to_el2<T>() -> Result<T, AccessFault> {
    Err(AccessFault::Trapped {
        to: ExceptionLevel::EL2,
    })
}

/// TVAL on a read: (CVAL - count)[31:0], bits 63:32 zero.
fn tval(cval: u64, count: u64) -> u64 {
    cval.wrapping_sub(count) & 0xFFFF_FFFF
}

/// CVAL after a TVAL write: count + SignExtend(TVAL[31:0]).
fn cval_from_tval(tval: u64, count: u64) -> u64 {
    count.wrapping_add(tval as u32 as i32 as i64 as u64)
}

impl Pe {
    /// Whether a register belongs to the Generic Timer.
    pub(super) fn is_timer_reg(reg: SysReg) -> bool {
        matches!(
            reg,
            SysReg::CNTFRQ_EL0
                | SysReg::CNTPCT_EL0
                | SysReg::CNTVCT_EL0
                | SysReg::CNTVOFF_EL2
                | SysReg::CNTHCTL_EL2
                | SysReg::CNTV_CTL_EL0
                | SysReg::CNTV_CVAL_EL0
                | SysReg::CNTV_TVAL_EL0
                | SysReg::CNTV_CTL_EL02
                | SysReg::CNTV_CVAL_EL02
                | SysReg::CNTP_CTL_EL0
                | SysReg::CNTP_CVAL_EL0
                | SysReg::CNTP_TVAL_EL0
        )
    }

    /// A guest's view: EL0 or EL1 with EL2 enabled and not a VHE host's
    /// EL0 (HCR_EL2.E2H and TGE both set), where CNTHCTL_EL2 traps apply.
    fn in_guest(&self) -> bool {
        let hcr = self.regs.hcr_el2;
        self.el != ExceptionLevel::EL2 && !(hcr_el2::E2H.is_set(hcr) && hcr_el2::TGE.is_set(hcr))
    }

    /// The virtual count: CNTPCT_EL0 - CNTVOFF_EL2.
    pub(super) fn cntvct(&self) -> u64 {
        self.cycles.wrapping_sub(self.regs.cntvoff_el2)
    }

    /// A Generic Timer register access (`write` None for a read), with the
    /// Exception level and trap checks of the Arm ARM's accessors.
    pub(super) fn timer_access(
        &mut self,
        reg: SysReg,
        write: Option<u64>,
    ) -> Result<u64, AccessFault> {
        let at_el2 = self.el == ExceptionLevel::EL2;
        let e2h = self.e2h();
        let guest = self.in_guest();
        match reg {
            SysReg::CNTFRQ_EL0 => match write {
                None => Ok(CNTFRQ),
                Some(_) => undefined(),
            },
            SysReg::CNTPCT_EL0 | SysReg::CNTVCT_EL0 => {
                if write.is_some() {
                    return undefined();
                }
                let physical = reg == SysReg::CNTPCT_EL0;
                if physical && guest && cnthctl_el2::traps_counter(self.regs.cnthctl_el2, e2h) {
                    return trap_to_el2();
                }
                // A VHE host (E2H and TGE) has no virtual offset.
                let host = !self.in_guest() && e2h;
                Ok(if physical || host {
                    self.cycles
                } else {
                    self.cntvct()
                })
            }
            SysReg::CNTVOFF_EL2 | SysReg::CNTHCTL_EL2 => {
                if !at_el2 {
                    return undefined();
                }
                let slot = if reg == SysReg::CNTVOFF_EL2 {
                    &mut self.regs.cntvoff_el2
                } else {
                    &mut self.regs.cnthctl_el2
                };
                if let Some(v) = write {
                    *slot = v;
                }
                Ok(*slot)
            }
            SysReg::CNTV_CTL_EL0 | SysReg::CNTV_CVAL_EL0 | SysReg::CNTV_TVAL_EL0 => {
                if at_el2 && e2h {
                    // CNTHV_*_EL2: the EL2 virtual timer is not modelled.
                    return undefined();
                }
                Ok(self.vtimer_access(reg, write))
            }
            SysReg::CNTV_CTL_EL02 | SysReg::CNTV_CVAL_EL02 => {
                if !(at_el2 && e2h) {
                    return undefined();
                }
                let el0_name = if reg == SysReg::CNTV_CTL_EL02 {
                    SysReg::CNTV_CTL_EL0
                } else {
                    SysReg::CNTV_CVAL_EL0
                };
                Ok(self.vtimer_access(el0_name, write))
            }
            SysReg::CNTP_CTL_EL0 | SysReg::CNTP_CVAL_EL0 | SysReg::CNTP_TVAL_EL0 => {
                if guest && cnthctl_el2::traps_timer(self.regs.cnthctl_el2, e2h) {
                    trap_to_el2()
                } else {
                    undefined()
                }
            }
            _ => undefined(),
        }
    }

    /// The EL1 virtual timer's registers by their EL0 names.
    fn vtimer_access(&mut self, reg: SysReg, write: Option<u64>) -> u64 {
        let count = self.cntvct();
        let t = &mut self.vtimer;
        match (reg, write) {
            (SysReg::CNTV_CTL_EL0, Some(v)) => t.ctl = v & cnt_ctl::WRITABLE,
            (SysReg::CNTV_CVAL_EL0, Some(v)) => t.cval = v,
            (_, Some(v)) => t.cval = cval_from_tval(v, count),
            (SysReg::CNTV_CTL_EL0, None) => return cnt_ctl::read(t.ctl, count, t.cval),
            (SysReg::CNTV_CVAL_EL0, None) => return t.cval,
            (_, None) => return tval(t.cval, count),
        }
        0
    }

    /// The EL1 virtual timer's registers now (what a hypervisor would read).
    pub fn vtimer(&self) -> TimerRegs {
        self.vtimer
    }

    /// The virtual timer's output before the interrupt controller: enabled,
    /// unmasked, CNTVCT_EL0 >= CNTV_CVAL_EL0.
    pub fn vtimer_output(&self) -> bool {
        cnt_ctl::output(self.vtimer.ctl, self.cntvct(), self.vtimer.cval)
    }

    /// The interrupt controller's enable of the virtual timer's PPI at this
    /// PE. A hypervisor that forwards the timer to a guest without a
    /// virtual GIC disables it while the guest's virtual timer interrupt is
    /// pending (KVM's `kvm_timer_vcpu_load_nogic`), so the physical line
    /// does not fire again until the guest has dealt with it.
    pub fn set_vtimer_irq_enabled(&mut self, on: bool) {
        self.vtimer_irq_enabled = on;
    }

    /// Whether the virtual timer's PPI is enabled at this PE.
    pub fn vtimer_irq_enabled(&self) -> bool {
        self.vtimer_irq_enabled
    }

    /// Physical counter ticks until the virtual timer's line rises (0 when
    /// it is up), or `None` when it cannot rise without a register write.
    pub(super) fn ticks_to_vtimer(&self) -> Option<u64> {
        if !self.vtimer_irq_enabled {
            return None;
        }
        let deadline = self.vtimer.deadline(self.regs.cntvoff_el2, self.cycles)?;
        Some(deadline - self.cycles)
    }

    /// Advances the system counter as this PE sees it by `ticks` (time the
    /// machine spent elsewhere: another PE's cycles, or idle time skipped).
    /// The PE executes nothing and its PMU counts nothing.
    pub fn advance_counter(&mut self, ticks: u64) {
        self.cycles = self.cycles.wrapping_add(ticks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tval_is_the_signed_32_bit_view_of_cval_minus_the_count() {
        assert_eq!(tval(1_000, 400), 600);
        // Past the deadline: negative, as 32 bits.
        assert_eq!(tval(400, 1_000), (-600i32) as u32 as u64);
        assert_eq!(cval_from_tval(600, 400), 1_000);
        assert_eq!(cval_from_tval((-600i32) as u32 as u64, 1_000), 400);
        // Only TVAL[31:0] counts.
        assert_eq!(cval_from_tval(0xFFFF_FFFF_0000_0010, 5), 21);
    }

    #[test]
    fn a_masked_or_disabled_timer_has_no_deadline() {
        let on = TimerRegs {
            ctl: cnt_ctl::ENABLE.mask(),
            cval: 100,
        };
        assert_eq!(on.deadline(50, 70), Some(150));
        // Up already.
        assert_eq!(on.deadline(50, 170), Some(170));
        // A virtual count wrapped below zero (an offset above the physical
        // count) is a huge count: the condition holds.
        assert_eq!(on.deadline(1 << 40, 10), Some(10));
        // CVAL at the top of the range: not before the physical count wraps.
        let never = TimerRegs {
            cval: u64::MAX,
            ..on
        };
        assert_eq!(never.deadline(1 << 40, (1 << 40) + 5), None);
        let masked = TimerRegs {
            ctl: on.ctl | cnt_ctl::IMASK.mask(),
            ..on
        };
        assert_eq!(masked.deadline(0, 0), None);
        assert_eq!(TimerRegs::default().deadline(0, 0), None);
    }
}
