use super::*;
use crate::uapi::{KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST};
use hyperprof_arch::{ich_lr_el2, AccessFault, Cpu, ExceptionLevel, MemoryFault, SysReg};
use hyperprof_sim::gic::VirtualCpuIf;

const RAM: u64 = 0x4000_0000;
const DIST: u64 = 0x0800_0000;
const REDIST: u64 = 0x080A_0000;

/// A CPU interface alone, reached as the hypervisor reaches it.
struct Hw(VirtualCpuIf);

impl Cpu for Hw {
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        self.0.read_hyp(reg).ok_or(AccessFault::Undefined)
    }
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        if self.0.write_hyp(reg, val) {
            Ok(())
        } else {
            Err(AccessFault::Undefined)
        }
    }
    fn isb(&mut self) {}
    fn dsb_nsh(&mut self) {}
    fn psb_csync(&mut self) {}
    fn current_el(&self) -> ExceptionLevel {
        ExceptionLevel::EL2
    }
    fn load(&mut self, va: u64, _: &mut [u8]) -> Result<(), MemoryFault> {
        Err(MemoryFault { va })
    }
}

fn vgic(vcpus: usize) -> VgicV3 {
    let mut g = VgicV3::new(RAM, 128 << 20);
    g.set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, DIST).unwrap();
    g.set_addr(KVM_VGIC_V3_ADDR_TYPE_REDIST, REDIST).unwrap();
    g.init(vcpus).unwrap();
    g
}

fn sgi_frame(i: u64) -> u64 {
    REDIST + i * REDIST_STRIDE + 0x1_0000
}

#[test]
fn impossible_layouts_are_refused_with_kvm_errnos() {
    let mut g = VgicV3::new(RAM, 128 << 20);
    let e = g
        .set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, RAM + 0x1_0000)
        .unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    assert!(e.why.contains("would overlap guest RAM"), "{e}");
    let e = g
        .set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, DIST + 0x100)
        .unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    assert_eq!(g.init(1).unwrap_err().errno, Errno::ENXIO);
    g.set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, DIST).unwrap();
    assert_eq!(
        g.set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, DIST)
            .unwrap_err()
            .errno,
        Errno::EEXIST
    );
    assert_eq!(g.set_addr(7, DIST).unwrap_err().errno, Errno::ENODEV);
    // Redistributors right below RAM: 3 fit, 4 reach into it.
    g.set_addr(KVM_VGIC_V3_ADDR_TYPE_REDIST, RAM - 3 * REDIST_STRIDE)
        .unwrap();
    let e = g.clone().init(4).unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    assert!(e.why.contains("4 redistributors"), "{e}");
    assert_eq!(
        g.clone().init(MAX_VCPUS + 1).unwrap_err().errno,
        Errno::E2BIG
    );
    g.init(3).unwrap();
    assert_eq!(g.init(3).unwrap_err().errno, Errno::EBUSY);
    // The distributor inside the redistributors' range.
    let mut g = VgicV3::new(RAM, 128 << 20);
    g.set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, REDIST + REDIST_STRIDE)
        .unwrap();
    g.set_addr(KVM_VGIC_V3_ADDR_TYPE_REDIST, REDIST).unwrap();
    assert!(g.clone().init(1).is_ok());
    let e = g.init(2).unwrap_err();
    assert!(e.why.contains("overlaps the redistributors"), "{e}");
}

#[test]
fn identification_registers() {
    let mut g = vgic(2);
    assert_eq!(g.mmio_read(0, DIST + 0x8, 4), 0x4B00_343B, "GICD_IIDR");
    let typer = g.mmio_read(0, DIST + 0x4, 4);
    assert_eq!(typer & 0x1F, 7, "ITLinesNumber: 256 INTIDs");
    assert_eq!(typer >> 19 & 0x1F, 9, "IDbits: 10 bits");
    assert_eq!(g.mmio_read(0, DIST + 0xFFE8, 4), 0x3B);
    let ctlr = g.mmio_read(0, DIST, 4);
    assert_eq!(
        ctlr,
        1 << 4 | 1 << 6,
        "ARE and DS, nothing enabled, RWP clear"
    );
    // GICR_TYPER: affinity, processor number, Last on the last one.
    let t0 = g.mmio_read(0, REDIST + 0x8, 8);
    let t1 = g.mmio_read(0, REDIST + REDIST_STRIDE + 0x8, 8);
    assert_eq!((t0 >> 32, t0 >> 8 & 0xFFFF, t0 >> 4 & 1), (0, 0, 0));
    assert_eq!((t1 >> 32, t1 >> 8 & 0xFFFF, t1 >> 4 & 1), (1, 1, 1));
    assert_eq!(g.mmio_read(0, REDIST + REDIST_STRIDE + 0xC, 4), 1);
    // Past the last redistributor: not the vGIC's.
    assert!(!g.claims(REDIST + 2 * REDIST_STRIDE));
    assert!(g.claims(REDIST + 2 * REDIST_STRIDE - 4));
}

