//! The vGIC under machine code: a guest programs the distributor and its
//! redistributor through MMIO the hypervisor emulates (no VMM exit), sends
//! itself an SGI with ICC_SGI1R_EL1 (trapped under HCR_EL2.IMO), takes it
//! through its IRQ vector from a list register, acknowledges and ends it,
//! and finds nothing else pending.

use hyperprof_arch::SysReg;
use hyperprof_kvm::uapi::{
    UserPtr, VcpuFeatures, KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR,
    KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{CodeContext, PeConfig};
use hyperprof_sim::pmu::PmuConfig;

const DIST: u64 = 0x0800_0000;
const REDIST: u64 = 0x080A_0000;
const CODE: u64 = GUEST_RAM_IPA + 0x8_0000;
const VECTORS: u64 = GUEST_RAM_IPA + 0x9_0000;

fn kvm(nvhe: bool) -> Kvm {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: hyperprof_arch::PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: None,
        fgt: true,
        uarch: Default::default(),
    };
    let m = Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 256 << 20,
    })
    .unwrap();
    if nvhe {
        Kvm::new_nvhe(m)
    } else {
        Kvm::new(m)
    }
}

fn sysreg_bits(reg: SysReg) -> u32 {
    let e = reg.encoding();
    u32::from(e.op0() & 1) << 19
        | u32::from(e.op1()) << 16
        | u32::from(e.crn()) << 12
        | u32::from(e.crm()) << 8
        | u32::from(e.op2()) << 5
}
fn mrs(rt: u32, reg: SysReg) -> u32 {
    0xD530_0000 | sysreg_bits(reg) | rt
}
fn msr(reg: SysReg, rt: u32) -> u32 {
    0xD510_0000 | sysreg_bits(reg) | rt
}
/// MOVZ Xd, #imm, LSL #(16 * hw).
fn movz(rd: u32, imm: u32, hw: u32) -> u32 {
    0xD280_0000 | hw << 21 | imm << 5 | rd
}
/// MOVK Xd, #imm, LSL #(16 * hw).
fn movk(rd: u32, imm: u32, hw: u32) -> u32 {
    0xF280_0000 | hw << 21 | imm << 5 | rd
}
/// STR Wt, [Xn, #off] / LDR Wt, [Xn, #off].
fn str_w(rt: u32, rn: u32, off: u32) -> u32 {
    0xB900_0000 | (off / 4) << 10 | rn << 5 | rt
}
fn ldr_w(rt: u32, rn: u32, off: u32) -> u32 {
    0xB940_0000 | (off / 4) << 10 | rn << 5 | rt
}
const VBAR_EL1_X4: u32 = 0xD518_C004;
const DAIFCLR_I: u32 = 0xD503_42FF;
const ISB: u32 = 0xD503_3FDF;
const WFI: u32 = 0xD503_207F;
const HVC0: u32 = 0xD400_0002;
const B_BACK: u32 = 0x17FF_FFFF;

fn program() -> Vec<u32> {
    vec![
        movz(0, (DIST >> 16) as u32, 1),
        movz(1, 2, 0),
        str_w(1, 0, 0x0), // GICD_CTLR.EnableGrp1
        ldr_w(8, 0, 0x8), // GICD_IIDR
        movz(3, (REDIST >> 16) as u32, 1),
        str_w(31, 3, 0x14), // GICR_WAKER = 0
        ldr_w(9, 3, 0x14),
        movz(2, ((REDIST + 0x1_0000) >> 16) as u32, 1),
        movz(1, 1 << 3, 0),
        str_w(1, 2, 0x100), // GICR_ISENABLER0: SGI 3
        movz(1, 0xF0, 0),
        msr(SysReg::ICC_PMR_EL1, 1),
        movz(1, 1, 0),
        msr(SysReg::ICC_IGRPEN1_EL1, 1),
        movz(4, (VECTORS >> 16) as u32, 1),
        VBAR_EL1_X4,
        ISB,
        movz(5, 0x0300, 1),
        movk(5, 1, 0),
        msr(SysReg::ICC_SGI1R_EL1, 5), // SGI 3 to Aff0 0: this vCPU
        DAIFCLR_I,
        WFI,
        B_BACK,
    ]
}

fn vectors_irq() -> Vec<u32> {
    vec![
        mrs(6, SysReg::ICC_IAR1_EL1),
        msr(SysReg::ICC_EOIR1_EL1, 6),
        mrs(7, SysReg::ICC_IAR1_EL1),
        HVC0,
    ]
}

