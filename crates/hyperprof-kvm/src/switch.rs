//! The SPE world switch of a VHE host (seed 000, "KVM: arm64: VHE: Context
//! switch SPE state"), run on the physical CPU through the [`Cpu`] trait:
//!
//! - vCPU load ([`load`]): stop and drain host profiling (PMSCR_EL2, then
//!   PSB CSYNC; DSB and the buffer disabled if it was enabled, a pending
//!   PMBSR service cleared), save the host's buffer and sampling registers,
//!   restore the guest's sampling registers. Then the caller hands the
//!   buffer to EL1 in MDCR_EL2.E2PB, with an ISB.
//! - guest entry ([`enter`]): restore the guest buffer registers, only when
//!   the guest's buffer is enabled (ProfilingBufferEnabled on the saved
//!   values): with PMBSR.S set in memory the only way to stop profiling is
//!   to leave the hardware buffer disabled.
//! - guest exit ([`exit`]): drain and save the guest buffer registers; a
//!   buffer management event the guest's buffer raised moves to the saved
//!   PMBSR and the hardware is cleared so that PMBIRQ drops.
//! - vCPU put ([`put`]): the reverse of load, after the caller gave the
//!   buffer back to EL2: the host session resumes exactly where it stopped.

use hyperprof_arch::predicates::profiling_buffer_enabled;
use hyperprof_arch::{pmblimitr_el1, pmbsr_el1, pmscr_el2, AccessFault, Cpu, SysReg};

/// The SPE sampling registers a vCPU owns while loaded (the buffer
/// registers are switched at entry and exit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplingRegs {
    /// PMSCR_EL1.
    pub pmscr_el1: u64,
    /// PMSNEVFR_EL1 (switched only with FEAT_SPE_FnE).
    pub pmsnevfr_el1: u64,
    /// PMSICR_EL1.
    pub pmsicr_el1: u64,
    /// PMSIRR_EL1.
    pub pmsirr_el1: u64,
    /// PMSFCR_EL1.
    pub pmsfcr_el1: u64,
    /// PMSEVFR_EL1.
    pub pmsevfr_el1: u64,
    /// PMSLATFR_EL1.
    pub pmslatfr_el1: u64,
    /// PMSDSFR_EL1 (switched only with FEAT_SPE_FDS).
    pub pmsdsfr_el1: u64,
}

impl SamplingRegs {
    /// The slot of `reg` (PMSCR_EL1 and the PMS* sampling registers).
    pub fn slot(&mut self, reg: SysReg) -> Option<&mut u64> {
        Some(match reg {
            SysReg::PMSCR_EL1 => &mut self.pmscr_el1,
            SysReg::PMSNEVFR_EL1 => &mut self.pmsnevfr_el1,
            SysReg::PMSICR_EL1 => &mut self.pmsicr_el1,
            SysReg::PMSIRR_EL1 => &mut self.pmsirr_el1,
            SysReg::PMSFCR_EL1 => &mut self.pmsfcr_el1,
            SysReg::PMSEVFR_EL1 => &mut self.pmsevfr_el1,
            SysReg::PMSLATFR_EL1 => &mut self.pmslatfr_el1,
            SysReg::PMSDSFR_EL1 => &mut self.pmsdsfr_el1,
            _ => return None,
        })
    }
}

/// The buffer registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferRegs {
    /// PMBLIMITR_EL1.
    pub pmblimitr_el1: u64,
    /// PMBPTR_EL1.
    pub pmbptr_el1: u64,
    /// PMBSR_EL1.
    pub pmbsr_el1: u64,
}

impl BufferRegs {
    /// ProfilingBufferEnabled() on these values.
    pub fn enabled(&self) -> bool {
        profiling_buffer_enabled(self.pmblimitr_el1, self.pmbsr_el1)
    }
}

/// The guest's SPE registers, as the hypervisor keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestSpe {
    /// Sampling registers.
    pub sampling: SamplingRegs,
    /// Buffer registers.
    pub buffer: BufferRegs,
}

/// What load saved of the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSpe {
    /// PMSCR_EL2.
    pub pmscr_el2: u64,
    /// Sampling registers.
    pub sampling: SamplingRegs,
    /// Buffer registers.
    pub buffer: BufferRegs,
}

