//! The GICv3 CPU interface of a PE with its virtualization part (GICv3
//! architecture specification, IHI 0069, chapters 6 and 12): the ICH_*_EL2
//! registers a hypervisor programs, and the virtual CPU interface a guest
//! reaches through the ICC_* names (the ICV_* registers) while
//! HCR_EL2.IMO/FMO are set.
//!
//! The model holds [`LIST_REGISTERS`] list registers, 5 bits of virtual
//! priority and 5 of preemption (ICH_VTR_EL2), and Group 1 virtual
//! interrupts signal the virtual IRQ; Group 0 ones can be acknowledged
//! through ICV_IAR0_EL1 but no virtual FIQ is signalled (the engine's
//! guests use Group 1, as Linux and KVM do). The physical CPU interface
//! (ICC_* at EL2, or at EL1 without IMO) is not modelled: its registers
//! are UNDEFINED, except ICC_SRE_EL2, which reads as SRE and Enable set.
//! The hardware-mapped form of a list register (HW = 1) is stored but a
//! deactivation does not reach any physical interrupt.

use hyperprof_arch::{
    icc_ctlr_el1, ich_hcr_el2, ich_lr_el2, ich_misr_el2, ich_vmcr_el2, ich_vtr_el2, intid, SysReg,
};

/// List registers the CPU interface implements (ICH_VTR_EL2.ListRegs + 1).
pub const LIST_REGISTERS: usize = 4;
/// Virtual priority bits (ICH_VTR_EL2.PRIbits + 1): priorities are
/// multiples of 8.
pub const PRI_BITS: u32 = 5;
/// Virtual preemption bits (ICH_VTR_EL2.PREbits + 1).
pub const PRE_BITS: u32 = 5;
/// The priority bits software can hold in ICV_PMR_EL1 and the priority
/// fields (the low `8 - PRI_BITS` bits are RAZ/WI).
pub const PRIORITY_MASK: u8 = !((1u8 << (8 - PRI_BITS)) - 1);
/// The idle running priority (nothing active).
pub const IDLE_PRIORITY: u8 = 0xFF;
/// The smallest ICV_BPR0_EL1 value with [`PRE_BITS`] of preemption.
const MIN_BPR0: u64 = 7 - PRE_BITS as u64;

/// ICH_VTR_EL2 of the model.
pub const ICH_VTR: u64 = (LIST_REGISTERS as u64 - 1)
    | ((PRE_BITS as u64 - 1) << 26)
    | ((PRI_BITS as u64 - 1) << 29)
    | 1 << 21; // A3V

/// ICH_VMCR_EL2 at reset: binary points at their minimum, VFIQEn RES1.
pub const VMCR_RESET: u64 = (MIN_BPR0 << 21) | ((MIN_BPR0 + 1) << 18) | 1 << 3;

/// ICC_SRE_EL1 as the guest reads it: SRE, DFB, DIB set (system registers only).
pub const SRE_EL1: u64 = 0b111;
/// ICC_SRE_EL2 as it reads: SRE, DFB, DIB and Enable set.
pub const SRE_EL2: u64 = 0b1111;

/// The virtual CPU interface's state: what a hypervisor saves and
/// restores of a vCPU's GIC context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualCpuIf {
    hcr: u64,
    vmcr: u64,
    ap0r0: u64,
    ap1r0: u64,
    lr: [u64; LIST_REGISTERS],
}

impl Default for VirtualCpuIf {
    fn default() -> Self {
        VirtualCpuIf {
            hcr: 0,
            vmcr: VMCR_RESET,
            ap0r0: 0,
            ap1r0: 0,
            lr: [0; LIST_REGISTERS],
        }
    }
}

/// Which of the guest's ICC_* names a register is, as the virtual CPU
/// interface serves it.
fn is_icv(reg: SysReg) -> bool {
    matches!(
        reg,
        SysReg::ICC_PMR_EL1
            | SysReg::ICC_IAR0_EL1
            | SysReg::ICC_EOIR0_EL1
            | SysReg::ICC_HPPIR0_EL1
            | SysReg::ICC_BPR0_EL1
            | SysReg::ICC_AP0R0_EL1
            | SysReg::ICC_AP1R0_EL1
            | SysReg::ICC_DIR_EL1
            | SysReg::ICC_RPR_EL1
            | SysReg::ICC_IAR1_EL1
            | SysReg::ICC_EOIR1_EL1
            | SysReg::ICC_HPPIR1_EL1
            | SysReg::ICC_BPR1_EL1
            | SysReg::ICC_CTLR_EL1
            | SysReg::ICC_IGRPEN0_EL1
            | SysReg::ICC_IGRPEN1_EL1
    )
}

