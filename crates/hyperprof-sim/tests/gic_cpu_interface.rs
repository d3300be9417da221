//! The GIC virtual CPU interface under real code: a hypervisor (this test,
//! at EL2) puts a virtual interrupt in a list register, the code at EL1
//! takes it as an IRQ through its vectors, acknowledges it with
//! ICC_IAR1_EL1 (ICV_IAR1_EL1 under HCR_EL2.IMO) and ends it with
//! ICC_EOIR1_EL1, whose deactivation of an LR with the EOI bit raises the
//! maintenance interrupt: the run returns to EL2.

use hyperprof_arch::{
    hcr_el2, ich_hcr_el2, ich_lr_el2, ich_vmcr_el2, Cpu, ExceptionLevel, PmuVer, SysReg,
};
use hyperprof_sim::gic::VMCR_RESET;
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{CodeContext, CodeStop, PeConfig};
use hyperprof_sim::pmu::PmuConfig;

const RAM: u64 = 0x4000_0000;
const CODE: u64 = RAM + 0x8_0000;
const VECTORS: u64 = RAM + 0x9_0000;

fn machine() -> Machine {
    Machine::new(&MachineConfig {
        pes: vec![PeConfig {
            pmu: PmuConfig {
                counters: 6,
                version: PmuVer::V3p5,
                hpmn0: true,
                el2_implemented: true,
            },
            spe: None,
            fgt: true,
            uarch: Default::default(),
        }],
        ram_base: RAM,
        ram_size: 16 << 20,
    })
    .unwrap()
}

/// MRS Xt, <reg> / MSR <reg>, Xt.
fn mrs(reg: SysReg, rt: u32) -> u32 {
    0xD530_0000 | sysreg_bits(reg) | rt
}
fn msr(reg: SysReg, rt: u32) -> u32 {
    0xD510_0000 | sysreg_bits(reg) | rt
}
fn sysreg_bits(reg: SysReg) -> u32 {
    let e = reg.encoding();
    u32::from(e.op0() & 1) << 19
        | u32::from(e.op1()) << 16
        | u32::from(e.crn()) << 12
        | u32::from(e.crm()) << 8
        | u32::from(e.op2()) << 5
}

const VBAR_EL1: u32 = 0xD518_C000; // msr vbar_el1, x0
const DAIFCLR_I: u32 = 0xD503_42FF; // msr daifclr, #2
const WFI: u32 = 0xD503_207F;
const HVC0: u32 = 0xD400_0002;
const B_BACK: u32 = 0x17FF_FFFF; // b .-4

fn write_code(m: &mut Machine, at: u64, insns: &[u32]) {
    let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_le_bytes()).collect();
    m.mem.write(at, &bytes).unwrap();
}

fn pending_lr(id: u64, priority: u64, eoi: bool) -> u64 {
    let v = ich_lr_el2::vINTID.set(0, id);
    let v = ich_lr_el2::Priority.set(v, priority);
    let v = ich_lr_el2::Group.set(v, 1);
    let v = ich_lr_el2::EOI.set(v, u64::from(eoi));
    ich_lr_el2::State.set(v, ich_lr_el2::PENDING)
}

/// Sets up the interface (enabled, Group 1 on, mask 0xF0), LR0 = `lr0`,
/// HCR_EL2.IMO, and code that unmasks IRQs and waits, whose IRQ vector
/// acknowledges into x1, reads the running priority into x2, ends the
/// interrupt and makes a hypervisor call.
fn setup(lr0: u64) -> (Machine, CodeContext) {
    let mut m = machine();
    write_code(
        &mut m,
        CODE,
        &[
            0xD2A0_0000 | ((VECTORS >> 16) as u32) << 5, // movz x0, #VECTORS >> 16, lsl 16
            VBAR_EL1,
            DAIFCLR_I,
            WFI,
            B_BACK,
        ],
    );
    write_code(
        &mut m,
        VECTORS + 0x280,
        &[
            mrs(SysReg::ICC_IAR1_EL1, 1),
            mrs(SysReg::ICC_RPR_EL1, 2),
            msr(SysReg::ICC_EOIR1_EL1, 1),
            HVC0,
        ],
    );
    {
        let mut c = m.cpu(0).unwrap();
        c.write(SysReg::HCR_EL2, hcr_el2::IMO.set(0, 1)).unwrap();
        c.write(SysReg::ICH_HCR_EL2, ich_hcr_el2::En.mask())
            .unwrap();
        let vmcr = ich_vmcr_el2::VENG1.set(ich_vmcr_el2::VPMR.set(VMCR_RESET, 0xF0), 1);
        c.write(SysReg::ICH_VMCR_EL2, vmcr).unwrap();
        c.write(SysReg::ICH_LR0_EL2, lr0).unwrap();
    }
    (m, CodeContext::new(CODE, 0))
}

