//! The list registers at guest entry and exit (KVM's `vgic_flush_lr_state`
//! with `__vgic_v3_restore_state`, and `__vgic_v3_save_state` with
//! `vgic_sync_hwstate`), and the CPU interface context at vcpu load and
//! put (`vgic_v3_load`/`vgic_v3_put`: ICH_VMCR_EL2 and the active
//! priority registers).
//!
//! Every ICH_* access goes through the PE's [`Cpu`] at EL2 and is counted
//! in [`VgicStats`]; none is part of the SPE or PMU switch counts.

use hyperprof_arch::{ich_hcr_el2, ich_lr_el2, AccessFault, Cpu, SysReg};
use hyperprof_sim::gic::LIST_REGISTERS;

use super::{Irq, VgicStats, VgicV3};

/// The list register accesses of one entry and exit, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LrCost {
    /// `ICH_LR<n>_EL2` writes.
    pub writes: u64,
    /// `ICH_LR<n>_EL2` reads.
    pub reads: u64,
}

/// What kind of source an INTID has on this vCPU, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Sgi,
    Pmu,
    Spe,
    Other,
}

fn lr_reg(n: usize) -> SysReg {
    SysReg::ich_lr_el2(n as u8).unwrap_or(SysReg::ICH_LR0_EL2)
}

fn fault(reg: SysReg) -> impl Fn(AccessFault) -> String {
    move |f| format!("{reg}: {f}")
}

/// The list register for `irq` (INTID `id`): its state, priority and
/// group; a level-sensitive interrupt is never pending and active at once
/// (software resampling needs its deactivation) and asks for a maintenance
/// interrupt at deactivation (EOI), so that its line is sampled again.
fn lr_value(id: u32, irq: &Irq) -> u64 {
    let pending = irq.pending() && !(irq.level && irq.active);
    let state =
        (u64::from(pending) * ich_lr_el2::PENDING) | (u64::from(irq.active) * ich_lr_el2::ACTIVE);
    let v = ich_lr_el2::vINTID.set(0, u64::from(id));
    let v = ich_lr_el2::Priority.set(v, u64::from(irq.priority));
    let v = ich_lr_el2::Group.set(v, u64::from(irq.group1));
    let v = ich_lr_el2::EOI.set(v, u64::from(irq.level));
    ich_lr_el2::State.set(v, state)
}

impl VgicV3 {
    fn source(&self, index: usize, id: u32) -> Source {
        let c = &self.cpus[index];
        if id < hyperprof_arch::intid::SGI_END {
            Source::Sgi
        } else if Some(id) == c.pmu_intid {
            Source::Pmu
        } else if Some(id) == c.spe_intid {
            Source::Spe
        } else {
            Source::Other
        }
    }

    /// Guest entry of the vCPU at `index` (the PE at EL2): the line levels
    /// its sources drive now (`levels`, INTID and level), then its
    /// deliverable interrupts into the list registers, ICH_HCR_EL2 enabled
    /// (with the underflow interrupt when more are deliverable than there
    /// are list registers). Nothing is written when nothing is deliverable.
    pub(crate) fn flush(
        &mut self,
        index: usize,
        cpu: &mut dyn Cpu,
        levels: &[(u32, bool)],
    ) -> Result<(), String> {
        if index >= self.cpus.len() {
            return Ok(());
        }
        for &(id, level) in levels {
            self.set_line_level(index, id, level);
        }
        let ids = self.deliverable(index);
        let n = ids.len().min(LIST_REGISTERS);
        let overflow = ids.len() > LIST_REGISTERS;
        let mut written = Vec::with_capacity(n);
        let mut cost = VgicStats {
            flushes: 1,
            ..VgicStats::default()
        };
        if n > 0 {
            let mut hcr = ich_hcr_el2::En.mask();
            if overflow {
                hcr = ich_hcr_el2::UIE.set(hcr, 1);
                cost.overflows = 1;
            }
            cpu.write(SysReg::ICH_HCR_EL2, hcr)
                .map_err(fault(SysReg::ICH_HCR_EL2))?;
            cost.other_accesses += 1;
            for (i, &id) in ids[..n].iter().enumerate() {
                let irq = self.irq(index, id).copied().ok_or("no such interrupt")?;
                let v = lr_value(id, &irq);
                cpu.write(lr_reg(i), v).map_err(fault(lr_reg(i)))?;
                cost.lr_writes += 1;
                written.push((id, v));
            }
            cost.flushes_with_lrs = 1;
        }
        let c = &mut self.cpus[index];
        c.in_lrs = written;
        c.stats += cost;
        Ok(())
    }