/// How a PE routes an access to a GIC register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicRoute {
    /// An ICH_*_EL2 register (EL2 only).
    Hyp,
    /// A virtual CPU interface register (ICV_*), from EL1 with IMO set.
    Virtual,
    /// ICC_SRE_EL1 (not virtualized: the system register interface is on).
    SreEl1,
    /// ICC_SRE_EL2.
    SreEl2,
    /// An SGI generation register (ICC_SGI0R/SGI1R/ASGI1R_EL1).
    Sgi,
}

impl GicRoute {
    /// The route of `reg`, `None` for a register that is not the GIC's.
    pub fn of(reg: SysReg) -> Option<GicRoute> {
        Some(match reg {
            SysReg::ICC_SGI0R_EL1 | SysReg::ICC_SGI1R_EL1 | SysReg::ICC_ASGI1R_EL1 => GicRoute::Sgi,
            SysReg::ICC_SRE_EL1 => GicRoute::SreEl1,
            SysReg::ICC_SRE_EL2 => GicRoute::SreEl2,
            SysReg::ICH_AP0R0_EL2
            | SysReg::ICH_AP1R0_EL2
            | SysReg::ICH_HCR_EL2
            | SysReg::ICH_VTR_EL2
            | SysReg::ICH_MISR_EL2
            | SysReg::ICH_EISR_EL2
            | SysReg::ICH_ELRSR_EL2
            | SysReg::ICH_VMCR_EL2 => GicRoute::Hyp,
            r if r.list_register().is_some() => GicRoute::Hyp,
            r if is_icv(r) => GicRoute::Virtual,
            _ => return None,
        })
    }
}

/// Why a virtual CPU interface access at EL1 does not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcvFault {
    /// ICH_HCR_EL2.TC, TALL0, TALL1 or TDIR trap it to EL2.
    Trapped,
    /// The register does not exist (a list register above the implemented
    /// ones, a read of a write-only register, a write of a read-only one).
    Undefined,
}

/// One list register's fields.
#[derive(Clone, Copy, Debug)]
struct Lr(u64);

impl Lr {
    fn state(self) -> u64 {
        ich_lr_el2::State.get(self.0)
    }
    fn vintid(self) -> u32 {
        ich_lr_el2::vINTID.get(self.0) as u32
    }
    fn priority(self) -> u8 {
        ich_lr_el2::Priority.get(self.0) as u8
    }
    fn group1(self) -> bool {
        ich_lr_el2::Group.is_set(self.0)
    }
    fn hw(self) -> bool {
        ich_lr_el2::HW.is_set(self.0)
    }
    fn eoi(self) -> bool {
        !self.hw() && ich_lr_el2::EOI.is_set(self.0)
    }
}

impl VirtualCpuIf {
    /// A CPU interface out of reset.
    pub fn new() -> VirtualCpuIf {
        VirtualCpuIf::default()
    }

    /// ICH_HCR_EL2.
    pub fn hcr(&self) -> u64 {
        self.hcr
    }

    /// ICH_VMCR_EL2.
    pub fn vmcr(&self) -> u64 {
        self.vmcr
    }

    /// `ICH_LR<n>_EL2`, `None` above the implemented ones.
    pub fn lr(&self, n: usize) -> Option<u64> {
        self.lr.get(n).copied()
    }

    /// ICH_ELRSR_EL2: bit n set when LR n holds no interrupt and asks for
    /// no maintenance.
    pub fn elrsr(&self) -> u64 {
        self.lr
            .iter()
            .enumerate()
            .filter(|(_, &v)| Lr(v).state() == ich_lr_el2::INVALID && !Lr(v).eoi())
            .fold(0, |acc, (i, _)| acc | 1 << i)
    }

    /// ICH_EISR_EL2: bit n set when LR n's interrupt was deactivated with
    /// its EOI bit set.
    pub fn eisr(&self) -> u64 {
        self.lr
            .iter()
            .enumerate()
            .filter(|(_, &v)| Lr(v).state() == ich_lr_el2::INVALID && Lr(v).eoi())
            .fold(0, |acc, (i, _)| acc | 1 << i)
    }