/// Which optional sampling registers the VM has, and how EL2 reaches the
/// EL1 PMSCR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// FEAT_SPE_FnE: PMSNEVFR_EL1.
    pub fne: bool,
    /// FEAT_SPE_FDS: PMSDSFR_EL1.
    pub fds: bool,
    /// nVHE: EL2 runs with E2H clear and names the EL1 registers directly
    /// (PMSCR_EL1); with VHE it uses the EL12 alias (PMSCR_EL12).
    pub nvhe: bool,
}

impl Features {
    fn pmscr_el1(self) -> SysReg {
        if self.nvhe {
            SysReg::PMSCR_EL1
        } else {
            SysReg::PMSCR_EL12
        }
    }
}

/// Reads the sampling registers.
pub fn save_sampling(cpu: &mut impl Cpu, f: Features) -> Result<SamplingRegs, AccessFault> {
    Ok(SamplingRegs {
        // The EL1 register (through its EL12 alias from a VHE EL2).
        pmscr_el1: cpu.read(f.pmscr_el1())?,
        pmsnevfr_el1: if f.fne {
            cpu.read(SysReg::PMSNEVFR_EL1)?
        } else {
            0
        },
        pmsicr_el1: cpu.read(SysReg::PMSICR_EL1)?,
        pmsirr_el1: cpu.read(SysReg::PMSIRR_EL1)?,
        pmsfcr_el1: cpu.read(SysReg::PMSFCR_EL1)?,
        pmsevfr_el1: cpu.read(SysReg::PMSEVFR_EL1)?,
        pmslatfr_el1: cpu.read(SysReg::PMSLATFR_EL1)?,
        pmsdsfr_el1: if f.fds {
            cpu.read(SysReg::PMSDSFR_EL1)?
        } else {
            0
        },
    })
}

/// Writes the sampling registers.
pub fn restore_sampling(
    cpu: &mut impl Cpu,
    r: &SamplingRegs,
    f: Features,
) -> Result<(), AccessFault> {
    cpu.write(f.pmscr_el1(), r.pmscr_el1)?;
    if f.fne {
        cpu.write(SysReg::PMSNEVFR_EL1, r.pmsnevfr_el1)?;
    }
    cpu.write(SysReg::PMSICR_EL1, r.pmsicr_el1)?;
    cpu.write(SysReg::PMSIRR_EL1, r.pmsirr_el1)?;
    cpu.write(SysReg::PMSFCR_EL1, r.pmsfcr_el1)?;
    cpu.write(SysReg::PMSEVFR_EL1, r.pmsevfr_el1)?;
    cpu.write(SysReg::PMSLATFR_EL1, r.pmslatfr_el1)?;
    if f.fds {
        cpu.write(SysReg::PMSDSFR_EL1, r.pmsdsfr_el1)?;
    }
    Ok(())
}

/// vCPU load: stops and drains host profiling, saves the host, restores the
/// guest's sampling registers (`kvm_vcpu_spe_load`).
pub fn load(cpu: &mut impl Cpu, guest: &GuestSpe, f: Features) -> Result<HostSpe, AccessFault> {
    let pmscr_el2 = cpu.read(SysReg::PMSCR_EL2)?;
    cpu.write(SysReg::PMSCR_EL2, 0)?;
    if pmscr_el2_e2spe(pmscr_el2) {
        cpu.isb();
    }
    let pmblimitr = cpu.read(SysReg::PMBLIMITR_EL1)?;
    if pmblimitr_el1::E.is_set(pmblimitr) {
        cpu.psb_csync();
        cpu.dsb_nsh();
        // Disabled so that no translation of the host's is used while the
        // guest context is restored; the ISB also makes the unit's update
        // of PMBPTR visible.
        cpu.write(SysReg::PMBLIMITR_EL1, 0)?;
        cpu.isb();
    }
    let pmbsr = cpu.read(SysReg::PMBSR_EL1)?;
    if pmbsr != 0 {
        // The host's handler would find S clear and call it spurious: the
        // event is kept in the saved value and re-raised at put. Unlike
        // the seed, a COLL flag without S is cleared too: the unit ORs it
        // into the guest's next buffer management event otherwise.
        cpu.write(SysReg::PMBSR_EL1, 0)?;
        cpu.isb();
    }
    let pmbptr = cpu.read(SysReg::PMBPTR_EL1)?;
    let sampling = save_sampling(cpu, f)?;
    restore_sampling(cpu, &guest.sampling, f)?;
    Ok(HostSpe {
        pmscr_el2,
        sampling,
        buffer: BufferRegs {
            pmblimitr_el1: pmblimitr,
            pmbptr_el1: pmbptr,
            pmbsr_el1: pmbsr,
        },
    })
}