#[test]
fn waker_wakes_at_once() {
    let mut g = vgic(1);
    assert_eq!(g.mmio_read(0, REDIST + 0x14, 4), 0b110);
    g.mmio_write(0, REDIST + 0x14, 4, 0);
    assert_eq!(g.mmio_read(0, REDIST + 0x14, 4), 0);
}

#[test]
fn ppi_enable_pending_priority_and_config() {
    let mut g = vgic(2);
    let sgi = sgi_frame(1);
    g.mmio_write(1, sgi + 0x100, 4, 1 << 23);
    assert_eq!(g.mmio_read(1, sgi + 0x100, 4), 1 << 23);
    assert_eq!(g.mmio_read(1, sgi + 0x180, 4), 1 << 23);
    // The other redistributor is untouched.
    assert_eq!(g.mmio_read(0, sgi_frame(0) + 0x100, 4), 0);
    g.mmio_write(1, sgi + 0x180, 4, 1 << 23);
    assert_eq!(g.mmio_read(1, sgi + 0x100, 4), 0);
    // Priorities keep 5 bits; byte accesses reach one interrupt.
    g.mmio_write(1, sgi + 0x400 + 23, 1, 0xA7);
    assert_eq!(g.mmio_read(1, sgi + 0x400 + 20, 4), 0xA0 << 24);
    // SGIs are edge and stay so; PPIs reset to level.
    assert_eq!(g.mmio_read(1, sgi + 0xC00, 4), 0xAAAA_AAAA);
    g.mmio_write(1, sgi + 0xC00, 4, 0);
    assert_eq!(g.mmio_read(1, sgi + 0xC00, 4), 0xAAAA_AAAA);
    assert_eq!(g.mmio_read(1, sgi + 0xC04, 4), 0);
    // ISPENDR / ICPENDR: a latch; a level line stays pending.
    g.mmio_write(1, sgi + 0x200, 4, 1 << 5);
    assert_eq!(g.mmio_read(1, sgi + 0x200, 4), 1 << 5);
    g.mmio_write(1, sgi + 0x280, 4, 1 << 5);
    assert_eq!(g.mmio_read(1, sgi + 0x200, 4), 0);
    g.set_line_level(1, 21, true);
    assert_eq!(g.mmio_read(1, sgi + 0x280, 4), 1 << 21);
    g.mmio_write(1, sgi + 0x280, 4, 1 << 21);
    assert_eq!(
        g.mmio_read(1, sgi + 0x200, 4),
        1 << 21,
        "the line is still high"
    );
    // Groups reset to 1.
    assert_eq!(g.mmio_read(1, sgi + 0x80, 4), 0xFFFF_FFFF);
}

#[test]
fn distributor_banks_nothing_below_32_and_routes_spis() {
    let mut g = vgic(2);
    g.mmio_write(0, DIST + 0x100, 4, 0xFFFF_FFFF);
    assert_eq!(g.mmio_read(0, DIST + 0x100, 4), 0, "RAZ/WI with ARE");
    g.mmio_write(0, DIST + 0x104, 4, 1 << 1);
    assert_eq!(g.irq(0, 33).map(|i| i.enabled), Some(true));
    g.mmio_write(0, DIST + 0x6000 + 8 * 33, 8, 1 | 1 << 31);
    assert_eq!(
        g.mmio_read(0, DIST + 0x6000 + 8 * 33, 8),
        1,
        "IRM is RAZ/WI"
    );
    g.mmio_write(0, DIST, 4, 0b10);
    g.mmio_write(0, DIST + 0x204, 4, 1 << 1);
    assert!(g.deliverable(0).is_empty());
    assert_eq!(g.deliverable(1), vec![33]);
}