    /// ICH_MISR_EL2: the maintenance conditions that hold.
    pub fn misr(&self) -> u64 {
        let h = self.hcr;
        let valid = self
            .lr
            .iter()
            .filter(|&&v| Lr(v).state() != ich_lr_el2::INVALID)
            .count();
        let pending = self
            .lr
            .iter()
            .any(|&v| Lr(v).state() == ich_lr_el2::PENDING);
        let eng0 = ich_vmcr_el2::VENG0.is_set(self.vmcr);
        let eng1 = ich_vmcr_el2::VENG1.is_set(self.vmcr);
        let bits = [
            (ich_misr_el2::EOI, self.eisr() != 0),
            (ich_misr_el2::U, ich_hcr_el2::UIE.is_set(h) && valid <= 1),
            (
                ich_misr_el2::LRENP,
                ich_hcr_el2::LRENPIE.is_set(h) && ich_hcr_el2::EOIcount.get(h) != 0,
            ),
            (ich_misr_el2::NP, ich_hcr_el2::NPIE.is_set(h) && !pending),
            (
                ich_misr_el2::VGrp0E,
                ich_hcr_el2::VGrp0EIE.is_set(h) && eng0,
            ),
            (
                ich_misr_el2::VGrp0D,
                ich_hcr_el2::VGrp0DIE.is_set(h) && !eng0,
            ),
            (
                ich_misr_el2::VGrp1E,
                ich_hcr_el2::VGrp1EIE.is_set(h) && eng1,
            ),
            (
                ich_misr_el2::VGrp1D,
                ich_hcr_el2::VGrp1DIE.is_set(h) && !eng1,
            ),
        ];
        bits.iter()
            .filter(|(_, on)| *on)
            .fold(0, |acc, (f, _)| acc | f.mask())
    }

    /// The maintenance interrupt's level (PPI 25 by convention): the
    /// interface is enabled and some maintenance condition holds.
    pub fn maintenance(&self) -> bool {
        ich_hcr_el2::En.is_set(self.hcr) && self.misr() != 0
    }

    /// Reads an ICH_*_EL2 register; `None` for an unimplemented list
    /// register or a register that is not the hypervisor interface's.
    pub fn read_hyp(&self, reg: SysReg) -> Option<u64> {
        if let Some(n) = reg.list_register() {
            return self.lr(usize::from(n));
        }
        Some(match reg {
            SysReg::ICH_HCR_EL2 => self.hcr,
            SysReg::ICH_VTR_EL2 => ICH_VTR,
            SysReg::ICH_VMCR_EL2 => self.vmcr,
            SysReg::ICH_AP0R0_EL2 => self.ap0r0,
            SysReg::ICH_AP1R0_EL2 => self.ap1r0,
            SysReg::ICH_MISR_EL2 => self.misr(),
            SysReg::ICH_EISR_EL2 => self.eisr(),
            SysReg::ICH_ELRSR_EL2 => self.elrsr(),
            _ => return None,
        })
    }

    /// Writes an ICH_*_EL2 register; `false` when the register is
    /// read-only or not implemented (the write is UNDEFINED).
    pub fn write_hyp(&mut self, reg: SysReg, v: u64) -> bool {
        if let Some(n) = reg.list_register() {
            return match self.lr.get_mut(usize::from(n)) {
                Some(lr) => {
                    *lr = v & !ich_lr_el2::RES0;
                    true
                }
                None => false,
            };
        }
        match reg {
            SysReg::ICH_HCR_EL2 => {
                let keep = [
                    ich_hcr_el2::En,
                    ich_hcr_el2::UIE,
                    ich_hcr_el2::LRENPIE,
                    ich_hcr_el2::NPIE,
                    ich_hcr_el2::VGrp0EIE,
                    ich_hcr_el2::VGrp0DIE,
                    ich_hcr_el2::VGrp1EIE,
                    ich_hcr_el2::VGrp1DIE,
                    ich_hcr_el2::TC,
                    ich_hcr_el2::TALL0,
                    ich_hcr_el2::TALL1,
                    ich_hcr_el2::TDIR,
                    ich_hcr_el2::EOIcount,
                ]
                .iter()
                .fold(0, |m, f| m | f.mask());
                self.hcr = v & keep;
            }
            SysReg::ICH_VMCR_EL2 => {
                let mut vmcr = v
                    & (ich_vmcr_el2::VENG0.mask()
                        | ich_vmcr_el2::VENG1.mask()
                        | ich_vmcr_el2::VCBPR.mask()
                        | ich_vmcr_el2::VEOIM.mask()
                        | ich_vmcr_el2::VBPR1.mask()
                        | ich_vmcr_el2::VBPR0.mask()
                        | ich_vmcr_el2::VPMR.mask());
                // VFIQEn is RES1 and VAckCtl RES0 with system registers;
                // the priority mask and binary points hold what the
                // implemented bits allow.
                vmcr |= ich_vmcr_el2::VFIQEn.mask();
                let pmr = ich_vmcr_el2::VPMR.get(vmcr) & u64::from(PRIORITY_MASK);
                vmcr = ich_vmcr_el2::VPMR.set(vmcr, pmr);
                let bpr0 = ich_vmcr_el2::VBPR0.get(vmcr).max(MIN_BPR0);
                let bpr1 = ich_vmcr_el2::VBPR1.get(vmcr).max(MIN_BPR0 + 1);
                vmcr = ich_vmcr_el2::VBPR1.set(ich_vmcr_el2::VBPR0.set(vmcr, bpr0), bpr1);
                self.vmcr = vmcr;
            }
            SysReg::ICH_AP0R0_EL2 => self.ap0r0 = v & 0xFFFF_FFFF,
            SysReg::ICH_AP1R0_EL2 => self.ap1r0 = v & 0xFFFF_FFFF,
            _ => return false,
        }
        true
    }