fn pmscr_el2_e2spe(v: u64) -> bool {
    pmscr_el2::E2SPE.is_set(v)
}

/// Guest entry: the guest's buffer registers go to the hardware only when
/// its buffer is enabled (`__kvm_spe_restore_guest_buffer`).
pub fn enter(cpu: &mut impl Cpu, guest: &GuestSpe) -> Result<(), AccessFault> {
    if !guest.buffer.enabled() {
        return Ok(());
    }
    cpu.write(SysReg::PMBPTR_EL1, guest.buffer.pmbptr_el1)?;
    cpu.isb();
    cpu.write(SysReg::PMBLIMITR_EL1, guest.buffer.pmblimitr_el1)
}

/// Guest exit: drains the guest's buffer and saves its registers; a buffer
/// management event moves into the saved PMBSR (`__kvm_spe_save_guest_buffer`).
/// Returns whether an event moved (the saved PMBSR is then the unit's, not
/// one the guest wrote).
pub fn exit(cpu: &mut impl Cpu, guest: &mut GuestSpe) -> Result<bool, AccessFault> {
    if !guest.buffer.enabled() {
        return Ok(false);
    }
    cpu.psb_csync();
    cpu.dsb_nsh();
    // Makes the unit's update of PMBPTR_EL1 visible.
    cpu.isb();
    cpu.write(SysReg::PMBLIMITR_EL1, 0)?;
    cpu.isb();
    guest.buffer.pmbptr_el1 = cpu.read(SysReg::PMBPTR_EL1)?;
    let pmbsr = cpu.read(SysReg::PMBSR_EL1)?;
    let coll = pmbsr_el1::COLL.mask();
    if !pmbsr_el1::S.is_set(pmbsr) {
        // A collision flag without an event is the guest's (the hardware
        // PMBSR is clear when the vCPU is loaded): its copy keeps it. The
        // hardware keeps it too while the vCPU is loaded (the hypervisor
        // writes the guest's PMBSR writes through, and put writes the
        // host's value back), so this costs no access.
        guest.buffer.pmbsr_el1 |= pmbsr & coll;
        return Ok(false);
    }
    // Stop the unit asserting PMBIRQ; the guest sees the event in its copy,
    // with a collision flag it had not cleared yet.
    cpu.write(SysReg::PMBSR_EL1, 0)?;
    cpu.isb();
    guest.buffer.pmbsr_el1 = pmbsr | guest.buffer.pmbsr_el1 & coll;
    Ok(true)
}

/// vCPU put: saves the guest's sampling registers and resumes the host
/// session exactly where load stopped it (`kvm_vcpu_spe_put`).
pub fn put(
    cpu: &mut impl Cpu,
    guest: &mut GuestSpe,
    host: &HostSpe,
    f: Features,
) -> Result<(), AccessFault> {
    guest.sampling = save_sampling(cpu, f)?;
    restore_sampling(cpu, &host.sampling, f)?;
    cpu.write(SysReg::PMSCR_EL2, host.pmscr_el2)?;
    cpu.write(SysReg::PMBPTR_EL1, host.buffer.pmbptr_el1)?;
    cpu.write(SysReg::PMBSR_EL1, host.buffer.pmbsr_el1)?;
    let enabled = pmblimitr_el1::E.is_set(host.buffer.pmblimitr_el1);
    if enabled {
        cpu.isb();
    }
    cpu.write(SysReg::PMBLIMITR_EL1, host.buffer.pmblimitr_el1)?;
    if enabled {
        cpu.isb();
    }
    Ok(())
}

/// What an nVHE guest entry saved of the host's EL1 profiling session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSpeNvhe {
    /// The host's PMSCR_EL1 as it was before the entry.
    pub pmscr_el1: u64,
    /// The host's buffer registers (PMBPTR_EL1 only when its buffer was
    /// enabled; PMBSR_EL1 when enabled or when the guest's SPE state went in).
    pub buffer: BufferRegs,
    /// The host's PMSCR_EL2 and sampling registers, saved when the guest's
    /// were switched in (the guest's would otherwise replace them).
    pub sampling: Option<(u64, SamplingRegs)>,
}

