use super::*;
use hyperprof_arch::{ich_hcr_el2, ich_lr_el2, ich_misr_el2, ich_vmcr_el2, SysReg};

/// A Group 1 list register entry, pending, at `priority`.
fn pending(id: u32, priority: u8) -> u64 {
    let v = ich_lr_el2::vINTID.set(0, u64::from(id));
    let v = ich_lr_el2::Priority.set(v, u64::from(priority));
    let v = ich_lr_el2::Group.set(v, 1);
    ich_lr_el2::State.set(v, ich_lr_el2::PENDING)
}

/// An enabled interface with Group 1 on and the priority mask at `pmr`.
fn enabled(pmr: u8) -> VirtualCpuIf {
    let mut c = VirtualCpuIf::new();
    assert!(c.write_hyp(SysReg::ICH_HCR_EL2, ich_hcr_el2::En.mask()));
    let vmcr = ich_vmcr_el2::VPMR.set(VMCR_RESET, u64::from(pmr));
    assert!(c.write_hyp(SysReg::ICH_VMCR_EL2, ich_vmcr_el2::VENG1.set(vmcr, 1)));
    c
}

fn lr_state(c: &VirtualCpuIf, n: usize) -> u64 {
    ich_lr_el2::State.get(c.lr(n).unwrap())
}

#[test]
fn reset_and_type() {
    let c = VirtualCpuIf::new();
    assert_eq!(c.read_hyp(SysReg::ICH_VTR_EL2), Some(ICH_VTR));
    assert_eq!(ich_vtr_el2::ListRegs.get(ICH_VTR), 3);
    assert_eq!(ich_vtr_el2::PRIbits.get(ICH_VTR), 4);
    assert_eq!(c.read_hyp(SysReg::ICH_ELRSR_EL2), Some(0b1111));
    assert_eq!(c.read_hyp(SysReg::ICH_MISR_EL2), Some(0));
    assert_eq!(c.read_hyp(SysReg::ICH_LR4_EL2), None);
    assert_eq!(c.running_priority(), IDLE_PRIORITY);
    assert!(!c.virtual_irq());
    assert!(!c.maintenance());
}

#[test]
fn a_pending_group1_lr_signals_only_above_the_mask_and_enabled() {
    let mut c = enabled(0xF0);
    c.write_hyp(SysReg::ICH_LR0_EL2, pending(23, 0xA0));
    assert!(c.virtual_irq());
    assert_eq!(c.read_hyp(SysReg::ICH_ELRSR_EL2), Some(0b1110));
    // The mask at the interrupt's priority hides it.
    c.write_virtual(SysReg::ICC_PMR_EL1, 0xA0).unwrap();
    assert!(!c.virtual_irq());
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(1023));
    c.write_virtual(SysReg::ICC_PMR_EL1, 0xFF).unwrap();
    // Low bits of the mask are RAZ/WI with 5 priority bits.
    assert_eq!(c.read_virtual(SysReg::ICC_PMR_EL1), Ok(0xF8));
    assert!(c.virtual_irq());
    // Group 1 disabled, or the interface disabled: nothing.
    c.write_virtual(SysReg::ICC_IGRPEN1_EL1, 0).unwrap();
    assert!(!c.virtual_irq());
    c.write_virtual(SysReg::ICC_IGRPEN1_EL1, 1).unwrap();
    c.write_hyp(SysReg::ICH_HCR_EL2, 0);
    assert!(!c.virtual_irq());
}