    /// The running priority: the group priority of the highest active
    /// priority in the active priority registers, or [`IDLE_PRIORITY`].
    pub fn running_priority(&self) -> u8 {
        let active = (self.ap0r0 | self.ap1r0) & 0xFFFF_FFFF;
        if active == 0 {
            IDLE_PRIORITY
        } else {
            (active.trailing_zeros() << (8 - PRE_BITS)) as u8
        }
    }

    /// The highest-priority pending list register (lowest priority
    /// value, then lowest index).
    fn highest_pending(&self) -> Option<usize> {
        self.lr
            .iter()
            .enumerate()
            .filter(|(_, &v)| Lr(v).state() == ich_lr_el2::PENDING)
            .min_by_key(|(i, &v)| (Lr(v).priority(), *i))
            .map(|(i, _)| i)
    }

    /// The group priority of `priority` for a Group 1 (`group1`) or
    /// Group 0 interrupt, as the binary points mask it.
    fn group_priority(&self, priority: u8, group1: bool) -> u8 {
        let bpr0 = ich_vmcr_el2::VBPR0.get(self.vmcr) as u32;
        let bpr1 = ich_vmcr_el2::VBPR1.get(self.vmcr) as u32;
        // BPR0 = n: group priority bits [7:n+1]; BPR1 = n: bits [7:n].
        let lsb = if !group1 || ich_vmcr_el2::VCBPR.is_set(self.vmcr) {
            bpr0 + 1
        } else {
            bpr1
        };
        let mask = (0xFFu32 << lsb) as u8;
        priority & mask
    }

    /// Whether `lr` may be signalled or acknowledged now: its group is
    /// enabled, it beats the priority mask and preempts the running
    /// priority.
    fn can_signal(&self, lr: Lr) -> bool {
        let enabled = if lr.group1() {
            ich_vmcr_el2::VENG1.is_set(self.vmcr)
        } else {
            ich_vmcr_el2::VENG0.is_set(self.vmcr)
        };
        let pmr = ich_vmcr_el2::VPMR.get(self.vmcr) as u8;
        enabled
            && lr.priority() < pmr
            && self.group_priority(lr.priority(), lr.group1()) < self.running_priority()
    }

    /// The virtual IRQ's level: the interface is enabled and its highest
    /// priority pending Group 1 interrupt may be signalled.
    pub fn virtual_irq(&self) -> bool {
        if !ich_hcr_el2::En.is_set(self.hcr) {
            return false;
        }
        match self.highest_pending() {
            Some(i) => {
                let lr = Lr(self.lr[i]);
                lr.group1() && self.can_signal(lr)
            }
            None => false,
        }
    }