#[test]
fn flush_and_sync_round_trip_with_a_level_line() {
    let mut g = vgic(1);
    g.mmio_write(0, DIST, 4, 0b10);
    g.mmio_write(0, sgi_frame(0) + 0x100, 4, 1 << 23);
    g.mmio_write(0, sgi_frame(0) + 0x400 + 20, 4, 0xA0 << 24);
    g.set_sources(0, Some(23), Some(21));
    let mut hw = Hw(VirtualCpuIf::new());
    hw.0.write_hyp(SysReg::ICH_VMCR_EL2, 0xF0 << 24 | 0b10 | 3 << 18 | 2 << 21);
    g.flush(0, &mut hw, &[(23, true), (21, true)]).unwrap();
    // 21 is not enabled: only 23, pending, with EOI.
    let lr = hw.0.lr(0).unwrap();
    assert_eq!(ich_lr_el2::vINTID.get(lr), 23);
    assert_eq!(ich_lr_el2::State.get(lr), ich_lr_el2::PENDING);
    assert!(ich_lr_el2::EOI.is_set(lr));
    assert_eq!(ich_lr_el2::Priority.get(lr), 0xA0);
    assert!(hw.0.virtual_irq());
    // The guest acknowledges and ends it.
    assert_eq!(hw.0.read_virtual(SysReg::ICC_IAR1_EL1), Ok(23));
    hw.0.write_virtual(SysReg::ICC_EOIR1_EL1, 23).unwrap();
    assert!(hw.0.maintenance());
    g.sync(0, &mut hw).unwrap();
    assert!(!hw.0.maintenance());
    assert_eq!(hw.0.lr(0), Some(0));
    let s = g.stats(0).unwrap();
    assert_eq!((s.acked_pmu, s.lr_writes, s.lr_reads), (1, 2, 1));
    // Still high: pending again at the next entry; low: nothing to do.
    g.flush(0, &mut hw, &[(23, true)]).unwrap();
    assert_eq!(
        ich_lr_el2::State.get(hw.0.lr(0).unwrap()),
        ich_lr_el2::PENDING
    );
    g.sync(0, &mut hw).unwrap();
    g.flush(0, &mut hw, &[(23, false)]).unwrap();
    assert_eq!(hw.0.lr(0), Some(0));
    assert_eq!(hw.0.read_hyp(SysReg::ICH_HCR_EL2), Some(0));
}

#[test]
fn an_active_level_interrupt_is_not_made_pending_too() {
    let mut g = vgic(1);
    g.mmio_write(0, DIST, 4, 0b10);
    g.mmio_write(0, sgi_frame(0) + 0x100, 4, 1 << 21);
    let mut hw = Hw(VirtualCpuIf::new());
    hw.0.write_hyp(SysReg::ICH_VMCR_EL2, 0xF0 << 24 | 0b10);
    g.flush(0, &mut hw, &[(21, true)]).unwrap();
    assert_eq!(hw.0.read_virtual(SysReg::ICC_IAR1_EL1), Ok(21));
    // An exit while the handler runs (a trapped access).
    g.sync(0, &mut hw).unwrap();
    assert!(g.irq(0, 21).unwrap().active);
    g.flush(0, &mut hw, &[(21, true)]).unwrap();
    assert_eq!(
        ich_lr_el2::State.get(hw.0.lr(0).unwrap()),
        ich_lr_el2::ACTIVE
    );
}

#[test]
fn more_interrupts_than_list_registers_ask_for_underflow() {
    let mut g = vgic(1);
    g.mmio_write(0, DIST, 4, 0b10);
    g.mmio_write(0, sgi_frame(0) + 0x100, 4, 0x3F);
    g.mmio_write(0, sgi_frame(0) + 0x200, 4, 0x3F);
    let mut hw = Hw(VirtualCpuIf::new());
    g.flush(0, &mut hw, &[]).unwrap();
    let hcr = hw.0.read_hyp(SysReg::ICH_HCR_EL2).unwrap();
    assert_eq!(hcr & 0b11, 0b11, "En and UIE");
    assert_eq!(g.stats(0).unwrap().overflows, 1);
    let ids: Vec<u64> = (0..4)
        .map(|i| ich_lr_el2::vINTID.get(hw.0.lr(i).unwrap()))
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

#[test]
fn sgis_reach_their_targets() {
    let mut g = vgic(18);
    // TargetList bits 1 and 3 in cluster Aff1 = 0: vCPUs 1 and 3.
    let reached = g.dispatch_sgi(0, 5 << 24 | 0b1010, true);
    assert_eq!(reached, vec![1, 3]);
    assert!(g.irq(1, 5).unwrap().pending_latch);
    // Aff1 = 1: vCPUs 16 and 17 are Aff0 0 and 1 there.
    assert_eq!(g.dispatch_sgi(0, 1 << 16 | 6 << 24 | 0b10, true), vec![17]);
    // IRM: everyone but the sender.
    assert_eq!(g.dispatch_sgi(2, 1 << 40 | 7 << 24, true).len(), 17);
    assert!(!g.irq(2, 7).unwrap().pending_latch);
    // A Group 0 SGI is not generated by ICC_SGI1R_EL1.
    g.mmio_write(4, sgi_frame(4) + 0x80, 4, !(1 << 9));
    assert!(!g.dispatch_sgi(0, 9 << 24 | 1 << 4, true).contains(&4));
    assert_eq!(g.dispatch_sgi(0, 9 << 24 | 1 << 4, false), vec![4]);
    assert_eq!(g.stats(0).unwrap().sgi_traps, 4);
}