#[test]
fn acknowledge_raises_the_running_priority_and_eoi_drops_and_deactivates() {
    let mut c = enabled(0xF0);
    c.write_hyp(SysReg::ICH_LR0_EL2, pending(23, 0xA0));
    c.write_hyp(SysReg::ICH_LR1_EL2, pending(21, 0xC0));
    assert_eq!(c.read_virtual(SysReg::ICC_HPPIR1_EL1), Ok(23));
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(23));
    assert_eq!(lr_state(&c, 0), ich_lr_el2::ACTIVE);
    assert_eq!(c.read_virtual(SysReg::ICC_RPR_EL1), Ok(0xA0));
    assert_eq!(c.read_hyp(SysReg::ICH_AP1R0_EL2), Some(1 << (0xA0 >> 3)));
    // 0xC0 does not preempt 0xA0.
    assert!(!c.virtual_irq());
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(1023));
    // A higher priority one does.
    c.write_hyp(SysReg::ICH_LR2_EL2, pending(1, 0x80));
    assert!(c.virtual_irq());
    c.write_hyp(SysReg::ICH_LR2_EL2, 0);
    c.write_virtual(SysReg::ICC_EOIR1_EL1, 23).unwrap();
    assert_eq!(lr_state(&c, 0), ich_lr_el2::INVALID);
    assert_eq!(c.running_priority(), IDLE_PRIORITY);
    // The other one is signalled now.
    assert!(c.virtual_irq());
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(21));
    c.write_virtual(SysReg::ICC_EOIR1_EL1, 21).unwrap();
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(1023));
    assert_eq!(c.read_hyp(SysReg::ICH_ELRSR_EL2), Some(0b1111));
}

#[test]
fn eoi_bit_raises_the_maintenance_interrupt() {
    let mut c = enabled(0xF0);
    c.write_hyp(
        SysReg::ICH_LR1_EL2,
        ich_lr_el2::EOI.set(pending(21, 0x80), 1),
    );
    // Pending with EOI: not empty, no maintenance yet.
    assert_eq!(c.read_hyp(SysReg::ICH_ELRSR_EL2), Some(0b1101));
    assert!(!c.maintenance());
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(21));
    assert!(!c.maintenance());
    c.write_virtual(SysReg::ICC_EOIR1_EL1, 21).unwrap();
    assert_eq!(c.read_hyp(SysReg::ICH_EISR_EL2), Some(0b10));
    assert_eq!(
        c.read_hyp(SysReg::ICH_MISR_EL2),
        Some(ich_misr_el2::EOI.mask())
    );
    assert!(c.maintenance());
    // The hypervisor empties the LR: the condition goes.
    c.write_hyp(SysReg::ICH_LR1_EL2, 0);
    assert!(!c.maintenance());
}

#[test]
fn eoimode_1_splits_priority_drop_and_deactivation() {
    let mut c = enabled(0xF0);
    c.write_virtual(SysReg::ICC_CTLR_EL1, 0b10).unwrap();
    assert_eq!(
        c.read_virtual(SysReg::ICC_CTLR_EL1).unwrap() & 0b11,
        0b10,
        "EOImode reads back"
    );
    c.write_hyp(SysReg::ICH_LR0_EL2, pending(23, 0xA0));
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(23));
    c.write_virtual(SysReg::ICC_EOIR1_EL1, 23).unwrap();
    assert_eq!(c.running_priority(), IDLE_PRIORITY);
    assert_eq!(lr_state(&c, 0), ich_lr_el2::ACTIVE);
    c.write_virtual(SysReg::ICC_DIR_EL1, 23).unwrap();
    assert_eq!(lr_state(&c, 0), ich_lr_el2::INVALID);
}