fn write_code(kvm: &mut Kvm, vm: usize, at: u64, insns: &[u32]) {
    let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_le_bytes()).collect();
    kvm.write_guest(vm, at, &bytes).unwrap();
}

fn vgic_vm(kvm: &mut Kvm, vcpus: usize) -> (usize, Vec<usize>) {
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: 64 << 20,
        })
        .unwrap();
    let ids: Vec<usize> = (0..vcpus)
        .map(|_| kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap())
        .collect();
    kvm.create_vgic_v3(vm).unwrap();
    for (kind, base) in [
        (KVM_VGIC_V3_ADDR_TYPE_DIST, DIST),
        (KVM_VGIC_V3_ADDR_TYPE_REDIST, REDIST),
    ] {
        kvm.set_vgic_attr(vm, KVM_DEV_ARM_VGIC_GRP_ADDR, kind, UserPtr::Value(base))
            .unwrap();
    }
    kvm.set_vgic_attr(
        vm,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        UserPtr::Value(0),
    )
    .unwrap();
    (vm, ids)
}

#[test]
fn a_self_sgi_is_delivered_through_a_list_register() {
    for nvhe in [false, true] {
        let mut kvm = kvm(nvhe);
        let (vm, vcpus) = vgic_vm(&mut kvm, 1);
        write_code(&mut kvm, vm, CODE, &program());
        write_code(&mut kvm, vm, VECTORS + 0x280, &vectors_irq());
        let mut ctx = CodeContext::new(CODE, 0);
        kvm.load(vcpus[0], 0).unwrap();
        let exit = kvm.run_code(vcpus[0], &mut ctx, 10_000);
        kvm.put(vcpus[0]).unwrap();
        assert_eq!(exit, Exit::Hypercall { imm: 0 }, "nvhe={nvhe}");
        assert_eq!(ctx.cpu.x(8), 0x4B00_343B, "GICD_IIDR");
        assert_eq!(ctx.cpu.x(9), 0, "GICR_WAKER awake");
        assert_eq!(ctx.cpu.x(6), 3, "ICC_IAR1_EL1: the SGI");
        assert_eq!(ctx.cpu.x(7), 1023, "nothing else pending");
        let s = kvm.vcpu_stats(vcpus[0]).unwrap();
        assert_eq!(s.mmio_exits, 0, "GIC MMIO never reaches the VMM");
        let g = kvm.vgic_stats(vcpus[0]).unwrap();
        assert_eq!(g.mmio, 5);
        assert_eq!(g.sgi_traps, 1);
        assert_eq!(g.acked_sgi, 1);
        assert_eq!(g.maintenance_exits, 0, "an edge SGI needs no maintenance");
        // Entries: KVM_RUN's, one after each of the five GIC accesses (a
        // full exit each) and one after the SGI's trap. The SGI went into
        // LR0 at the last and was cleared at the exit of the hypercall;
        // ICH_ELRSR_EL2 showed the LR empty (an edge interrupt, ended), so
        // it was not read.
        assert_eq!((g.flushes, g.flushes_with_lrs), (7, 1), "{g:?}");
        assert_eq!((g.lr_writes, g.lr_reads), (2, 0), "{g:?}");
        assert!(!kvm.vgic_vcpu_pending(vcpus[0]));
    }
}

#[test]
fn vgic_errors_are_kvms() {
    use hyperprof_kvm::uapi::Errno;
    let mut kvm = kvm(false);
    let (vm, _) = vgic_vm(&mut kvm, 1);
    assert_eq!(kvm.create_vgic_v3(vm), Err(Errno::EEXIST));
    assert_eq!(
        kvm.create_vcpu(vm, VcpuFeatures::default()),
        Err(Errno::EBUSY),
        "no vCPU after the vGIC's init"
    );
    let vm2 = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: 64 << 20,
        })
        .unwrap();
    let e = kvm
        .set_vgic_attr(vm2, KVM_DEV_ARM_VGIC_GRP_ADDR, 2, UserPtr::Value(DIST))
        .unwrap_err();
    assert_eq!(e.errno, Errno::ENODEV);
    kvm.create_vgic_v3(vm2).unwrap();
    let e = kvm
        .set_vgic_attr(
            vm2,
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            KVM_VGIC_V3_ADDR_TYPE_REDIST,
            UserPtr::Bad,
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::EFAULT);
    let e = kvm
        .set_vgic_attr(
            vm2,
            KVM_DEV_ARM_VGIC_GRP_CTRL,
            KVM_DEV_ARM_VGIC_CTRL_INIT,
            UserPtr::Value(0),
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::ENXIO, "bases not set");
}
