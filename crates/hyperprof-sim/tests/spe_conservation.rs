//! Conservation law of the SPE unit under random register writes, syncs,
//! samples, PSB CSYNCs and faulting buffers: every sample point is written,
//! filtered, collided, discarded or still queued; and the unit's other
//! invariants hold after every step (no panics on any input).

use hyperprof_arch::predicates::ExceptionLevel;
use hyperprof_arch::{mdcr_el2, pmbsr_el1, pmscr_el1, PmsVer, SysReg};
use hyperprof_sim::op::{Op, OpKind};
use hyperprof_sim::spe::{BufferFault, Control, SampleContext, Spe, SpeConfig, VecPort};
use proptest::prelude::*;

const BASE: u64 = 0x10_0000;
const PORT: usize = 0x4000;

/// The bank registers, then the ID registers and the alias, which writes
/// must leave alone.
const REGS: [SysReg; 15] = {
    let mut all = [SysReg::PMSIDR_EL1; 15];
    let mut i = 0;
    while i < 12 {
        all[i] = hyperprof_sim::spe::REGISTERS[i];
        i += 1;
    }
    all[13] = SysReg::PMBIDR_EL1;
    all[14] = SysReg::PMSCR_EL12;
    all
};

#[derive(Clone, Debug)]
enum Action {
    Write(usize, u64),
    Sync {
        owner_el2: bool,
        tge: bool,
        el2: bool,
    },
    Run {
        ops: u8,
        el: u8,
        latency: u16,
        kind: u8,
        outcome: u64,
    },
    Psb,
    Fault(Option<(u16, u8)>),
}

fn value_for(reg: usize) -> BoxedStrategy<u64> {
    match REGS[reg] {
        SysReg::PMBLIMITR_EL1 => prop_oneof![
            Just(0u64),
            Just((BASE + PORT as u64) | 1),
            Just((BASE + 0x1000) | 1),
            Just((BASE + 0x1000) | 0b101),
            any::<u64>(),
        ]
        .boxed(),
        SysReg::PMBPTR_EL1 => prop_oneof![
            Just(BASE),
            (0u64..PORT as u64).prop_map(|o| BASE + o),
            any::<u64>(),
        ]
        .boxed(),
        SysReg::PMSIRR_EL1 => {
            prop_oneof![(0u64..0x400), Just(0x100), Just(0x101), any::<u64>()].boxed()
        }
        SysReg::PMSICR_EL1 => prop_oneof![0u64..600, any::<u64>()].boxed(),
        SysReg::PMBSR_EL1 => {
            prop_oneof![Just(0u64), Just(pmbsr_el1::S.mask()), any::<u64>()].boxed()
        }
        SysReg::PMSCR_EL1 | SysReg::PMSCR_EL2 | SysReg::PMSCR_EL12 => {
            prop_oneof![Just(0b11u64), any::<u8>().prop_map(u64::from), any::<u64>(),].boxed()
        }
        _ => prop_oneof![0u64..0x100, any::<u64>()].boxed(),
    }
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..REGS.len()).prop_flat_map(|r| value_for(r).prop_map(move |v| Action::Write(r, v))),
        2 => (any::<bool>(), any::<bool>(), prop::bool::weighted(0.9))
            .prop_map(|(owner_el2, tge, el2)| Action::Sync { owner_el2, tge, el2 }),
        4 => (1u8..30, 0u8..3, prop_oneof![4 => 1u16..300, 1 => any::<u16>()], 0u8..4, any::<u64>())
            .prop_map(|(ops, el, latency, kind, outcome)| Action::Run { ops, el, latency, kind, outcome }),
        1 => Just(Action::Psb),
        1 => prop::option::of((0u16..(PORT as u16 / 0x100), 0u8..3)).prop_map(Action::Fault),
    ]
}

fn config() -> impl Strategy<Value = SpeConfig> {
    (
        prop::sample::select(vec![
            PmsVer::V1p0,
            PmsVer::V1p1,
            PmsVer::V1p2,
            PmsVer::V1p3,
            PmsVer::V1p4,
            PmsVer::V1p5,
        ]),
        0u8..16,
        0u8..8,
        0usize..6,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(pms_ver, max_record_log2, align_log2, queue_capacity, countsize_16bit, seed)| {
                SpeConfig {
                    pms_ver,
                    interval_field: 0,
                    max_record_log2,
                    max_buff_size: 1 << 20,
                    align_log2,
                    queue_capacity,
                    countsize_16bit,
                    seed,
                }
            },
        )
}

