//! The guest's Generic Timer, in the place of KVM's arch_timer.c.
//!
//! - The virtual timer is the hardware's: `load` writes the vCPU's
//!   CNTV_CVAL/CNTV_CTL and the VM's CNTVOFF_EL2, `put` saves them and
//!   disables the hardware timer so it never fires on the host (KVM's
//!   kvm_timer_vcpu_load/kvm_timer_vcpu_put). A VHE host reaches the EL1
//!   timer through CNTV_CTL_EL02/CNTV_CVAL_EL02 at EL2; an nVHE host
//!   kernel writes CNTV_CTL_EL0/CNTV_CVAL_EL0 at EL1 and sets CNTVOFF_EL2
//!   with a hypercall (KVM's `__kvm_timer_set_cntvoff`).
//! - The VM has no interrupt controller yet, so the timer is forwarded as
//!   KVM does without one (`kvm_timer_vcpu_load_nogic`): while the guest's
//!   virtual timer interrupt is pending, the host disables the timer's PPI
//!   at the CPU so the physical line does not fire again; once the guest
//!   has disarmed the timer the PPI is enabled again. The virtual level is
//!   [`GuestCpu::vtimer_level`]; today it drives the vCPU's one IRQ line.
//! - The physical timer is emulated, as KVM does on an nVHE host and on
//!   a VHE host without FEAT_ECV once the VM has a counter offset: CNTHCTL_EL2
//!   traps the guest's CNTP_* accesses (EL1PTEN/EL1PCEN clear) and the
//!   hypervisor keeps CNTP_CTL/CNTP_CVAL, counting CNTPCT_EL0 minus the
//!   VM's offset (KVM_ARM_SET_COUNTER_OFFSET applies to both counters).
//!   CNTPCT_EL0 itself is read directly when the offset is zero and
//!   trapped and emulated otherwise (EL1PCTEN).
//! - A vCPU that is put (waiting in WFI, or descheduled) has a deadline,
//!   [`Kvm::timer_deadline`]: the physical count at which one of its
//!   timers fires. The VMM wakes the vCPU there, as KVM's background
//!   timer kicks a blocked vCPU.

use super::*;
use hyperprof_arch::{cnt_ctl, cnthctl_el2};
use hyperprof_sim::pe::{PeCpu, TimerRegs, CNTHCTL_EL2_RESET};

/// A vCPU's timers while the vCPU is not loaded (the virtual timer lives
/// on the hardware while it is; the physical timer always lives here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimer {
    /// The virtual timer: CNTV_CTL_EL0 (ENABLE, IMASK) and CNTV_CVAL_EL0.
    pub vtimer: TimerRegs,
    /// The emulated physical timer: CNTP_CTL_EL0 and CNTP_CVAL_EL0.
    pub ptimer: TimerRegs,
}

/// CNTHCTL_EL2 while a guest runs: the physical timer trapped, the
/// physical counter trapped only when the VM has a counter offset; in the
/// layout of HCR_EL2.E2H (`vhe`).
fn guest_cnthctl(vhe: bool, offset: u64) -> u64 {
    let direct_counter = u64::from(offset == 0);
    if vhe {
        let v = CNTHCTL_EL2_RESET & !(cnthctl_el2::EL1PCTEN.mask() | cnthctl_el2::EL1PTEN.mask());
        cnthctl_el2::EL1PCTEN.set(v, direct_counter)
    } else {
        let v = CNTHCTL_EL2_RESET
            & !(cnthctl_el2::EL1PCTEN_NVHE.mask() | cnthctl_el2::EL1PCEN_NVHE.mask());
        cnthctl_el2::EL1PCTEN_NVHE.set(v, direct_counter)
    }
}

/// What an nVHE host's CNTHCTL_EL2 is while the host runs (the host
/// kernel uses the physical counter and timer).
/// The EL1 virtual timer's PPI (KVM's default, and QEMU virt's).
pub const VTIMER_INTID: u32 = 27;
/// The EL1 physical timer's PPI (KVM's default, and QEMU virt's).
pub const PTIMER_INTID: u32 = 30;

const NVHE_HOST_CNTHCTL: u64 = CNTHCTL_EL2_RESET;

/// Reads the virtual timer through `ctl`/`cval` and disables it.
fn save_vtimer(c: &mut PeCpu<'_>, ctl: SysReg, cval: SysReg) -> Result<TimerRegs, String> {
    let ctl_v = c.read(ctl).map_err(access(ctl))?;
    let cval_v = c.read(cval).map_err(access(cval))?;
    c.write(ctl, 0).map_err(access(ctl))?;
    Ok(TimerRegs {
        ctl: ctl_v & cnt_ctl::WRITABLE,
        cval: cval_v,
    })
}