    /// The trap ICH_HCR_EL2 sets on an EL1 access to `reg`.
    fn trapped(&self, reg: SysReg) -> bool {
        let h = self.hcr;
        let group0 = matches!(
            reg,
            SysReg::ICC_IAR0_EL1
                | SysReg::ICC_EOIR0_EL1
                | SysReg::ICC_HPPIR0_EL1
                | SysReg::ICC_BPR0_EL1
                | SysReg::ICC_AP0R0_EL1
                | SysReg::ICC_IGRPEN0_EL1
        );
        let group1 = matches!(
            reg,
            SysReg::ICC_IAR1_EL1
                | SysReg::ICC_EOIR1_EL1
                | SysReg::ICC_HPPIR1_EL1
                | SysReg::ICC_BPR1_EL1
                | SysReg::ICC_AP1R0_EL1
                | SysReg::ICC_IGRPEN1_EL1
        );
        let common = matches!(
            reg,
            SysReg::ICC_CTLR_EL1 | SysReg::ICC_DIR_EL1 | SysReg::ICC_PMR_EL1 | SysReg::ICC_RPR_EL1
        );
        (group0 && ich_hcr_el2::TALL0.is_set(h))
            || (group1 && ich_hcr_el2::TALL1.is_set(h))
            || (common && ich_hcr_el2::TC.is_set(h))
            || (reg == SysReg::ICC_DIR_EL1 && ich_hcr_el2::TDIR.is_set(h))
    }

    /// Whether ICH_HCR_EL2 traps an EL1 SGI generation write (TC).
    pub fn traps_sgi(&self) -> bool {
        ich_hcr_el2::TC.is_set(self.hcr)
    }

    /// An EL1 read through the virtual CPU interface (ICV_*).
    pub fn read_virtual(&mut self, reg: SysReg) -> Result<u64, IcvFault> {
        if self.trapped(reg) {
            return Err(IcvFault::Trapped);
        }
        let vmcr = self.vmcr;
        Ok(match reg {
            SysReg::ICC_IAR1_EL1 => u64::from(self.acknowledge(true)),
            SysReg::ICC_IAR0_EL1 => u64::from(self.acknowledge(false)),
            SysReg::ICC_HPPIR1_EL1 => u64::from(self.hppir(true)),
            SysReg::ICC_HPPIR0_EL1 => u64::from(self.hppir(false)),
            SysReg::ICC_PMR_EL1 => ich_vmcr_el2::VPMR.get(vmcr),
            SysReg::ICC_RPR_EL1 => u64::from(self.running_priority()),
            SysReg::ICC_BPR0_EL1 => ich_vmcr_el2::VBPR0.get(vmcr),
            SysReg::ICC_BPR1_EL1 => {
                if ich_vmcr_el2::VCBPR.is_set(vmcr) {
                    (ich_vmcr_el2::VBPR0.get(vmcr) + 1).min(7)
                } else {
                    ich_vmcr_el2::VBPR1.get(vmcr)
                }
            }
            SysReg::ICC_IGRPEN0_EL1 => ich_vmcr_el2::VENG0.get(vmcr),
            SysReg::ICC_IGRPEN1_EL1 => ich_vmcr_el2::VENG1.get(vmcr),
            SysReg::ICC_AP0R0_EL1 => self.ap0r0,
            SysReg::ICC_AP1R0_EL1 => self.ap1r0,
            SysReg::ICC_CTLR_EL1 => {
                let v = icc_ctlr_el1::CBPR.set(0, ich_vmcr_el2::VCBPR.get(vmcr));
                let v = icc_ctlr_el1::EOImode.set(v, ich_vmcr_el2::VEOIM.get(vmcr));
                let v = icc_ctlr_el1::PRIbits.set(v, ich_vtr_el2::PRIbits.get(ICH_VTR));
                let v = icc_ctlr_el1::IDbits.set(v, ich_vtr_el2::IDbits.get(ICH_VTR));
                icc_ctlr_el1::A3V.set(v, ich_vtr_el2::A3V.get(ICH_VTR))
            }
            // EOIR and DIR are write-only.
            _ => return Err(IcvFault::Undefined),
        })
    }