/// Runs the code, and takes the PE back to EL2 (the hypervisor's exit).
fn run(m: &mut Machine, ctx: &mut CodeContext) -> CodeStop {
    let mut done = 0;
    let stop = m.run_code(0, ctx, 10_000, &mut done).unwrap();
    m.pe_mut(0).unwrap().exception_entry(ExceptionLevel::EL2);
    stop
}

#[test]
fn an_lr_with_eoi_is_taken_acknowledged_and_ends_in_a_maintenance_interrupt() {
    let (mut m, mut ctx) = setup(pending_lr(23, 0xA0, true));
    match run(&mut m, &mut ctx) {
        CodeStop::Interrupt(l) => assert!(l.maintenance && !l.pmuirq && !l.pmbirq, "{l:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ctx.cpu.x(1), 23, "ICV_IAR1_EL1");
    assert_eq!(ctx.cpu.x(2), 0xA0, "ICV_RPR_EL1 after the acknowledge");
    let mut c = m.cpu(0).unwrap();
    assert_eq!(c.read(SysReg::ICH_EISR_EL2), Ok(1));
    assert_eq!(c.read(SysReg::ICH_MISR_EL2), Ok(1), "MISR.EOI");
    assert_eq!(
        ich_lr_el2::State.get(c.read(SysReg::ICH_LR0_EL2).unwrap()),
        ich_lr_el2::INVALID
    );
    // The hypervisor empties the LR: the code goes on to its HVC.
    c.write(SysReg::ICH_LR0_EL2, 0).unwrap();
    match run(&mut m, &mut ctx) {
        CodeStop::El2(e) => assert_eq!(e.ec(), 0x16),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_the_eoi_bit_the_interrupt_ends_in_the_guest() {
    let (mut m, mut ctx) = setup(pending_lr(27, 0x80, false));
    match run(&mut m, &mut ctx) {
        CodeStop::El2(e) => assert_eq!(e.ec(), 0x16, "the HVC after the EOI"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ctx.cpu.x(1), 27);
    let mut c = m.cpu(0).unwrap();
    assert_eq!(c.read(SysReg::ICH_ELRSR_EL2), Ok(0b1111));
}

#[test]
fn a_masked_interrupt_is_not_taken_and_the_guest_waits() {
    // Priority 0xF0 does not beat the mask 0xF0.
    let (mut m, mut ctx) = setup(pending_lr(23, 0xF0, true));
    assert_eq!(run(&mut m, &mut ctx), CodeStop::Wfi);
    assert_eq!(ctx.cpu.x(1), 0);
}

#[test]
fn sgi_generation_traps_to_el2_under_imo_and_icc_is_undefined_without() {
    let (mut m, mut ctx) = setup(0);
    write_code(&mut m, CODE, &[msr(SysReg::ICC_SGI1R_EL1, 3)]);
    ctx.cpu.set_x(3, 1 << 24 | 1);
    match run(&mut m, &mut ctx) {
        CodeStop::El2(e) => {
            assert_eq!(e.ec(), 0x18);
            // ISS: op0 3, op2 5, op1 0, CRn 12, Rt 3, CRm 11, write.
            assert_eq!(e.iss(), 3 << 20 | 5 << 17 | 12 << 10 | 3 << 5 | 11 << 1);
        }
        other => panic!("{other:?}"),
    }
    // Without IMO there is no (virtual) CPU interface to reach.
    let (mut m, mut ctx) = setup(0);
    m.cpu(0).unwrap().write(SysReg::HCR_EL2, 0).unwrap();
    write_code(&mut m, CODE, &[mrs(SysReg::ICC_IAR1_EL1, 1), HVC0]);
    // VBAR_EL1 is 0: the UNDEFINED exception goes to 0x200, outside
    // memory, whose fetch aborts to EL2.
    match run(&mut m, &mut ctx) {
        CodeStop::El2(e) => assert_eq!((e.ec(), e.far), (0x20, 0x200)),
        other => panic!("{other:?}"),
    }
    let esr = ctx
        .cpu
        .read_sysreg(hyperprof_a64::cpu::regs::ESR_EL1)
        .unwrap();
    assert_eq!(esr >> 26, 0, "EC 0: unknown reason");
    assert_eq!(ctx.cpu.x(1), 0);
}