impl Kvm {
    /// The timer half of vcpu_load on `cpu` (VHE): CNTVOFF_EL2,
    /// CNTHCTL_EL2's traps, the virtual timer's CVAL and CTL through the
    /// EL02 aliases, and the timer PPI's enable (disabled while the
    /// guest's interrupt is pending). An nVHE host switches the timer at
    /// entry and exit instead ([`GuestCpu::timer_enter_nvhe`]).
    pub(super) fn timer_load(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        if self.mode != HostMode::Vhe {
            return Ok(());
        }
        let offset = self.vms[self.vcpus[vcpu].vm].cntvoff;
        let t = self.vcpus[vcpu].timer.vtimer;
        let now = self.machine.now();
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        for (reg, val) in [
            (SysReg::CNTVOFF_EL2, offset),
            (SysReg::CNTHCTL_EL2, guest_cnthctl(true, offset)),
            (SysReg::CNTV_CVAL_EL02, t.cval),
            (SysReg::CNTV_CTL_EL02, t.ctl),
        ] {
            c.write(reg, val).map_err(access(reg))?;
        }
        let pending = cnt_ctl::output(t.ctl, now.wrapping_sub(offset), t.cval);
        c.pe().set_vtimer_irq_enabled(!pending);
        let after = c.pe().access_stats();
        self.vcpus[vcpu].stats.timer_switch += after - before;
        Ok(())
    }

    /// The timer half of vcpu_put (VHE): the virtual timer saved and
    /// disabled on the hardware so it never fires on the host, CNTVOFF_EL2
    /// back to zero, the PPI enabled for the host.
    pub(super) fn timer_put(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        if self.mode != HostMode::Vhe {
            return Ok(());
        }
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        let saved = save_vtimer(&mut c, SysReg::CNTV_CTL_EL02, SysReg::CNTV_CVAL_EL02)?;
        c.write(SysReg::CNTVOFF_EL2, 0)
            .map_err(access(SysReg::CNTVOFF_EL2))?;
        c.pe().set_vtimer_irq_enabled(true);
        let after = c.pe().access_stats();
        let v = &mut self.vcpus[vcpu];
        v.timer.vtimer = saved;
        v.stats.timer_switch += after - before;
        Ok(())
    }

    /// The vCPU's timers as they stand: from the hardware while a VHE
    /// host has the vCPU loaded (what the hypervisor reads there), else as
    /// put (VHE) or the last exit (nVHE) saved them.
    pub fn vcpu_timer(&self, vcpu: usize) -> Option<VcpuTimer> {
        let v = self.vcpus.get(vcpu)?;
        let mut t = v.timer;
        let on_hardware = v.loaded_on.filter(|_| self.mode == HostMode::Vhe);
        if let Some(pe) = on_hardware.and_then(|cpu| self.machine.pe(cpu)) {
            t.vtimer = pe.vtimer();
        }
        Some(t)
    }

    /// The machine's clock, the physical count (see [`Machine::now`]).
    pub fn now(&self) -> u64 {
        self.machine.now()
    }

