//! The exception model: EL0 -> EL1 round trips through VBAR_EL1, the
//! syndromes of synchronous exceptions taken to EL1, interrupts, ERET, and
//! the exits to EL2 with their ESR_EL2/FAR/HPFAR.

mod common;

use common::FlatBus;
use hyperprof_a64::cpu::{regs, sctlr};
use hyperprof_a64::{
    Access, Bus, Cpu, El2Exit, Exit, Fetched, MemFault, SysReg, SysRegRead, SysRegWrite,
};

const CODE: u64 = 0x1000;
const VBAR: u64 = 0x8000;
const DATA: u64 = 0x4000;
const MMIO: u64 = 0x0900_0000;
const PMCR_EL0: SysReg = SysReg::new(3, 3, 9, 12, 0);

/// FlatBus plus an MMIO window that faults at stage 2 and a trapped PMCR_EL0.
struct HypBus {
    mem: FlatBus,
}

impl Bus for HypBus {
    fn fetch(&mut self, va: u64, a: Access) -> Result<Fetched, MemFault> {
        if va & !0xfff == MMIO {
            return Err(MemFault::Stage2 {
                fsc: 0b000111,
                ipa: va,
                s1ptw: false,
            });
        }
        self.mem.fetch(va, a)
    }
    fn read(&mut self, va: u64, size: u8, a: Access) -> Result<u64, MemFault> {
        if va & !0xfff == MMIO {
            return Err(MemFault::Stage2 {
                fsc: 0b000111,
                ipa: va,
                s1ptw: false,
            });
        }
        self.mem.read(va, size, a)
    }
    fn write(&mut self, va: u64, size: u8, v: u64, a: Access) -> Result<u64, MemFault> {
        if va & !0xfff == MMIO {
            return Err(MemFault::Stage2 {
                fsc: 0b000111,
                ipa: va,
                s1ptw: false,
            });
        }
        self.mem.write(va, size, v, a)
    }
    fn sysreg_read(&mut self, reg: SysReg, el: u8) -> SysRegRead {
        if reg == PMCR_EL0 {
            SysRegRead::TrapToEl2
        } else {
            self.mem.sysreg_read(reg, el)
        }
    }
    fn sysreg_write(&mut self, reg: SysReg, v: u64, el: u8) -> SysRegWrite {
        if reg == PMCR_EL0 {
            SysRegWrite::TrapToEl2
        } else {
            self.mem.sysreg_write(reg, v, el)
        }
    }
}

/// A machine with `code` at CODE, VBAR_EL1 = VBAR whose four "lower EL,
/// synchronous" etc. slots hold `handler`, a data page, at the given EL.
fn machine(code: &[u32], handler: &[u32], el: u8) -> (Cpu, HypBus) {
    let mut mem = FlatBus::new();
    mem.map(CODE, 0x1000);
    mem.map(VBAR, 0x800);
    mem.map(DATA, 0x1000);
    for (i, w) in code.iter().enumerate() {
        mem.write_u32(CODE + 4 * i as u64, *w);
    }
    for slot in (0..0x800).step_by(0x80) {
        for (i, w) in handler.iter().enumerate() {
            mem.write_u32(VBAR + slot + 4 * i as u64, *w);
        }
    }
    let mut cpu = Cpu::new();
    cpu.write_sysreg(regs::VBAR_EL1, VBAR);
    cpu.set_pstate_from_spsr(if el == 0 { 0 } else { 0b0101 });
    cpu.set_pc(CODE);
    (cpu, HypBus { mem })
}

const NOP: u32 = 0xd503_201f;
const ERET: u32 = 0xd69f_03e0;
const MRS_X3_ESR_EL1: u32 = 0xd538_5203;
const MOVZ_X2_3: u32 = 0xd280_0062;
const SVC_5: u32 = 0xd400_00a1;
const UDF: u32 = 0;
const FADD: u32 = 0x1e62_2820;

fn esr_el1(cpu: &Cpu) -> u64 {
    cpu.read_sysreg(regs::ESR_EL1).unwrap_or(u64::MAX)
}

