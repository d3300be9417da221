//! SPE unit sampling: interval and RND, collisions, each filter, contexts,
//! physical addresses and timestamps, through the unit's public interface.

use hyperprof_arch::predicates::ExceptionLevel;
use hyperprof_arch::{
    hcr_el2, mdcr_el2, pct, pmbsr_el1, pmscr_el1, pmscr_el2, pmsfcr_el1, pmsirr_el1, PmsVer, SysReg,
};
use hyperprof_sim::op::{Op, OpKind};
use hyperprof_sim::spe::{Control, SampleContext, Spe, SpeConfig, VecPort};
use hyperprof_spe::packet::event;
use hyperprof_spe::{Record, RecordDecoder};

const BASE: u64 = 0x8000_0000;
const SIZE: u64 = 0x40000;

fn ctl(owner_el2: bool, hcr: u64) -> Control {
    let e2pb = if owner_el2 {
        mdcr_el2::E2PB_EL2
    } else {
        mdcr_el2::E2PB_EL1
    };
    Control {
        el2_implemented: true,
        hcr_el2: hcr,
        mdcr_el2: mdcr_el2::E2PB.value(e2pb),
    }
}

fn op(kind: OpKind, outcome: u64, total_latency: u16) -> Op {
    Op {
        pc: 0x40_1000,
        kind,
        data_va: 0x7000_0000,
        target: 0x40_2000,
        issue_latency: 1,
        total_latency,
        translation_latency: 1,
        outcome,
        data_source: 0,
        ldst_subclass: 0,
        cycles: 1,
    }
}

fn load() -> Op {
    op(OpKind::Load, 0, 10)
}

struct Rig {
    spe: Spe,
    port: VecPort,
    index: u64,
}

impl Rig {
    /// A unit sampling EL0 and EL1 (and EL2 through PMSCR_EL2) with
    /// `pmsirr`, configured by `setup` before the first sync.
    fn new(cfg: SpeConfig, ctl: Control, pmsirr: u64, setup: impl FnOnce(&mut Spe)) -> Rig {
        let mut spe = Spe::new(cfg);
        spe.write(SysReg::PMBPTR_EL1, BASE);
        spe.write(SysReg::PMBLIMITR_EL1, (BASE + SIZE) | 1);
        spe.write(
            SysReg::PMSCR_EL1,
            pmscr_el1::E0SPE.mask() | pmscr_el1::E1SPE.mask(),
        );
        spe.write(
            SysReg::PMSCR_EL2,
            pmscr_el2::E0HSPE.mask() | pmscr_el2::E2SPE.mask(),
        );
        spe.write(SysReg::PMSIRR_EL1, pmsirr);
        setup(&mut spe);
        spe.sync(&ctl);
        Rig {
            spe,
            port: VecPort::new(BASE, SIZE as usize),
            index: 0,
        }
    }

    fn ctx(&self, el: ExceptionLevel) -> SampleContext {
        SampleContext {
            el,
            ns: true,
            op_index: self.index,
            data_pa: Some(0x1_2345_6000),
            contextidr_el1: 0xC1,
            contextidr_el2: 0xC2,
            cntvct: 1_000 + self.index,
            cntpct: 9_000_000 + self.index,
        }
    }

    /// Runs to the next sample point at `el` and samples `op`; returns the
    /// operation index of the sample point.
    fn sample_at(&mut self, el: ExceptionLevel, op: &Op) -> u64 {
        let n = self.spe.ops_to_sample();
        self.spe.skip(n - 1);
        self.index += n;
        let ctx = self.ctx(el);
        self.spe.sample(op, &ctx, &mut self.port);
        self.index
    }

    fn sample(&mut self, op: &Op) -> u64 {
        self.sample_at(ExceptionLevel::EL1, op)
    }

    fn records(&mut self) -> Vec<Record> {
        self.spe.psb_csync(&mut self.port);
        let len = (self.spe.read(SysReg::PMBPTR_EL1) - BASE) as usize;
        let bytes = self.port.bytes(BASE, len).unwrap_or(&[]);
        RecordDecoder::new(bytes)
            .map(|r| r.map(|(_, rec)| rec))
            .collect::<Result<_, _>>()
            .unwrap_or_default()
    }
}