    /// Guest exit of the vCPU at `index` (the PE at EL2): the list
    /// registers' state comes back into the interrupts (an LR that
    /// ICH_ELRSR_EL2 shows empty is not read), each used one is cleared,
    /// and the interface is disabled.
    pub(crate) fn sync(&mut self, index: usize, cpu: &mut dyn Cpu) -> Result<(), String> {
        let Some(c) = self.cpus.get_mut(index) else {
            return Ok(());
        };
        let used = std::mem::take(&mut c.in_lrs);
        if used.is_empty() {
            return Ok(());
        }
        let mut cost = VgicStats::default();
        let elrsr = cpu
            .read(SysReg::ICH_ELRSR_EL2)
            .map_err(fault(SysReg::ICH_ELRSR_EL2))?;
        cpu.write(SysReg::ICH_HCR_EL2, 0)
            .map_err(fault(SysReg::ICH_HCR_EL2))?;
        cost.other_accesses += 2;
        for (i, &(id, written)) in used.iter().enumerate() {
            let now = if elrsr >> i & 1 == 1 {
                ich_lr_el2::State.set(written, ich_lr_el2::INVALID)
            } else {
                cost.lr_reads += 1;
                cpu.read(lr_reg(i)).map_err(fault(lr_reg(i)))?
            };
            cpu.write(lr_reg(i), 0).map_err(fault(lr_reg(i)))?;
            cost.lr_writes += 1;
            self.fold(index, id, written, now, &mut cost);
        }
        self.cpus[index].stats += cost;
        Ok(())
    }

    /// One list register's state back into its interrupt: active as the
    /// LR says; an edge interrupt stays pending only if its LR is; a
    /// level-sensitive one loses a latched pending state once
    /// acknowledged (its line is sampled again at the next entry).
    fn fold(&mut self, index: usize, id: u32, written: u64, now: u64, cost: &mut VgicStats) {
        let state = ich_lr_el2::State.get(now);
        let was_pending = ich_lr_el2::State.get(written) & ich_lr_el2::PENDING != 0;
        let pending = state & ich_lr_el2::PENDING != 0;
        if was_pending && !pending {
            match self.source(index, id) {
                Source::Sgi => cost.acked_sgi += 1,
                Source::Pmu => cost.acked_pmu += 1,
                Source::Spe => cost.acked_spe += 1,
                Source::Other => cost.acked_other += 1,
            }
        }
        if let Some(irq) = self.irq_mut(index, id) {
            irq.active = state & ich_lr_el2::ACTIVE != 0;
            if !irq.level {
                irq.pending_latch = pending;
            } else if !pending {
                irq.pending_latch = false;
            }
        }
    }

    /// vcpu_load (the PE at EL2): the vCPU's ICH_VMCR_EL2 and active
    /// priorities back on the CPU interface.
    pub(crate) fn load(&mut self, index: usize, cpu: &mut dyn Cpu) -> Result<(), String> {
        let Some(c) = self.cpus.get_mut(index) else {
            return Ok(());
        };
        for (reg, v) in [
            (SysReg::ICH_VMCR_EL2, c.vmcr),
            (SysReg::ICH_AP0R0_EL2, c.ap0r0),
            (SysReg::ICH_AP1R0_EL2, c.ap1r0),
        ] {
            cpu.write(reg, v).map_err(fault(reg))?;
        }
        c.stats.other_accesses += 3;
        Ok(())
    }

    /// vcpu_put (the PE at EL2): ICH_VMCR_EL2 and the active priorities
    /// saved with the vCPU.
    pub(crate) fn put(&mut self, index: usize, cpu: &mut dyn Cpu) -> Result<(), String> {
        let Some(c) = self.cpus.get_mut(index) else {
            return Ok(());
        };
        c.vmcr = cpu
            .read(SysReg::ICH_VMCR_EL2)
            .map_err(fault(SysReg::ICH_VMCR_EL2))?;
        c.ap0r0 = cpu
            .read(SysReg::ICH_AP0R0_EL2)
            .map_err(fault(SysReg::ICH_AP0R0_EL2))?;
        c.ap1r0 = cpu
            .read(SysReg::ICH_AP1R0_EL2)
            .map_err(fault(SysReg::ICH_AP1R0_EL2))?;
        c.stats.other_accesses += 3;
        Ok(())
    }

    /// The list register accesses of the vCPU at `index` so far.
    pub fn lr_cost(&self, index: usize) -> Option<LrCost> {
        self.cpus.get(index).map(|c| LrCost {
            writes: c.stats.lr_writes,
            reads: c.stats.lr_reads,
        })
    }
}