    /// The physical count at which vCPU `vcpu`'s earliest enabled and
    /// unmasked timer fires (KVM's `kvm_timer_earliest_exp`, which arms the
    /// background timer of a blocked vCPU); `None` when neither timer can
    /// fire. A deadline at or before [`Kvm::now`] means an interrupt is
    /// pending now.
    pub fn timer_deadline(&self, vcpu: usize) -> Option<u64> {
        let offset = self.vms[self.vcpus.get(vcpu)?.vm].cntvoff;
        let t = self.vcpu_timer(vcpu)?;
        let now = self.now();
        [
            t.vtimer.deadline(offset, now),
            t.ptimer.deadline(offset, now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether one of vCPU `vcpu`'s timers asserts its interrupt now.
    pub fn timer_pending(&self, vcpu: usize) -> bool {
        self.timer_deadline(vcpu).is_some_and(|d| d <= self.now())
    }
}

impl GuestCpu<'_> {
    /// nVHE entry (at EL2, after CNTVOFF_EL2): CNTHCTL_EL2's traps for the
    /// guest (KVM's `__timer_enable_traps`) and its virtual timer, with
    /// the PPI's enable. The host kernel at EL1 cannot reach CNTHCTL_EL2,
    /// and the project's nVHE load and put touch nothing, so the timer
    /// moves with every entry and exit.
    pub(super) fn timer_enter_nvhe(&mut self) -> Result<(), String> {
        let offset = self.vm_offset();
        let t = self.kvm.vcpus[self.vcpu].timer.vtimer;
        let now = self.kvm.now();
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        for (reg, val) in [
            (SysReg::CNTHCTL_EL2, guest_cnthctl(false, offset)),
            (SysReg::CNTV_CVAL_EL0, t.cval),
            (SysReg::CNTV_CTL_EL0, t.ctl),
        ] {
            c.write(reg, val).map_err(access(reg))?;
        }
        let pending = cnt_ctl::output(t.ctl, now.wrapping_sub(offset), t.cval);
        c.pe().set_vtimer_irq_enabled(!pending);
        let after = c.pe().access_stats();
        self.kvm.vcpus[self.vcpu].stats.timer_switch += after - before;
        Ok(())
    }

    /// nVHE exit (at EL2): the guest's virtual timer saved and disabled,
    /// the host's CNTHCTL_EL2 back (`__timer_disable_traps`), the PPI
    /// enabled for the host.
    pub(super) fn timer_exit_nvhe(&mut self) -> Result<(), String> {
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        let saved = save_vtimer(&mut c, SysReg::CNTV_CTL_EL0, SysReg::CNTV_CVAL_EL0)?;
        c.write(SysReg::CNTHCTL_EL2, NVHE_HOST_CNTHCTL)
            .map_err(access(SysReg::CNTHCTL_EL2))?;
        c.pe().set_vtimer_irq_enabled(true);
        let after = c.pe().access_stats();
        let v = &mut self.kvm.vcpus[self.vcpu];
        v.timer.vtimer = saved;
        v.stats.timer_switch += after - before;
        Ok(())
    }

    fn vm_offset(&self) -> u64 {
        self.kvm.vms[self.vm].cntvoff
    }

    /// The guest's virtual timer interrupt level (PPI 27): CNTV_CTL.ENABLE
    /// and not IMASK and ISTATUS, from the hardware the vCPU is loaded on.
    pub fn vtimer_level(&self) -> bool {
        let Some(pe) = self.kvm.machine.pe(self.cpu) else {
            return false;
        };
        let t = pe.vtimer();
        cnt_ctl::output(t.ctl, pe.cycles().wrapping_sub(self.vm_offset()), t.cval)
    }

    /// The guest's emulated physical timer interrupt level (PPI 30).
    pub fn ptimer_level(&self) -> bool {
        let t = self.kvm.vcpus[self.vcpu].timer.ptimer;
        cnt_ctl::output(t.ctl, self.kvm.now().wrapping_sub(self.vm_offset()), t.cval)
    }

    /// Before the guest runs on: the timer PPI is disabled exactly while
    /// the guest's virtual timer interrupt is pending (KVM's nogic
    /// forwarding).
    pub(super) fn sync_vtimer_irq(&mut self) {
        let level = self.vtimer_level();
        if let Some(pe) = self.kvm.machine.pe_mut(self.cpu) {
            pe.set_vtimer_irq_enabled(!level);
        }
    }

    /// Physical counter ticks until the emulated physical timer fires
    /// (`None`: it cannot, or it is up already): a run longer than that
    /// would deliver it late.
    pub(super) fn ticks_to_ptimer(&self) -> Option<u64> {
        let now = self.kvm.now();
        let d = self.kvm.vcpus[self.vcpu]
            .timer
            .ptimer
            .deadline(self.vm_offset(), now)?;
        Some(d - now).filter(|&t| t > 0)
    }

    /// A trapped access to the physical counter or timer, emulated with
    /// the VM's offset; `None` for any other register.
    pub(super) fn timer_emulate(
        &mut self,
        reg: SysReg,
        write: Option<u64>,
    ) -> Option<Result<u64, AccessFault>> {
        let count = self.kvm.now().wrapping_sub(self.vm_offset());
        let t = &mut self.kvm.vcpus[self.vcpu].timer.ptimer;
        Some(match (reg, write) {
            (SysReg::CNTPCT_EL0, None) => Ok(count),
            (SysReg::CNTPCT_EL0, Some(_)) => Err(AccessFault::Undefined),
            (SysReg::CNTP_CTL_EL0, None) => Ok(cnt_ctl::read(t.ctl, count, t.cval)),
            (SysReg::CNTP_CTL_EL0, Some(v)) => {
                t.ctl = v & cnt_ctl::WRITABLE;
                Ok(0)
            }
            (SysReg::CNTP_CVAL_EL0, None) => Ok(t.cval),
            (SysReg::CNTP_CVAL_EL0, Some(v)) => {
                t.cval = v;
                Ok(0)
            }
            (SysReg::CNTP_TVAL_EL0, None) => Ok(t.cval.wrapping_sub(count) & 0xFFFF_FFFF),
            (SysReg::CNTP_TVAL_EL0, Some(v)) => {
                t.cval = count.wrapping_add(v as u32 as i32 as i64 as u64);
                Ok(0)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_traps_the_physical_timer_and_the_counter_only_with_an_offset() {
        for vhe in [true, false] {
            let direct = guest_cnthctl(vhe, 0);
            assert!(cnthctl_el2::traps_timer(direct, vhe));
            assert!(!cnthctl_el2::traps_counter(direct, vhe));
            let offset = guest_cnthctl(vhe, 1 << 40);
            assert!(cnthctl_el2::traps_timer(offset, vhe));
            assert!(cnthctl_el2::traps_counter(offset, vhe));
        }
        assert!(!cnthctl_el2::traps_timer(NVHE_HOST_CNTHCTL, false));
        assert!(!cnthctl_el2::traps_counter(NVHE_HOST_CNTHCTL, false));
    }
}