#[test]
fn svc_round_trip_el0_to_el1_and_eret() {
    let (mut cpu, mut bus) = machine(&[SVC_5, MOVZ_X2_3, NOP], &[MRS_X3_ESR_EL1, ERET], 0);
    cpu.set_nzcv(0x6000_0000);
    assert_eq!(cpu.step(&mut bus), None);
    assert_eq!(cpu.el(), 1);
    assert_eq!(cpu.pc(), VBAR + 0x400, "lower-EL synchronous vector");
    assert_eq!(cpu.pstate().daif, 0xf);
    assert!(cpu.pstate().sp_sel);
    assert_eq!(
        cpu.read_sysreg(regs::ELR_EL1),
        Some(CODE + 4),
        "SVC returns to the next instruction"
    );
    assert_eq!(
        cpu.read_sysreg(regs::SPSR_EL1),
        Some(0x6000_0000),
        "EL0t, flags kept, DAIF clear"
    );
    assert_eq!(esr_el1(&cpu), 0x5600_0005, "EC 0x15, IL, imm16 5");
    assert_eq!(cpu.run(&mut bus, 3), Exit::Budget);
    assert_eq!(cpu.x(3), 0x5600_0005);
    assert_eq!(cpu.el(), 0);
    assert_eq!(cpu.pstate().daif, 0);
    assert_eq!(cpu.nzcv(), 0x6000_0000);
    assert_eq!(cpu.x(2), 3, "resumed after the SVC");
    assert_eq!(cpu.retired(), 4);
}

#[test]
fn vector_offsets_by_source_el_and_sp() {
    // EL1h: current EL with SP_ELx, offset 0x200.
    let (mut cpu, mut bus) = machine(&[SVC_5], &[NOP], 1);
    cpu.step(&mut bus);
    assert_eq!(cpu.pc(), VBAR + 0x200);
    assert_eq!(
        cpu.read_sysreg(regs::SPSR_EL1),
        Some(0x5),
        "EL1h, DAIF clear"
    );
    // EL1t: current EL with SP_EL0, offset 0.
    let (mut cpu, mut bus) = machine(&[SVC_5], &[NOP], 1);
    cpu.set_pstate_from_spsr(0b0100);
    cpu.step(&mut bus);
    assert_eq!(cpu.pc(), VBAR);
    // IRQ from EL0: 0x400 + 0x80, not taken while masked.
    let (mut cpu, mut bus) = machine(&[NOP, NOP, NOP], &[NOP], 0);
    cpu.set_pstate_from_spsr(0x80);
    cpu.set_irq(true);
    assert_eq!(cpu.run(&mut bus, 2), Exit::Budget);
    assert_eq!(cpu.pc(), CODE + 8, "masked IRQ is not taken");
    cpu.set_pstate_from_spsr(0);
    cpu.run(&mut bus, 1);
    assert_eq!(cpu.read_sysreg(regs::ELR_EL1), Some(CODE + 8));
    assert_eq!(
        cpu.pc(),
        VBAR + 0x480,
        "IRQ vector (taking it used the budget of 1)"
    );
    cpu.set_irq(false);
    cpu.run(&mut bus, 1);
    assert_eq!(cpu.pc(), VBAR + 0x484);
    // FIQ from EL1h: 0x200 + 0x100.
    let (mut cpu, mut bus) = machine(&[NOP], &[NOP], 1);
    cpu.set_pstate_from_spsr(0b0101);
    cpu.set_fiq(true);
    cpu.step(&mut bus);
    assert_eq!(cpu.pc(), VBAR + 0x300);
}

#[test]
fn undefined_instruction() {
    let (mut cpu, mut bus) = machine(&[NOP, UDF], &[NOP], 0);
    cpu.run(&mut bus, 1);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu), 0x0200_0000, "EC 0x00 with IL");
    assert_eq!(
        cpu.read_sysreg(regs::ELR_EL1),
        Some(CODE + 4),
        "returns to the UNDEFINED instruction"
    );
    assert_eq!(cpu.retired(), 1, "the UNDEFINED instruction did not retire");
}