#[test]
fn eoi_of_an_interrupt_in_no_lr_counts() {
    let mut c = enabled(0xF0);
    c.write_hyp(
        SysReg::ICH_HCR_EL2,
        ich_hcr_el2::En.mask() | ich_hcr_el2::LRENPIE.mask(),
    );
    c.write_hyp(SysReg::ICH_LR0_EL2, pending(5, 0x40));
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(5));
    // The hypervisor took the LR away while the interrupt was active.
    c.write_hyp(SysReg::ICH_LR0_EL2, 0);
    c.write_virtual(SysReg::ICC_EOIR1_EL1, 5).unwrap();
    let hcr = c.read_hyp(SysReg::ICH_HCR_EL2).unwrap();
    assert_eq!(ich_hcr_el2::EOIcount.get(hcr), 1);
    assert_eq!(
        c.read_hyp(SysReg::ICH_MISR_EL2),
        Some(ich_misr_el2::LRENP.mask())
    );
    // Special INTIDs are ignored.
    c.write_virtual(SysReg::ICC_EOIR1_EL1, 1023).unwrap();
    let hcr = c.read_hyp(SysReg::ICH_HCR_EL2).unwrap();
    assert_eq!(ich_hcr_el2::EOIcount.get(hcr), 1);
}

#[test]
fn underflow_and_no_pending_conditions() {
    let mut c = enabled(0xF0);
    c.write_hyp(
        SysReg::ICH_HCR_EL2,
        ich_hcr_el2::En.mask() | ich_hcr_el2::UIE.mask() | ich_hcr_el2::NPIE.mask(),
    );
    let both = ich_misr_el2::U.mask() | ich_misr_el2::NP.mask();
    assert_eq!(c.misr(), both);
    c.write_hyp(SysReg::ICH_LR0_EL2, pending(1, 0x40));
    c.write_hyp(SysReg::ICH_LR1_EL2, pending(2, 0x40));
    assert_eq!(c.misr(), 0);
    c.write_hyp(SysReg::ICH_LR1_EL2, 0);
    assert_eq!(c.misr(), ich_misr_el2::U.mask());
}

#[test]
fn traps_and_write_only_registers() {
    let mut c = enabled(0xF0);
    c.write_hyp(
        SysReg::ICH_HCR_EL2,
        ich_hcr_el2::En.mask() | ich_hcr_el2::TALL1.mask(),
    );
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Err(IcvFault::Trapped));
    assert_eq!(c.read_virtual(SysReg::ICC_PMR_EL1), Ok(0xF0));
    c.write_hyp(
        SysReg::ICH_HCR_EL2,
        ich_hcr_el2::En.mask() | ich_hcr_el2::TC.mask(),
    );
    assert_eq!(c.read_virtual(SysReg::ICC_PMR_EL1), Err(IcvFault::Trapped));
    assert!(c.traps_sgi());
    c.write_hyp(SysReg::ICH_HCR_EL2, ich_hcr_el2::En.mask());
    assert_eq!(
        c.read_virtual(SysReg::ICC_EOIR1_EL1),
        Err(IcvFault::Undefined)
    );
    assert_eq!(
        c.write_virtual(SysReg::ICC_IAR1_EL1, 0),
        Err(IcvFault::Undefined)
    );
    assert!(!c.write_hyp(SysReg::ICH_VTR_EL2, 0));
    assert!(!c.write_hyp(SysReg::ICH_LR5_EL2, 0));
}

#[test]
fn binary_points_hold_their_minimum() {
    let mut c = enabled(0xF0);
    c.write_virtual(SysReg::ICC_BPR1_EL1, 0).unwrap();
    assert_eq!(c.read_virtual(SysReg::ICC_BPR1_EL1), Ok(3));
    c.write_virtual(SysReg::ICC_BPR0_EL1, 0).unwrap();
    assert_eq!(c.read_virtual(SysReg::ICC_BPR0_EL1), Ok(2));
    // A coarser binary point: 0xA0 and 0x80 share a group priority.
    c.write_virtual(SysReg::ICC_BPR1_EL1, 6).unwrap();
    c.write_hyp(SysReg::ICH_LR0_EL2, pending(23, 0xA0));
    assert_eq!(c.read_virtual(SysReg::ICC_IAR1_EL1), Ok(23));
    assert_eq!(c.running_priority(), 0x80);
    c.write_hyp(SysReg::ICH_LR1_EL2, pending(7, 0x90));
    assert!(!c.virtual_irq(), "same group priority: no preemption");
}