    /// An EL1 write through the virtual CPU interface (ICV_*).
    pub fn write_virtual(&mut self, reg: SysReg, v: u64) -> Result<(), IcvFault> {
        if self.trapped(reg) {
            return Err(IcvFault::Trapped);
        }
        let vmcr = self.vmcr;
        match reg {
            SysReg::ICC_EOIR1_EL1 => self.end_of_interrupt(v as u32 & 0xFF_FFFF, true),
            SysReg::ICC_EOIR0_EL1 => self.end_of_interrupt(v as u32 & 0xFF_FFFF, false),
            SysReg::ICC_DIR_EL1 => {
                // With EOImode 0 a DIR write is UNPREDICTABLE: ignored here.
                if ich_vmcr_el2::VEOIM.is_set(vmcr) {
                    self.deactivate(v as u32 & 0xFF_FFFF);
                }
            }
            SysReg::ICC_PMR_EL1 => {
                self.vmcr = ich_vmcr_el2::VPMR.set(vmcr, v & u64::from(PRIORITY_MASK));
            }
            SysReg::ICC_BPR0_EL1 => {
                self.vmcr = ich_vmcr_el2::VBPR0.set(vmcr, (v & 7).max(MIN_BPR0));
            }
            SysReg::ICC_BPR1_EL1 => {
                if !ich_vmcr_el2::VCBPR.is_set(vmcr) {
                    self.vmcr = ich_vmcr_el2::VBPR1.set(vmcr, (v & 7).max(MIN_BPR0 + 1));
                }
            }
            SysReg::ICC_IGRPEN0_EL1 => self.vmcr = ich_vmcr_el2::VENG0.set(vmcr, v & 1),
            SysReg::ICC_IGRPEN1_EL1 => self.vmcr = ich_vmcr_el2::VENG1.set(vmcr, v & 1),
            SysReg::ICC_AP0R0_EL1 => self.ap0r0 = v & 0xFFFF_FFFF,
            SysReg::ICC_AP1R0_EL1 => self.ap1r0 = v & 0xFFFF_FFFF,
            SysReg::ICC_CTLR_EL1 => {
                let m = ich_vmcr_el2::VCBPR.set(vmcr, icc_ctlr_el1::CBPR.get(v));
                self.vmcr = ich_vmcr_el2::VEOIM.set(m, icc_ctlr_el1::EOImode.get(v));
            }
            // IAR, HPPIR and RPR are read-only.
            _ => return Err(IcvFault::Undefined),
        }
        Ok(())
    }

    /// ICV_HPPIRn_EL1: the highest-priority pending interrupt of the
    /// group, or 1023.
    fn hppir(&self, group1: bool) -> u32 {
        match self.highest_pending() {
            Some(i) if Lr(self.lr[i]).group1() == group1 => Lr(self.lr[i]).vintid(),
            _ => intid::SPURIOUS,
        }
    }

    /// ICV_IARn_EL1: acknowledges the highest-priority pending interrupt
    /// of the group when it may be signalled (its LR becomes active and
    /// its group priority the running priority), else 1023.
    fn acknowledge(&mut self, group1: bool) -> u32 {
        let Some(i) = self.highest_pending() else {
            return intid::SPURIOUS;
        };
        let lr = Lr(self.lr[i]);
        if lr.group1() != group1 || !self.can_signal(lr) {
            return intid::SPURIOUS;
        }
        self.lr[i] = ich_lr_el2::State.set(lr.0, ich_lr_el2::ACTIVE);
        let bit = u32::from(self.group_priority(lr.priority(), group1)) >> (8 - PRE_BITS);
        if group1 {
            self.ap1r0 |= 1 << bit;
        } else {
            self.ap0r0 |= 1 << bit;
        }
        lr.vintid()
    }

    /// ICV_EOIRn_EL1: drops the running priority and, with EOImode 0,
    /// deactivates the interrupt.
    fn end_of_interrupt(&mut self, id: u32, group1: bool) {
        // Special INTIDs are ignored.
        if (intid::SPI_END..=intid::SPURIOUS).contains(&id) {
            return;
        }
        let active = (self.ap0r0 | self.ap1r0) & 0xFFFF_FFFF;
        if active == 0 {
            // No active priority: the write has no effect.
            return;
        }
        let bit = active.trailing_zeros();
        if group1 {
            self.ap1r0 &= !(1 << bit);
        } else {
            self.ap0r0 &= !(1 << bit);
        }
        if !ich_vmcr_el2::VEOIM.is_set(self.vmcr) {
            self.deactivate(id);
        }
    }

    /// Deactivates `id`: its LR leaves the active state (raising the EOI
    /// maintenance condition when its EOI bit is set); an interrupt that
    /// is in no LR counts in ICH_HCR_EL2.EOIcount.
    fn deactivate(&mut self, id: u32) {
        let hit = self.lr.iter().position(|&v| {
            let lr = Lr(v);
            lr.vintid() == id && lr.state() & ich_lr_el2::ACTIVE != 0
        });
        match hit {
            Some(i) => {
                let lr = Lr(self.lr[i]);
                let state = lr.state() & !ich_lr_el2::ACTIVE;
                self.lr[i] = ich_lr_el2::State.set(lr.0, state);
            }
            None => {
                let n = (ich_hcr_el2::EOIcount.get(self.hcr) + 1) & ich_hcr_el2::EOIcount.max();
                self.hcr = ich_hcr_el2::EOIcount.set(self.hcr, n);
            }
        }
    }
}

#[cfg(test)]
mod tests;