#[test]
fn fp_simd_trapped_by_cpacr_else_undefined() {
    let (mut cpu, mut bus) = machine(&[FADD], &[NOP], 0);
    cpu.step(&mut bus);
    assert_eq!(
        esr_el1(&cpu),
        (0x07 << 26) | (1 << 25) | (1 << 24) | (0xe << 20)
    );
    // FPEN = 0b01 traps EL0 only.
    let (mut cpu, mut bus) = machine(&[FADD], &[NOP], 1);
    cpu.write_sysreg(regs::CPACR_EL1, 1 << 20);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) >> 26, 0x00, "not trapped at EL1: UNDEFINED");
    // FPEN = 0b11 and CPTR_EL2.TFP: to EL2.
    let (mut cpu, mut bus) = machine(&[FADD], &[NOP], 0);
    cpu.write_sysreg(regs::CPACR_EL1, 3 << 20);
    cpu.el2.tfp = true;
    match cpu.run(&mut bus, 1) {
        Exit::El2(e) => assert_eq!(e.ec(), 0x07),
        other => panic!("expected an EL2 exit, got {other:?}"),
    }
}

#[test]
fn pc_and_sp_alignment_faults() {
    // BR x1 with x1 = CODE + 0x102.
    let (mut cpu, mut bus) = machine(&[0xd61f_0020], &[NOP], 0);
    cpu.set_x(1, CODE + 0x102);
    cpu.run(&mut bus, 1);
    assert_eq!(cpu.pc(), CODE + 0x102);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu), (0x22 << 26) | (1 << 25));
    assert_eq!(cpu.read_sysreg(regs::FAR_EL1), Some(CODE + 0x102));
    assert_eq!(cpu.read_sysreg(regs::ELR_EL1), Some(CODE + 0x102));
    // LDR x0, [sp] at EL1 with SCTLR_EL1.SA and SP 8 mod 16.
    let (mut cpu, mut bus) = machine(&[0xf940_03e0], &[NOP], 1);
    let s = cpu.read_sysreg(regs::SCTLR_EL1).unwrap_or(0) | sctlr::SA;
    cpu.write_sysreg(regs::SCTLR_EL1, s);
    cpu.set_sp(DATA + 8);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu), (0x26 << 26) | (1 << 25));
    // Without SA the access completes.
    let (mut cpu, mut bus) = machine(&[0xf940_03e0], &[NOP], 1);
    let s = cpu.read_sysreg(regs::SCTLR_EL1).unwrap_or(0) & !sctlr::SA;
    cpu.write_sysreg(regs::SCTLR_EL1, s);
    cpu.set_sp(DATA + 8);
    cpu.step(&mut bus);
    assert_eq!(cpu.pc(), CODE + 4);
}

#[test]
fn data_abort_and_alignment_syndromes() {
    // LDR x0, [x1] at EL0 on an unmapped page.
    let (mut cpu, mut bus) = machine(&[0xf940_0020], &[NOP], 0);
    cpu.set_x(1, 0x7_0000);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu), (0x24 << 26) | (1 << 25) | 0b000111);
    assert_eq!(cpu.read_sysreg(regs::FAR_EL1), Some(0x7_0000));
    // STR w3, [x1] at EL1: same-EL class, WnR.
    let (mut cpu, mut bus) = machine(&[0xb900_0023], &[NOP], 1);
    cpu.set_x(1, 0x7_0004);
    cpu.step(&mut bus);
    assert_eq!(
        esr_el1(&cpu),
        (0x25 << 26) | (1 << 25) | (1 << 6) | 0b000111
    );
    // SCTLR_EL1.A: unaligned LDR faults with DFSC 0x21.
    let (mut cpu, mut bus) = machine(&[0xf940_0020], &[NOP], 1);
    let s = cpu.read_sysreg(regs::SCTLR_EL1).unwrap_or(0) | sctlr::A;
    cpu.write_sysreg(regs::SCTLR_EL1, s);
    cpu.set_x(1, DATA + 1);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu), (0x25 << 26) | (1 << 25) | 0x21);
    // LDXR on an unaligned address faults even without SCTLR_EL1.A.
    let (mut cpu, mut bus) = machine(&[0xc85f_7c20], &[NOP], 1);
    cpu.set_x(1, DATA + 4);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) & 0x3f, 0x21);
    // LDADD likewise.
    let (mut cpu, mut bus) = machine(&[0xf820_0020], &[NOP], 1);
    cpu.set_x(1, DATA + 2);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) & 0x3f, 0x21);
}

