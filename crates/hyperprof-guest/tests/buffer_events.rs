//! Buffer management events on the machine, driven the way a kernel does:
//! buffer full, a stage-1 fault, an external abort, and PMBIRQ as a level
//! that follows PMBSR_EL1.S, including when software writes S.

mod common;

use hyperprof_arch::{pmbsr_el1, Cpu, PmbsrEc, SysReg};
use hyperprof_guest::drivers::spe::{IrqOutcome, Mistakes, SpeDriver, SpeSessionConfig};
use hyperprof_guest::host::BUFFER_VA;
use hyperprof_sim::machine::Machine;
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::pe::RunExit;
use hyperprof_sim::workload::by_name;

/// A session sampling every 256 operations over a `pages`-page buffer.
fn session(
    m: &mut Machine,
    pages: u64,
    mapped: impl Fn(u64) -> bool,
    bad_pa: Option<(u64, u64)>,
) -> SpeDriver {
    let cfg = SpeSessionConfig {
        interval: 256,
        jitter: false,
        ..SpeSessionConfig::default()
    };
    common::el2_session(m, pages, mapped, bad_pa, cfg, Mistakes::default())
}

/// Runs kernel work at EL2 until PMBIRQ or `budget` operations; an
/// interrupt is taken (exception entry to EL2, a context synchronization
/// event: from then the unit's PMBPTR_EL1 and PMBSR_EL1 updates are visible).
fn run_until_irq(m: &mut Machine, budget: u64) -> RunExit {
    let mut w = by_name("kernel-pointer-chase", 5).unwrap();
    let mut done = 0;
    let exit = m.run(0, w.as_mut(), budget, &mut done).unwrap();
    if matches!(exit, RunExit::Interrupt(_)) {
        m.pe_mut(0)
            .unwrap()
            .exception_entry(hyperprof_arch::ExceptionLevel::EL2);
    }
    exit
}

fn read(m: &mut Machine, reg: SysReg) -> u64 {
    m.cpu(0).unwrap().read(reg).unwrap()
}

#[test]
fn buffer_full_sets_pmbsr_and_holds_pmbirq_until_serviced() {
    let mut m = common::machine(1);
    let mut d = session(&mut m, 2, |_| true, None);
    let exit = run_until_irq(&mut m, 10_000_000);
    let RunExit::Interrupt(lines) = exit else {
        panic!("the buffer never filled: {exit:?}");
    };
    assert!(lines.pmbirq && !lines.pmuirq);
    let pmbsr = read(&mut m, SysReg::PMBSR_EL1);
    assert!(pmbsr_el1::S.is_set(pmbsr));
    assert_eq!(
        PmbsrEc::from_bits(pmbsr_el1::EC.get(pmbsr)),
        Some(PmbsrEc::BUF)
    );
    assert_eq!(
        pmbsr_el1::BSC.get(pmbsr_el1::MSS.get(pmbsr)),
        pmbsr_el1::BSC_FULL
    );
    // PMBPTR stopped within one maximum record of the limit.
    let ptr = read(&mut m, SysReg::PMBPTR_EL1);
    let limit = BUFFER_VA + 2 * PAGE_SIZE;
    assert!(
        ptr <= limit && ptr + 64 >= limit - 64,
        "PMBPTR {ptr:#x}, limit {limit:#x}"
    );
    // The level stays up while S is 1, however long software waits.
    assert!(m.pe(0).unwrap().irq_lines().pmbirq);
    assert!(matches!(run_until_irq(&mut m, 1000), RunExit::Interrupt(_)));
    // The driver services it: the line drops and sampling resumes.
    let mut c = m.cpu(0).unwrap();
    assert_eq!(d.handle_irq(&mut c).unwrap(), IrqOutcome::BufferFull);
    assert!(!m.pe(0).unwrap().irq_lines().pmbirq);
    assert_eq!(read(&mut m, SysReg::PMBPTR_EL1), BUFFER_VA);
    assert!(d.stats().bytes > 7000);
}

#[test]
fn software_writing_pmbsr_s_asserts_pmbirq_until_cleared() {
    let mut m = common::machine(1);
    let _d = session(&mut m, 4, |_| true, None);
    assert!(!m.pe(0).unwrap().irq_lines().pmbirq);
    let mut c = m.cpu(0).unwrap();
    c.write(SysReg::PMBSR_EL1, pmbsr_el1::S.set(0, 1)).unwrap();
    c.isb();
    assert!(m.pe(0).unwrap().irq_lines().pmbirq);
    // Still asserted after running: a level, not an edge.
    assert!(matches!(run_until_irq(&mut m, 100), RunExit::Interrupt(l) if l.pmbirq));
    let mut c = m.cpu(0).unwrap();
    c.write(SysReg::PMBSR_EL1, 0).unwrap();
    c.isb();
    assert!(!m.pe(0).unwrap().irq_lines().pmbirq);
}

#[test]
fn a_stage1_fault_on_a_record_write_stops_profiling_with_its_fsc() {
    let mut m = common::machine(1);
    // Page 1 of 4 is not mapped: the walk fails at level 3.
    let mut d = session(&mut m, 4, |p| p != 1, None);
    let exit = run_until_irq(&mut m, 10_000_000);
    assert!(
        matches!(exit, RunExit::Interrupt(l) if l.pmbirq),
        "{exit:?}"
    );
    let pmbsr = read(&mut m, SysReg::PMBSR_EL1);
    assert!(pmbsr_el1::S.is_set(pmbsr));
    assert_eq!(
        PmbsrEc::from_bits(pmbsr_el1::EC.get(pmbsr)),
        Some(PmbsrEc::FAULT_S1)
    );
    assert_eq!(
        pmbsr_el1::FSC.get(pmbsr_el1::MSS.get(pmbsr)),
        0x07,
        "translation fault, level 3"
    );
    let ptr = read(&mut m, SysReg::PMBPTR_EL1);
    assert!(
        (BUFFER_VA + PAGE_SIZE - 64..BUFFER_VA + 2 * PAGE_SIZE).contains(&ptr),
        "{ptr:#x}"
    );
    // Profiling stopped: more work samples nothing while S is 1.
    let sampled = m.pe(0).unwrap().spe().unwrap().stats().sampled;
    run_until_irq(&mut m, 100_000);
    assert_eq!(m.pe(0).unwrap().spe().unwrap().stats().sampled, sampled);
    let mut c = m.cpu(0).unwrap();
    let out = d.handle_irq(&mut c).unwrap();
    assert!(
        matches!(out, IrqOutcome::Fault { ec: 0b100100, .. }),
        "{out:?}"
    );
    assert!(!d.running());
}

#[test]
fn a_buffer_outside_ram_is_an_external_abort() {
    let mut m = common::machine(1);
    // Page 0 maps to a physical address with no RAM behind it.
    let mut d = session(&mut m, 2, |_| true, Some((0, 0x10_0000_0000)));
    let exit = run_until_irq(&mut m, 1_000_000);
    assert!(
        matches!(exit, RunExit::Interrupt(l) if l.pmbirq),
        "{exit:?}"
    );
    let pmbsr = read(&mut m, SysReg::PMBSR_EL1);
    assert!(pmbsr_el1::S.is_set(pmbsr));
    assert!(pmbsr_el1::EA.is_set(pmbsr));
    let mut c = m.cpu(0).unwrap();
    assert!(matches!(
        d.handle_irq(&mut c).unwrap(),
        IrqOutcome::Fault {
            external_abort: true,
            ..
        }
    ));
}