impl HostSpeNvhe {
    fn buffer_enabled(&self) -> bool {
        pmblimitr_el1::E.is_set(self.buffer.pmblimitr_el1)
    }
}

/// nVHE guest entry, host half (seed 003 `__debug_save_spe_nvhe`, and what
/// the series noted nVHE still needed): when the host's EL1 buffer is in
/// use, stop sampling, drain, and disable the buffer so that no host record
/// is written through the guest's EL1&0 tables once they are installed.
/// With `sampling` (the hardware's optional registers) the guest's SPE state
/// is about to be switched in: the host's PMSCR_EL2 and sampling registers
/// are saved, and its PMBSR_EL1 is cleared so that neither a pending event
/// nor a collision flag of the host's reaches the guest.
pub fn nvhe_save_host(
    cpu: &mut impl Cpu,
    sampling: Option<Features>,
) -> Result<HostSpeNvhe, AccessFault> {
    let pmblimitr = cpu.read(SysReg::PMBLIMITR_EL1)?;
    let mut host = HostSpeNvhe {
        buffer: BufferRegs {
            pmblimitr_el1: pmblimitr,
            ..BufferRegs::default()
        },
        ..HostSpeNvhe::default()
    };
    let enabled = host.buffer_enabled();
    if enabled {
        host.pmscr_el1 = cpu.read(SysReg::PMSCR_EL1)?;
        cpu.write(SysReg::PMSCR_EL1, 0)?;
        cpu.isb();
        cpu.psb_csync();
        cpu.dsb_nsh();
        cpu.write(SysReg::PMBLIMITR_EL1, 0)?;
        cpu.isb();
        host.buffer.pmbptr_el1 = cpu.read(SysReg::PMBPTR_EL1)?;
    }
    if enabled || sampling.is_some() {
        let pmbsr = cpu.read(SysReg::PMBSR_EL1)?;
        if pmbsr != 0 {
            // Kept in the saved value; the host sees it again after the exit.
            cpu.write(SysReg::PMBSR_EL1, 0)?;
        }
        host.buffer.pmbsr_el1 = pmbsr;
    }
    if let Some(f) = sampling {
        let pmscr_el2 = cpu.read(SysReg::PMSCR_EL2)?;
        let mut regs = save_sampling(cpu, f)?;
        if enabled {
            // PMSCR_EL1 was zeroed above: keep what the host had.
            regs.pmscr_el1 = host.pmscr_el1;
        } else {
            host.pmscr_el1 = regs.pmscr_el1;
        }
        host.sampling = Some((pmscr_el2, regs));
    }
    Ok(host)
}

/// nVHE guest exit, host half: the host's sampling registers and
/// PMSCR_EL2 (when the entry saved them), then its buffer and sampling
/// back, after its EL1 tables are (the ISB makes them and the buffer
/// registers take effect before sampling resumes).
pub fn nvhe_restore_host(
    cpu: &mut impl Cpu,
    host: &HostSpeNvhe,
    f: Features,
) -> Result<(), AccessFault> {
    let enabled = host.buffer_enabled();
    if let Some((pmscr_el2, regs)) = host.sampling {
        // With the host's buffer enabled its PMSCR_EL1 goes back last.
        let regs = SamplingRegs {
            pmscr_el1: if enabled { 0 } else { regs.pmscr_el1 },
            ..regs
        };
        restore_sampling(cpu, &regs, f)?;
        cpu.write(SysReg::PMSCR_EL2, pmscr_el2)?;
        if !enabled {
            // The guest's collision flag may be on the hardware.
            cpu.write(SysReg::PMBSR_EL1, host.buffer.pmbsr_el1)?;
        }
    }
    if !enabled {
        return Ok(());
    }
    cpu.write(SysReg::PMBPTR_EL1, host.buffer.pmbptr_el1)?;
    cpu.write(SysReg::PMBSR_EL1, host.buffer.pmbsr_el1)?;
    cpu.isb();
    cpu.write(SysReg::PMBLIMITR_EL1, host.buffer.pmblimitr_el1)?;
    cpu.isb();
    cpu.write(SysReg::PMSCR_EL1, host.pmscr_el1)?;
    cpu.isb();
    Ok(())
}