fn default_rig(setup: impl FnOnce(&mut Spe)) -> Rig {
    Rig::new(SpeConfig::default(), ctl(false, 0), 0x100, setup)
}

#[test]
fn pmsicr_write_sets_count_at_sync() {
    let mut r = default_rig(|s| s.write(SysReg::PMSICR_EL1, 5));
    assert_eq!(r.spe.ops_to_sample(), 5);
    assert_eq!(r.sample(&load()), 5);
    // Then every reload + 1 operations.
    assert_eq!(r.sample(&load()), 5 + 0x101);
    assert_eq!(r.spe.stats().sampled, 2);
}

#[test]
fn rnd_jitter_is_deterministic_for_a_seed() {
    let run = |seed: u64| {
        let cfg = SpeConfig {
            seed,
            ..SpeConfig::default()
        };
        let mut r = Rig::new(cfg, ctl(false, 0), 0x1000 | pmsirr_el1::RND.mask(), |_| {});
        (0..100).map(|_| r.sample(&load())).collect::<Vec<_>>()
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same sample points");
    assert_ne!(a, run(2), "another seed, other sample points");
    let gaps: Vec<u64> = a.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&g| (0x1001..=0x1100).contains(&g)),
        "{gaps:x?}"
    );
    let distinct: std::collections::BTreeSet<_> = gaps.iter().collect();
    assert!(distinct.len() > 20, "jitter varies the interval");
    // Without RND the interval is exact.
    let mut r = Rig::new(SpeConfig::default(), ctl(false, 0), 0x1000, |_| {});
    let p: Vec<u64> = (0..5).map(|_| r.sample(&load())).collect();
    assert!(p.windows(2).all(|w| w[1] - w[0] == 0x1001));
}

#[test]
fn collisions_are_counted_and_set_coll() {
    let mut r = default_rig(|_| {});
    let slow = op(OpKind::Load, 0, 0x180); // longer than one interval (0x101)
    for _ in 0..10 {
        r.sample(&slow);
    }
    let s = *r.spe.stats();
    assert_eq!(s.sampled, 10);
    assert_eq!(s.collided, 5, "every other sample point collides");
    assert!(pmbsr_el1::COLL.is_set(r.spe.read(SysReg::PMBSR_EL1)));
    assert!(!r.spe.irq_level());
    assert_eq!(r.records().len(), 5);
    assert!(r.spe.conserved());
}

fn kept(r: &mut Rig, ops: &[Op]) -> usize {
    for o in ops {
        r.sample(o);
    }
    let n = r.records().len();
    assert_eq!(r.spe.stats().filtered + n as u64, ops.len() as u64);
    n
}

#[test]
fn event_filter() {
    let refill = 1 << event::L1D_REFILL;
    let ops = [
        op(OpKind::Load, refill, 10),
        op(OpKind::Load, 0, 10),
        op(OpKind::Store, refill, 10),
    ];
    let mut r = default_rig(|s| {
        s.write(SysReg::PMSFCR_EL1, pmsfcr_el1::FE.mask());
        s.write(SysReg::PMSEVFR_EL1, refill);
    });
    assert_eq!(kept(&mut r, &ops), 2);
    for rec in r.records() {
        assert!(rec.has_event(event::L1D_REFILL));
    }
    // Written but not synchronized: no filtering yet.
    let mut r = default_rig(|_| {});
    r.spe.write(SysReg::PMSFCR_EL1, pmsfcr_el1::FE.mask());
    r.spe.write(SysReg::PMSEVFR_EL1, refill);
    assert_eq!(kept(&mut r, &ops), 3);
}

