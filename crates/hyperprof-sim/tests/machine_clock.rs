//! The machine's one clock: a PE's executed cycles advance every PE's
//! system counter, skipped idle time advances them all without any PMU
//! counting it, and the virtual timer fires on either.

use hyperprof_arch::{cnt_ctl, Cpu, PmuVer, SysReg};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::workload::by_name;

fn machine() -> Machine {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: None,
        fgt: true,
        uarch: Default::default(),
    };
    Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 16 << 20,
    })
    .unwrap()
}

/// Starts PE `i`'s cycle counter, counting at EL2 (where the PEs are).
fn count_cycles(m: &mut Machine, i: usize) {
    let mut c = m.cpu(i).unwrap();
    c.write(SysReg::PMCCFILTR_EL0, 1 << 27).unwrap();
    c.write(SysReg::PMCNTENSET_EL0, 1 << 31).unwrap();
    c.write(SysReg::PMCR_EL0, 1).unwrap();
    c.isb();
}

fn read(m: &mut Machine, i: usize, reg: SysReg) -> u64 {
    m.cpu(i).unwrap().read(reg).unwrap()
}

#[test]
fn one_pe_s_cycles_pass_on_every_counter_but_only_its_own_pmu() {
    let mut m = machine();
    count_cycles(&mut m, 0);
    count_cycles(&mut m, 1);
    let mut w = by_name("mix", 3).unwrap();
    let mut done = 0;
    m.run(0, w.as_mut(), 50_000, &mut done).unwrap();
    let ran = read(&mut m, 0, SysReg::PMCCNTR_EL0);
    assert!(ran >= done && done == 50_000);
    assert_eq!(read(&mut m, 0, SysReg::CNTPCT_EL0), ran);
    assert_eq!(read(&mut m, 1, SysReg::CNTPCT_EL0), ran);
    assert_eq!(read(&mut m, 1, SysReg::PMCCNTR_EL0), 0);
    assert_eq!(m.now(), ran);
}

#[test]
fn skipped_idle_time_moves_the_counters_and_no_pmu() {
    let mut m = machine();
    count_cycles(&mut m, 0);
    let mut w = by_name("mix", 3).unwrap();
    let mut done = 0;
    m.run(0, w.as_mut(), 1_000, &mut done).unwrap();
    let cycles = read(&mut m, 0, SysReg::PMCCNTR_EL0);
    let now = m.now();
    // PE 1 arms its virtual timer half a millisecond ahead.
    {
        let mut c = m.cpu(1).unwrap();
        c.write(SysReg::CNTV_CVAL_EL0, now + 500_000).unwrap();
        c.write(SysReg::CNTV_CTL_EL0, cnt_ctl::ENABLE.mask())
            .unwrap();
    }
    assert!(!m.pe(1).unwrap().irq_lines().vtimer);
    m.advance_clock(1_000_000);
    assert_eq!(m.now(), now + 1_000_000);
    for i in 0..2 {
        assert_eq!(read(&mut m, i, SysReg::CNTPCT_EL0), now + 1_000_000);
    }
    assert_eq!(read(&mut m, 0, SysReg::PMCCNTR_EL0), cycles);
    assert!(m.pe(1).unwrap().irq_lines().vtimer);
    let ctl = read(&mut m, 1, SysReg::CNTV_CTL_EL0);
    assert!(cnt_ctl::ISTATUS.is_set(ctl));
    // TVAL: half a millisecond past, as a signed 32-bit value.
    let tval = read(&mut m, 1, SysReg::CNTV_TVAL_EL0);
    assert_eq!(tval as u32 as i32, -500_000);
}