fn el2_exit(cpu: &mut Cpu, bus: &mut HypBus) -> El2Exit {
    match cpu.run(bus, 10) {
        Exit::El2(e) => e,
        other => panic!("expected an EL2 exit, got {other:?}"),
    }
}

#[test]
fn hvc_exits_to_el2_with_syndrome() {
    let (mut cpu, mut bus) = machine(&[0xd400_00e2, MOVZ_X2_3], &[NOP], 1);
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(e.esr, 0x5a00_0007, "EC 0x16, IL, imm16 7");
    assert_eq!(
        cpu.pc(),
        CODE + 4,
        "HVC's preferred return is the next instruction"
    );
    cpu.set_x(0, 0x1234);
    cpu.run(&mut bus, 1);
    assert_eq!(cpu.x(2), 3);
    // HVC at EL0 is UNDEFINED.
    let (mut cpu, mut bus) = machine(&[0xd400_00e2], &[NOP], 0);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) >> 26, 0);
}

#[test]
fn trapped_mrs_exits_with_sys64_iss_and_resumes() {
    let (mut cpu, mut bus) = machine(&[0xd53b_9c05, MOVZ_X2_3], &[NOP], 1);
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(
        e.esr, 0x6230_e4b9,
        "EC 0x18: op0 3, op2 0, op1 3, CRn 9, Rt 5, CRm 12, read"
    );
    assert_eq!(cpu.pc(), CODE, "a trapped access returns to itself");
    cpu.set_x(5, 0x41);
    cpu.skip();
    assert_eq!(cpu.run(&mut bus, 1), Exit::Budget);
    assert_eq!((cpu.x(5), cpu.x(2)), (0x41, 3));
    // MSR PMCR_EL0, x5: the same ISS with direction 0 (write).
    let (mut cpu, mut bus) = machine(&[0xd51b_9c05], &[NOP], 1);
    assert_eq!(el2_exit(&mut cpu, &mut bus).esr, 0x6230_e4b8);
    // At EL0 an EL1-only register is UNDEFINED before any EL2 trap: MRS x0, SCTLR_EL1.
    let (mut cpu, mut bus) = machine(&[0xd538_1000], &[NOP], 0);
    cpu.step(&mut bus);
    assert_eq!((cpu.el(), esr_el1(&cpu) >> 26), (1, 0));
    // DAIF at EL0 traps to EL1 unless SCTLR_EL1.UMA: MRS x0, DAIF.
    let (mut cpu, mut bus) = machine(&[0xd53b_4220], &[NOP], 0);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) >> 26, 0x18);
}

#[test]
fn smc_traps_only_with_tsc() {
    let (mut cpu, mut bus) = machine(&[0xd400_0063], &[NOP], 1); // smc #3
    cpu.el2.tsc = true;
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(e.esr, (0x17 << 26) | (1 << 25) | 3);
    assert_eq!(cpu.pc(), CODE, "a trapped SMC returns to itself");
    let (mut cpu, mut bus) = machine(&[0xd400_0063], &[NOP], 1);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) >> 26, 0, "no EL3: UNDEFINED");
}

#[test]
fn stage2_instruction_abort() {
    // BR x1 into the MMIO window: the fetch faults at stage 2.
    let (mut cpu, mut bus) = machine(&[0xd61f_0020], &[NOP], 1);
    cpu.set_x(1, MMIO + 0x40);
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(e.esr, (0x20 << 26) | (1 << 25) | 0b000111);
    assert_eq!((e.far, e.hpfar), (MMIO + 0x40, (MMIO >> 12) << 4));
    assert_eq!(cpu.pc(), MMIO + 0x40);
}