#[test]
fn inverted_event_filter() {
    let mis = 1 << event::MISPREDICTED;
    let br = OpKind::Branch {
        conditional: true,
        indirect: false,
        taken: true,
    };
    let ops = [
        op(br, mis, 5),
        op(br, 0, 5),
        op(br, mis, 5),
        op(OpKind::Other, 0, 5),
    ];
    let setup = |s: &mut Spe| {
        s.write(SysReg::PMSFCR_EL1, pmsfcr_el1::FnE.mask());
        s.write(SysReg::PMSNEVFR_EL1, mis);
    };
    let mut r = default_rig(setup);
    assert_eq!(kept(&mut r, &ops), 2);
    // FEAT_SPE_FnE is absent before v1p2: no filtering.
    let mut r = Rig::new(
        SpeConfig {
            pms_ver: PmsVer::V1p1,
            ..SpeConfig::default()
        },
        ctl(false, 0),
        0x100,
        setup,
    );
    assert_eq!(kept(&mut r, &ops), 4);
}

#[test]
fn type_filter() {
    let br = OpKind::Branch {
        conditional: false,
        indirect: true,
        taken: true,
    };
    let ops = [
        op(OpKind::Load, 0, 5),
        op(OpKind::Store, 0, 5),
        op(br, 0, 5),
        op(OpKind::Other, 0, 5),
    ];
    let mut r = default_rig(|s| {
        s.write(
            SysReg::PMSFCR_EL1,
            pmsfcr_el1::FT.mask() | pmsfcr_el1::B.mask() | pmsfcr_el1::ST.mask(),
        )
    });
    assert_eq!(kept(&mut r, &ops), 2);
    let classes: Vec<_> = r
        .records()
        .iter()
        .filter_map(|x| x.op.map(|o| (o.class, o.payload)))
        .collect();
    assert_eq!(
        classes,
        [
            (hyperprof_spe::OpClass::LoadStore, 1),
            (hyperprof_spe::OpClass::Branch, 0b10)
        ]
    );
}

#[test]
fn latency_filter_compares_total_latency_with_minlat() {
    let ops = [
        op(OpKind::Load, 0, 99),
        op(OpKind::Load, 0, 100),
        op(OpKind::Load, 0, 250),
    ];
    let mut r = default_rig(|s| {
        s.write(SysReg::PMSFCR_EL1, pmsfcr_el1::FL.mask());
        s.write(SysReg::PMSLATFR_EL1, 100);
    });
    assert_eq!(kept(&mut r, &ops), 2);
    for rec in r.records() {
        assert!(rec.total_latency.unwrap_or(0) >= 100);
    }
}

#[test]
fn data_source_filter_needs_v1p4() {
    let ops: Vec<Op> = (0..4u16)
        .map(|ds| Op {
            data_source: ds,
            ldst_subclass: 0,
            ..load()
        })
        .collect();
    let setup = |s: &mut Spe| {
        s.write(SysReg::PMSFCR_EL1, pmsfcr_el1::FDS.mask());
        s.write(SysReg::PMSDSFR_EL1, 0b1010);
    };
    let v4 = SpeConfig {
        pms_ver: PmsVer::V1p4,
        ..SpeConfig::default()
    };
    let mut r = Rig::new(v4, ctl(false, 0), 0x100, setup);
    assert_eq!(kept(&mut r, &ops), 2);
    let sources: Vec<_> = r.records().iter().filter_map(|x| x.data_source).collect();
    assert_eq!(sources, [1, 3]);
    let mut r = default_rig(setup);
    assert_eq!(kept(&mut r, &ops), 4, "v1p2: no FDS");
}

#[test]
fn contexts_and_physical_addresses() {
    let mut r = default_rig(|s| {
        s.write(
            SysReg::PMSCR_EL1,
            pmscr_el1::E1SPE.mask() | pmscr_el1::CX.mask() | pmscr_el1::PA.mask(),
        );
    });
    r.sample(&load());
    let recs = r.records();
    assert_eq!(recs[0].context_el1, Some(0xC1));
    assert_eq!(recs[0].context_el2, None);
    assert_eq!(recs[0].data_pa, None, "an EL1 owner needs PMSCR_EL2.PA too");

    let mut r = default_rig(|s| {
        s.write(
            SysReg::PMSCR_EL1,
            pmscr_el1::E1SPE.mask() | pmscr_el1::CX.mask() | pmscr_el1::PA.mask(),
        );
        s.write(
            SysReg::PMSCR_EL2,
            pmscr_el2::CX.mask() | pmscr_el2::PA.mask(),
        );
    });
    r.sample(&load());
    let recs = r.records();
    assert_eq!(recs[0].context_el2, Some(0xC2));
    assert_eq!(recs[0].data_pa.map(|p| p.addr), Some(0x1_2345_6000));
}