fn check(spe: &Spe, cfg: &SpeConfig) -> Result<(), TestCaseError> {
    let s = spe.stats();
    prop_assert!(spe.conserved(), "{s:?} queued {}", spe.queued());
    prop_assert_eq!(
        s.sampled,
        s.written + s.filtered + s.collided + s.discarded + spe.queued() as u64
    );
    prop_assert!(s.lost <= s.discarded);
    prop_assert!(spe.queued() <= cfg.queue_capacity);
    prop_assert!(spe.queued() == 0 || spe.profiling_buffer_enabled());
    prop_assert_eq!(
        spe.irq_level(),
        pmbsr_el1::S.is_set(spe.read(SysReg::PMBSR_EL1))
    );
    prop_assert!(spe.ops_to_sample() >= 1);
    prop_assert_eq!(spe.effective(SysReg::PMBPTR_EL1) % cfg.alignment(), 0);
    prop_assert_eq!(s.records_bytes % cfg.alignment(), 0);
    prop_assert!(s.written == 0 || s.records_bytes >= 10 * s.written);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conservation_holds_under_any_sequence(
        cfg in config(),
        actions in prop::collection::vec(action(), 1..80),
    ) {
        let mut spe = Spe::new(cfg.clone());
        let mut port = VecPort::new(BASE, PORT);
        let mut index = 0u64;
        // Start from a working configuration so sampling actually happens.
        spe.write(SysReg::PMBPTR_EL1, BASE);
        spe.write(SysReg::PMBLIMITR_EL1, (BASE + PORT as u64) | 1);
        spe.write(SysReg::PMSCR_EL1, pmscr_el1::E0SPE.mask() | pmscr_el1::E1SPE.mask());
        spe.write(SysReg::PMSIRR_EL1, 0x100);
        let mut ctl = Control {
            el2_implemented: true,
            hcr_el2: 0,
            mdcr_el2: mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1),
        };
        spe.sync(&ctl);
        for a in actions {
            match a {
                Action::Write(r, v) => spe.write(REGS[r], v),
                Action::Sync { owner_el2, tge, el2 } => {
                    let e2pb = if owner_el2 { mdcr_el2::E2PB_EL2 } else { mdcr_el2::E2PB_EL1 };
                    ctl = Control {
                        el2_implemented: el2,
                        hcr_el2: if tge { 3 << 33 | 1 << 27 } else { 0 },
                        mdcr_el2: mdcr_el2::E2PB.value(e2pb),
                    };
                    spe.sync(&ctl);
                }
                Action::Run { ops, el, latency, kind, outcome } => {
                    let el = ExceptionLevel::from_u8(el).unwrap_or(ExceptionLevel::EL1);
                    let kind = match kind {
                        0 => OpKind::Load,
                        1 => OpKind::Store,
                        2 => OpKind::Branch { conditional: outcome & 1 != 0, indirect: outcome & 2 != 0, taken: outcome & 4 != 0 },
                        _ => OpKind::Other,
                    };
                    for i in 0..u64::from(ops) {
                        let op = Op {
                            pc: 0x40_0000 + 4 * i,
                            kind,
                            data_va: outcome.rotate_left(7),
                            target: outcome.rotate_left(13),
                            issue_latency: latency / 2,
                            total_latency: latency,
                            translation_latency: latency / 3,
                            outcome,
                            data_source: latency,
                            ldst_subclass: 0,
                            cycles: 1,
                        };
                        let n = if spe.sampling_at(el) { spe.ops_to_sample() } else { 1 };
                        if n == u64::MAX {
                            index += 1;
                            continue;
                        }
                        spe.skip(n.saturating_sub(1).min(1 << 20));
                        index += n.min(1 << 20);
                        let ctx = SampleContext {
                            el,
                            ns: true,
                            op_index: index,
                            data_pa: Some(outcome >> 8),
                            contextidr_el1: latency.into(),
                            contextidr_el2: 7,
                            cntvct: index,
                            cntpct: index * 3,
                        };
                        spe.sample(&op, &ctx, &mut port);
                        check(&spe, &cfg)?;
                    }
                }
                Action::Psb => spe.psb_csync(&mut port),
                Action::Fault(None) => port.clear_faults(),
                Action::Fault(Some((page, kind))) => {
                    let start = BASE + u64::from(page) * 0x100;
                    let f = match kind {
                        0 => BufferFault::Stage1 { fsc: 0x07 },
                        1 => BufferFault::Stage2 { fsc: 0x0D },
                        _ => BufferFault::External,
                    };
                    port.add_fault(start, start + 0x100, f);
                }
            }
            check(&spe, &cfg)?;
        }
        spe.psb_csync(&mut port);
        check(&spe, &cfg)?;
        prop_assert_eq!(spe.queued(), 0);
    }
}

#[test]
fn the_law_holds_in_a_plain_run() {
    let cfg = SpeConfig::default();
    let mut spe = Spe::new(cfg.clone());
    let mut port = VecPort::new(BASE, PORT);
    spe.write(SysReg::PMBPTR_EL1, BASE);
    spe.write(SysReg::PMBLIMITR_EL1, (BASE + PORT as u64) | 1);
    spe.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask());
    spe.write(SysReg::PMSIRR_EL1, 0x100);
    spe.sync(&Control {
        el2_implemented: true,
        hcr_el2: 0,
        mdcr_el2: mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1),
    });
    let mut index = 0;
    for i in 0..1000u64 {
        let n = spe.ops_to_sample();
        spe.skip(n - 1);
        index += n;
        let op = Op {
            pc: 0x1000 + 4 * i,
            kind: OpKind::Load,
            data_va: 0x2000,
            target: 0,
            issue_latency: 1,
            total_latency: (i % 400) as u16,
            translation_latency: 1,
            outcome: 0,
            data_source: 0,
            ldst_subclass: 0,
            cycles: 1,
        };
        let ctx = SampleContext {
            el: ExceptionLevel::EL1,
            ns: true,
            op_index: index,
            data_pa: None,
            contextidr_el1: 0,
            contextidr_el2: 0,
            cntvct: 0,
            cntpct: 0,
        };
        spe.sample(&op, &ctx, &mut port);
        assert!(spe.conserved());
    }
    let s = *spe.stats();
    assert!(
        s.sampled > 0 && s.sampled < 1000,
        "sampling stopped when full: {s:?}"
    );
    assert!(s.collided > 0, "latencies above the interval collide");
    assert!(s.written > 0 && s.buffer_full_events == 1, "{s:?}");
    assert!(!spe.sampling_at(ExceptionLevel::EL1));
    check(&spe, &cfg)
        .map_err(|e| e.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
}