#[test]
fn sevl_then_wfe_falls_through_once() {
    // sevl ; wfe ; wfe
    let (mut cpu, mut bus) = machine(&[0xd503_20bf, 0xd503_205f, 0xd503_205f, NOP], &[NOP], 1);
    assert_eq!(cpu.run(&mut bus, 10), Exit::Wfe);
    assert_eq!(
        cpu.pc(),
        CODE + 12,
        "the first WFE consumed the event, the second waited"
    );
    // EL0 WFE with SCTLR_EL1.nTWE clear traps to EL1 with EC 0x01, TI = 1.
    let (mut cpu, mut bus) = machine(&[0xd503_205f], &[NOP], 0);
    let s = cpu.read_sysreg(regs::SCTLR_EL1).unwrap_or(0) & !sctlr::NTWE;
    cpu.write_sysreg(regs::SCTLR_EL1, s);
    cpu.step(&mut bus);
    assert_eq!(
        esr_el1(&cpu),
        (0x01 << 26) | (1 << 25) | (1 << 24) | (0xe << 20) | 1
    );
}

#[test]
fn stage2_abort_exits_with_isv_far_and_hpfar() {
    // STR w3, [x1] with x1 in the MMIO window.
    let (mut cpu, mut bus) = machine(&[0xb900_0023], &[NOP], 1);
    cpu.set_x(1, MMIO + 0x10);
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(
        e.esr, 0x9383_0047,
        "EC 0x24, ISV, SAS word, SRT 3, WnR, DFSC translation L3"
    );
    assert_eq!(e.far, MMIO + 0x10);
    assert_eq!(e.hpfar, (MMIO >> 12) << 4);
    // LDP to MMIO: no valid syndrome.
    let (mut cpu, mut bus) = machine(&[0xa940_0c22], &[NOP], 1);
    cpu.set_x(1, MMIO);
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(e.iss() >> 24 & 1, 0, "ISV clear for a pair");
}

#[test]
fn wfi_traps_to_el2_or_exits() {
    let (mut cpu, mut bus) = machine(&[0xd503_207f], &[NOP], 1);
    cpu.el2.twi = true;
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(e.esr, (0x01 << 26) | (1 << 25) | (1 << 24) | (0xe << 20));
    let (mut cpu, mut bus) = machine(&[0xd503_207f, NOP], &[NOP], 1);
    assert_eq!(cpu.run(&mut bus, 10), Exit::Wfi);
    assert_eq!(cpu.pc(), CODE + 4);
    // A pending interrupt (even masked) completes WFI at once.
    let (mut cpu, mut bus) = machine(&[0xd503_207f, NOP], &[NOP], 1);
    cpu.set_irq(true);
    assert_eq!(cpu.run(&mut bus, 2), Exit::Budget);
}

#[test]
fn illegal_exception_return_sets_il() {
    // SPSR_EL1 names EL2h: ERET is illegal, the next instruction takes EC 0x0E.
    let (mut cpu, mut bus) = machine(&[ERET], &[NOP], 1);
    cpu.write_sysreg(regs::SPSR_EL1, 0b1001);
    cpu.write_sysreg(regs::ELR_EL1, CODE + 0x40);
    cpu.step(&mut bus);
    assert!(cpu.pstate().il);
    assert_eq!(cpu.el(), 1);
    cpu.step(&mut bus);
    assert_eq!(esr_el1(&cpu) >> 26, 0x0e);
    assert!(!cpu.pstate().il);
}

#[test]
fn inject_undef_from_hypervisor() {
    let (mut cpu, mut bus) = machine(&[0xd53b_9c05], &[NOP], 0);
    let e = el2_exit(&mut cpu, &mut bus);
    assert_eq!(e.ec(), 0x18);
    cpu.inject_undef();
    assert_eq!(cpu.el(), 1);
    assert_eq!(cpu.pc(), VBAR + 0x400);
    assert_eq!(cpu.read_sysreg(regs::ELR_EL1), Some(CODE));
}

#[test]
fn exception_loop_still_ends_on_budget() {
    // VBAR_EL1 points at unmapped memory: every vector fetch aborts again.
    let (mut cpu, mut bus) = machine(&[UDF], &[NOP], 1);
    cpu.write_sysreg(regs::VBAR_EL1, 0x40_0000);
    assert_eq!(cpu.run(&mut bus, 1000), Exit::Budget);
    assert_eq!(cpu.retired(), 0);
    assert_eq!(cpu.exceptions_taken(), 1000);
    assert_eq!(
        esr_el1(&cpu) >> 26,
        0x21,
        "instruction abort at the vector, same EL"
    );
}
