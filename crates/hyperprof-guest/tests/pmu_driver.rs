//! The PMU driver's counter ranges: an nVHE host kernel at EL1 takes the
//! top counters of `0..PMCR_EL0.N` (it cannot read or write MDCR_EL2, so it
//! cannot take a high range), and counts its own EL1 work there exactly.

use hyperprof_arch::PmuVer;
use hyperprof_arch::{AccessFault, Cpu, ExceptionLevel, SysReg};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter, PmuDriver, Range};
use hyperprof_guest::drivers::DriverError;
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{PeConfig, RunExit};
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
        pes: vec![pe],
        ram_base: 0x8000_0000,
        ram_size: 16 << 20,
    })
    .unwrap()
}

fn el1() -> Filter {
    Filter {
        el0: false,
        el1: true,
        el2: false,
    }
}

#[test]
fn an_el1_host_counts_on_its_top_counters_and_cannot_take_a_high_range() {
    let mut m = machine();
    m.pe_mut(0).unwrap().eret(ExceptionLevel::EL1);
    let mut c = m.cpu(0).unwrap();
    let high = PmuDriver::probe(&mut c, Range::High);
    assert!(
        matches!(
            high,
            Err(DriverError::Access {
                reg: SysReg::MDCR_EL2,
                fault: AccessFault::Undefined
            })
        ),
        "{high:?}"
    );
    let mut d = PmuDriver::probe(&mut c, Range::Top(2)).unwrap();
    assert_eq!(d.counters(), 4..6);
    for (event, period) in [
        (Event::INST_RETIRED, None),
        (Event::CPU_CYCLES, Some(50_000)),
    ] {
        d.add(EventSpec {
            event: event.number(),
            filter: el1(),
            period,
        })
        .unwrap();
    }
    assert_eq!(d.slot_mask(), 0b11 << 4);
    d.start(&mut c).unwrap();
    let mut w = by_name("kernel-mix", 4).unwrap();
    let ops = 400_000;
    let mut left = ops;
    let mut irqs = 0;
    while left > 0 {
        let mut done = 0;
        let exit = m.run(0, w.as_mut(), left, &mut done).unwrap();
        left -= done;
        if let RunExit::Interrupt(_) = exit {
            let mut c = m.cpu(0).unwrap();
            assert_ne!(d.handle_irq(&mut c).unwrap(), 0);
            irqs += 1;
        }
    }
    let mut want = EventCounts::default();
    by_name("kernel-mix", 4).unwrap().skip(ops, &mut want);
    let mut c = m.cpu(0).unwrap();
    assert_eq!(d.read(&mut c, 0).unwrap(), want.get(Event::INST_RETIRED));
    assert_eq!(d.read(&mut c, 1).unwrap(), want.get(Event::CPU_CYCLES));
    assert_eq!(irqs, want.get(Event::CPU_CYCLES) / 50_000);
    // The counters below are untouched (left to guests).
    assert_eq!(c.read(SysReg::PMCNTENSET_EL0).unwrap() & 0xF, 0);
}