#[test]
fn timestamps_virtual_or_physical() {
    let ts1 = |p: u64| pmscr_el1::E1SPE.mask() | pmscr_el1::TS.mask() | pmscr_el1::PCT.value(p);
    let run = |owner_el2: bool, p1: u64, p2: u64| {
        let mut r = Rig::new(SpeConfig::default(), ctl(owner_el2, 0), 0x100, |s| {
            s.write(SysReg::PMSCR_EL1, p1);
            s.write(SysReg::PMSCR_EL2, p2);
        });
        let i = r.sample(&load());
        let ts = r.records().first().and_then(|x| x.timestamp);
        (ts, 1_000 + i, 9_000_000 + i)
    };
    // Guest buffer, PMSCR_EL2.PCT = PHYS lets the guest pick.
    let (ts, v, p) = run(false, ts1(pct::PHYS), pmscr_el2::PCT.value(pct::PHYS));
    assert_ne!(v, p);
    assert_eq!(ts, Some(p));
    let (ts, v, _) = run(false, ts1(pct::VIRT), pmscr_el2::PCT.value(pct::PHYS));
    assert_eq!(ts, Some(v));
    // PMSCR_EL2.PCT = VIRT: the guest gets the virtual count whatever it asks.
    let (ts, v, _) = run(false, ts1(pct::PHYS), 0);
    assert_eq!(ts, Some(v));
    // TS clear: the record ends with END.
    let (ts, _, _) = run(
        false,
        pmscr_el1::E1SPE.mask(),
        pmscr_el2::PCT.value(pct::PHYS),
    );
    assert_eq!(ts, None);
    // Host buffer: PMSCR_EL2.TS and PCT decide.
    let ts2 = pmscr_el2::TS.mask() | pmscr_el2::PCT.value(pct::PHYS);
    let (ts, _, p) = run(true, pmscr_el1::E1SPE.mask(), ts2);
    assert_eq!(ts, Some(p));
    let (ts, _, _) = run(true, ts1(pct::PHYS), 0);
    assert_eq!(ts, None, "PMSCR_EL1.TS does not apply to an EL2 buffer");
}

#[test]
fn host_el0_under_tge_uses_e0hspe_and_physical_time() {
    let vhe = hcr_el2::E2H.mask() | hcr_el2::TGE.mask();
    let mut r = Rig::new(SpeConfig::default(), ctl(true, vhe), 0x100, |s| {
        s.write(SysReg::PMSCR_EL1, 0);
        s.write(
            SysReg::PMSCR_EL2,
            pmscr_el2::E0HSPE.mask() | pmscr_el2::TS.mask() | pmscr_el2::CX.mask(),
        );
    });
    assert!(r.spe.sampling_at(ExceptionLevel::EL0));
    assert!(!r.spe.sampling_at(ExceptionLevel::EL1));
    assert!(!r.spe.sampling_at(ExceptionLevel::EL2));
    let i = r.sample_at(ExceptionLevel::EL0, &load());
    let recs = r.records();
    assert_eq!(recs.len(), 1);
    // In host: PCT = VIRT gives the physical count (CNTVOFF is not applied).
    assert_eq!(recs[0].timestamp, Some(9_000_000 + i));
    assert_eq!(recs[0].pc.map(|p| p.el), Some(0));
    assert_eq!(recs[0].context_el1, None, "TGE: no CONTEXTIDR_EL1");
    assert_eq!(recs[0].context_el2, Some(0xC2));
}

#[test]
fn counters_saturate_at_countsize() {
    let slow = op(OpKind::Load, 0, 0xF000);
    let mut r = default_rig(|_| {});
    r.sample(&slow);
    assert_eq!(r.records()[0].total_latency, Some(0xFFF));
    let cfg = SpeConfig {
        countsize_16bit: true,
        ..SpeConfig::default()
    };
    let mut r = Rig::new(cfg, ctl(false, 0), 0x100, |_| {});
    r.sample(&slow);
    assert_eq!(r.records()[0].total_latency, Some(0xF000));
}
