//! A PE driven by arbitrary sequences of system register accesses (any
//! register, any value, at any Exception level), barriers, exception
//! entries and returns, and operations: it never panics, and the SPE unit's
//! conservation law holds after every step.

use hyperprof_arch::{Cpu, ExceptionLevel, PmuVer, SysReg};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::{by_name, NAMES};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Read(usize),
    Write(usize, u64),
    Isb,
    Dsb,
    Psb,
    Eret(u8),
    Run(usize, u64),
}

/// Values that matter more often than uniform ones: enables, small
/// pointers into RAM, all-ones.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        0u64..64,
        (0x8000_0000u64..0x8010_0000).prop_map(|v| v & !0xFFF),
        (0x8000_0000u64..0x8010_0000).prop_map(|v| (v & !0xFFF) | 1),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..SysReg::COUNT).prop_map(Step::Read),
        6 => (0..SysReg::COUNT, value()).prop_map(|(r, v)| Step::Write(r, v)),
        2 => Just(Step::Isb),
        1 => Just(Step::Dsb),
        1 => Just(Step::Psb),
        1 => (0u8..3).prop_map(Step::Eret),
        2 => (0..NAMES.len(), 1u64..50_000).prop_map(|(w, n)| Step::Run(w, n)),
    ]
}

fn machine() -> Machine {
    Machine::new(&MachineConfig {
        pes: vec![PeConfig {
            pmu: PmuConfig {
                counters: 6,
                version: PmuVer::V3p5,
                hpmn0: true,
                el2_implemented: true,
            },
            spe: Some(SpeConfig {
                queue_capacity: 2,
                ..SpeConfig::default()
            }),
            fgt: true,
            uarch: Default::default(),
        }],
        ram_base: 0x8000_0000,
        ram_size: 1 << 20,
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_programs_never_break_the_pe(
        steps in proptest::collection::vec(step(), 1..120),
        seed in any::<u64>(),
        live_start in any::<bool>(),
    ) {
        let mut m = machine();
        if live_start {
            // A working EL2 session (MMU off: the buffer is at its PA), so
            // the random steps also start from states that sample.
            let mut c = m.cpu(0).unwrap();
            for (reg, v) in [
                (SysReg::PMBPTR_EL1, 0x8000_0000),
                (SysReg::PMBLIMITR_EL1, 0x8004_0001),
                (SysReg::PMSIRR_EL1, 0x100),
                (SysReg::PMSCR_EL2, 0b11_0011),
            ] {
                c.write(reg, v).unwrap();
            }
            c.isb();
        }
        let mut workloads: Vec<_> = NAMES.iter().map(|n| by_name(n, seed).unwrap()).collect();
        for s in steps {
            match s {
                Step::Read(r) => {
                    let _ = m.cpu(0).unwrap().read(SysReg::ALL[r]);
                }
                Step::Write(r, v) => {
                    let _ = m.cpu(0).unwrap().write(SysReg::ALL[r], v);
                }
                Step::Isb => m.cpu(0).unwrap().isb(),
                Step::Dsb => m.cpu(0).unwrap().dsb_nsh(),
                Step::Psb => m.cpu(0).unwrap().psb_csync(),
                Step::Eret(el) => m.pe_mut(0).unwrap().eret(ExceptionLevel::from_u8(el).unwrap()),
                Step::Run(w, n) => {
                    let mut done = 0;
                    m.run(0, workloads[w].as_mut(), n, &mut done).unwrap();
                    prop_assert!(done <= n);
                }
            }
            let pe = m.pe(0).unwrap();
            let spe = pe.spe().unwrap();
            let st = spe.stats();
            prop_assert_eq!(
                st.sampled,
                st.written + st.filtered + st.collided + st.discarded + spe.queued() as u64,
                "{:?}", st
            );
            // PMBIRQ is exactly PMBSR_EL1.S.
            prop_assert_eq!(pe.irq_lines().pmbirq, spe.read(SysReg::PMBSR_EL1) >> 17 & 1 == 1);
        }
    }
}
