//! SPE unit buffer behaviour: records held until PSB CSYNC, queue overflow,
//! buffer full, stage 1 / stage 2 faults, External aborts, DISCARD mode,
//! and the records decoding back to the sampled operations.

use hyperprof_arch::predicates::ExceptionLevel;
use hyperprof_arch::{mdcr_el2, pmblimitr_el1, pmbsr_el1, pmscr_el1, PmbsrEc, PmsVer, SysReg};
use hyperprof_sim::op::{Op, OpKind};
use hyperprof_sim::spe::{BufferFault, Control, SampleContext, Spe, SpeConfig, VecPort};
use hyperprof_spe::packet::event;
use hyperprof_spe::{OpClass, Record, RecordDecoder};

const BASE: u64 = 0x4000_0000;

fn el1_owner() -> Control {
    Control {
        el2_implemented: true,
        hcr_el2: 0,
        mdcr_el2: mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1),
    }
}

fn load(pc: u64) -> Op {
    Op {
        pc,
        kind: OpKind::Load,
        data_va: 0xffff_0000_0000_0000 | pc << 4,
        target: 0,
        issue_latency: 4,
        total_latency: 20,
        translation_latency: 2,
        outcome: 1 << event::L1D_REFILL,
        data_source: 3,
        ldst_subclass: 0,
        cycles: 20,
    }
}

/// A unit sampling EL1 into `BASE..BASE + size`, a port covering
/// `BASE..BASE + port_size`, and the operation index.
struct Rig {
    spe: Spe,
    port: VecPort,
    index: u64,
}

impl Rig {
    fn new(cfg: SpeConfig, size: u64, port_size: usize) -> Rig {
        let mut spe = Spe::new(cfg);
        spe.write(SysReg::PMBPTR_EL1, BASE);
        spe.write(
            SysReg::PMBLIMITR_EL1,
            (BASE + size) | pmblimitr_el1::E.mask(),
        );
        spe.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask());
        spe.write(SysReg::PMSIRR_EL1, 0x100);
        spe.sync(&el1_owner());
        Rig {
            spe,
            port: VecPort::new(BASE, port_size),
            index: 0,
        }
    }

    /// Runs to the next sample point (if sampling) and samples `op`.
    fn sample(&mut self, op: &Op) {
        if !self.spe.sampling_at(ExceptionLevel::EL1) {
            return;
        }
        let n = self.spe.ops_to_sample();
        self.spe.skip(n - 1);
        self.index += n;
        let ctx = SampleContext {
            el: ExceptionLevel::EL1,
            ns: true,
            op_index: self.index,
            data_pa: None,
            contextidr_el1: 0,
            contextidr_el2: 0,
            cntvct: 0,
            cntpct: 0,
        };
        self.spe.sample(op, &ctx, &mut self.port);
    }

    fn ptr(&self) -> u64 {
        self.spe.read(SysReg::PMBPTR_EL1)
    }

    fn sr(&self) -> u64 {
        self.spe.read(SysReg::PMBSR_EL1)
    }

    fn records(&self) -> Vec<Record> {
        let len = (self.ptr() - BASE) as usize;
        let bytes = self.port.bytes(BASE, len).unwrap_or(&[]);
        RecordDecoder::new(bytes)
            .map(|r| r.map(|(_, rec)| rec))
            .collect::<Result<_, _>>()
            .unwrap_or_default()
    }
}

/// Bytes of one `load` record with the default configuration.
fn record_len() -> u64 {
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x10000);
    r.sample(&load(0x1000));
    r.spe.psb_csync(&mut r.port);
    r.ptr() - BASE
}

#[test]
fn pmbptr_is_stale_until_psb_csync() {
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x10000);
    for i in 0..3 {
        r.sample(&load(0x1000 + 4 * i));
    }
    assert_eq!(r.spe.queued(), 3);
    assert_eq!(r.ptr(), BASE, "nothing written yet");
    assert_eq!(r.port.writes(), 0);
    r.spe.psb_csync(&mut r.port);
    assert_eq!(r.spe.queued(), 0);
    assert_eq!(r.ptr(), BASE + 3 * record_len());
    assert_eq!(r.spe.stats().written, 3);
    assert_eq!(r.spe.stats().records_bytes, 3 * record_len());
    assert_eq!(r.sr(), 0);
    assert!(!r.spe.irq_level());
}

#[test]
fn records_decode_back_to_the_operations() {
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x10000);
    let ops = [
        load(0xffff_8000_0010_0000),
        Op {
            kind: OpKind::Store,
            ..load(0x2000)
        },
        Op {
            kind: OpKind::Branch {
                conditional: true,
                indirect: false,
                taken: true,
            },
            target: 0x3000,
            outcome: 1 << event::MISPREDICTED,
            ..load(0x2ffc)
        },
        Op {
            kind: OpKind::Other,
            outcome: 0,
            ..load(0x4000)
        },
    ];
    for op in &ops {
        r.sample(op);
    }
    r.spe.psb_csync(&mut r.port);
    let recs = r.records();
    assert_eq!(recs.len(), ops.len());
    for (op, rec) in ops.iter().zip(&recs) {
        let pc = rec.pc.map(|p| (p.virtual_address(), p.el, p.ns));
        assert_eq!(pc, Some((op.pc, 1, true)));
        assert_eq!(rec.total_latency, Some(op.total_latency));
        assert_eq!(rec.issue_latency, Some(op.issue_latency));
        assert_eq!(rec.events, Some(op.spe_events()));
        assert_eq!(rec.timestamp, None, "TS off: records end with END");
        match op.kind {
            OpKind::Load | OpKind::Store => {
                assert_eq!(rec.data_va, Some(op.data_va));
                assert_eq!(rec.translation_latency, Some(op.translation_latency));
                let store = op.kind == OpKind::Store;
                assert_eq!(
                    rec.op.map(|o| (o.class, o.is_store())),
                    Some((OpClass::LoadStore, store))
                );
                assert_eq!(rec.data_source.is_some(), !store);
            }
            OpKind::Branch { .. } => {
                assert_eq!(rec.branch_target.map(|t| t.addr), Some(0x3000));
                assert_eq!(
                    rec.op.map(|o| (o.class, o.is_conditional())),
                    Some((OpClass::Branch, true))
                );
                assert!(rec.has_event(event::MISPREDICTED));
            }
            OpKind::Other => {
                assert_eq!(rec.op.map(|o| o.class), Some(OpClass::Other));
                assert_eq!(rec.data_va, None);
            }
        }
    }
}

#[test]
fn a_full_queue_writes_its_oldest_record() {
    let cfg = SpeConfig {
        queue_capacity: 2,
        ..SpeConfig::default()
    };
    let mut r = Rig::new(cfg, 0x10000, 0x10000);
    r.sample(&load(0x1000));
    r.sample(&load(0x2000));
    assert_eq!(r.port.writes(), 0);
    r.sample(&load(0x3000));
    assert_eq!(r.spe.queued(), 2);
    assert_eq!(r.spe.stats().written, 1);
    assert_eq!(r.ptr(), BASE + record_len());
    let first = r.records();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].pc.map(|p| p.addr), Some(0x1000), "oldest first");
    r.spe.psb_csync(&mut r.port);
    let pcs: Vec<_> = r
        .records()
        .iter()
        .filter_map(|x| x.pc.map(|p| p.addr))
        .collect();
    assert_eq!(pcs, [0x1000, 0x2000, 0x3000]);
}

#[test]
fn queue_capacity_zero_writes_at_once() {
    let cfg = SpeConfig {
        queue_capacity: 0,
        ..SpeConfig::default()
    };
    let mut r = Rig::new(cfg, 0x10000, 0x10000);
    r.sample(&load(0x1000));
    assert_eq!(r.spe.queued(), 0);
    assert_eq!(r.ptr(), BASE + record_len());
}

#[test]
fn buffer_full_stops_profiling_and_raises_pmbirq() {
    let len = record_len();
    // Room for records while PMBPTR <= LIMIT - 64 (the maximum record size).
    let size = 0x1000;
    let mut r = Rig::new(SpeConfig::default(), size, 0x2000);
    let fits = (size - 64) / len + 1;
    for i in 0..fits + 10 {
        r.sample(&load(0x1000 + 4 * i));
        r.spe.psb_csync(&mut r.port);
    }
    assert_eq!(r.spe.stats().written, fits);
    assert_eq!(r.ptr(), BASE + fits * len);
    assert!(
        r.ptr() > BASE + size - 64,
        "SPEBufferIsFull: PMBPTR > LIMIT - MaxRecordSize"
    );
    assert!(
        r.ptr() - len <= BASE + size - 64,
        "the previous record did not fill it"
    );
    let sr = r.sr();
    assert!(pmbsr_el1::S.is_set(sr));
    assert_eq!(pmbsr_el1::ec(sr), Some(PmbsrEc::BUF));
    assert_eq!(pmbsr_el1::BSC.get(sr), pmbsr_el1::BSC_FULL);
    assert!(!pmbsr_el1::DL.is_set(sr) && !pmbsr_el1::EA.is_set(sr));
    assert!(r.spe.irq_level());
    assert!(!r.spe.sampling_at(ExceptionLevel::EL1));
    assert_eq!(r.spe.stats().buffer_full_events, 1);
    assert_eq!(r.spe.stats().sampled, fits, "no sampling after the event");
    // The driver clears S and moves the pointer back: profiling resumes.
    r.spe.write(SysReg::PMBPTR_EL1, BASE);
    r.spe.write(SysReg::PMBSR_EL1, 0);
    assert!(!r.spe.irq_level());
    r.spe.sync(&el1_owner());
    assert!(r.spe.sampling_at(ExceptionLevel::EL1));
    r.sample(&load(0x9000));
    r.spe.psb_csync(&mut r.port);
    assert_eq!(r.ptr(), BASE + len);
    assert!(r.spe.conserved());
}

#[test]
fn queued_records_are_lost_at_a_buffer_full_event() {
    let len = record_len();
    let mut r = Rig::new(SpeConfig::default(), 0x1000, 0x2000);
    let fits = (0x1000 - 64) / len + 1;
    for i in 0..fits + 3 {
        r.sample(&load(0x1000 + 4 * i));
    }
    r.spe.psb_csync(&mut r.port);
    let s = *r.spe.stats();
    assert_eq!(s.written, fits);
    assert!(s.lost > 0);
    assert_eq!(s.lost, s.discarded);
    assert!(r.spe.conserved());
}

fn fault_rig(fault: BufferFault, fault_at: u64) -> Rig {
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x10000);
    r.port.add_fault(fault_at, fault_at + 0x1000, fault);
    r
}

#[test]
fn stage1_fault_reports_fsc_and_the_faulting_record() {
    let len = record_len();
    let mut r = fault_rig(BufferFault::Stage1 { fsc: 0x07 }, BASE);
    r.spe.write(SysReg::PMBPTR_EL1, BASE + 2 * len);
    r.spe.sync(&el1_owner());
    r.port.clear_faults();
    r.port.add_fault(
        BASE + 2 * len,
        BASE + 0x1000,
        BufferFault::Stage1 { fsc: 0x07 },
    );
    r.sample(&load(0x1000));
    r.sample(&load(0x2000));
    r.spe.psb_csync(&mut r.port);
    let sr = r.sr();
    assert!(pmbsr_el1::S.is_set(sr));
    assert_eq!(pmbsr_el1::ec(sr), Some(PmbsrEc::FAULT_S1));
    assert_eq!(pmbsr_el1::FSC.get(sr), 0x07);
    assert!(
        !pmbsr_el1::DL.is_set(sr),
        "nothing of the record was written"
    );
    assert!(!pmbsr_el1::EA.is_set(sr));
    assert_eq!(r.ptr(), BASE + 2 * len, "PMBPTR at the faulting record");
    assert!(r.spe.irq_level());
    let s = r.spe.stats();
    assert_eq!((s.written, s.fault_events, s.lost), (0, 1, 2));
    assert!(r.spe.conserved());
    assert!(!r.spe.sampling_at(ExceptionLevel::EL1));
}

#[test]
fn stage2_fault_is_fault_s2() {
    let mut r = fault_rig(BufferFault::Stage2 { fsc: 0x0F }, BASE);
    r.sample(&load(0x1000));
    r.spe.psb_csync(&mut r.port);
    let sr = r.sr();
    assert_eq!(pmbsr_el1::ec(sr), Some(PmbsrEc::FAULT_S2));
    assert_eq!(pmbsr_el1::FSC.get(sr), 0x0F);
    assert!(pmbsr_el1::S.is_set(sr));
    assert_eq!(r.ptr(), BASE);
    assert!(r.spe.irq_level());
}

#[test]
fn a_fault_inside_a_record_sets_dl_and_leaves_pmbptr_at_the_fault() {
    let mut r = fault_rig(BufferFault::Stage1 { fsc: 0x06 }, BASE + 0x1000);
    // The record starts 8 bytes before a page boundary; its second page faults.
    r.spe.write(SysReg::PMBPTR_EL1, BASE + 0x1000 - 8);
    r.spe.sync(&el1_owner());
    r.sample(&load(0x1000));
    r.spe.psb_csync(&mut r.port);
    let sr = r.sr();
    assert!(pmbsr_el1::DL.is_set(sr), "partial record");
    assert_eq!(pmbsr_el1::ec(sr), Some(PmbsrEc::FAULT_S1));
    assert_eq!(pmbsr_el1::FSC.get(sr), 0x06);
    assert_eq!(r.ptr(), BASE + 0x1000);
    // The first 8 bytes did land.
    assert_eq!(r.port.bytes(BASE + 0x1000 - 8, 1), Some(&[0xB0][..]));
}

#[test]
fn a_buffer_outside_memory_is_an_external_abort() {
    // The port (guest RAM) ends before the buffer does.
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x1000);
    r.spe.write(SysReg::PMBPTR_EL1, BASE + 0x2000);
    r.spe.sync(&el1_owner());
    r.sample(&load(0x1000));
    r.spe.psb_csync(&mut r.port);
    let sr = r.sr();
    assert!(pmbsr_el1::S.is_set(sr));
    assert!(pmbsr_el1::EA.is_set(sr), "EA = 1");
    assert_eq!(pmbsr_el1::ec(sr), Some(PmbsrEc::FAULT_S1));
    assert_eq!(pmbsr_el1::FSC.get(sr), 0x10, "synchronous External abort");
    assert!(r.spe.irq_level());
    assert_eq!(r.spe.stats().fault_events, 1);
}

#[test]
fn discard_mode_drops_records_and_keeps_pmbptr() {
    let mut r = Rig::new(SpeConfig::default(), 0x1000, 0x2000);
    let lim = r.spe.read(SysReg::PMBLIMITR_EL1);
    r.spe.write(
        SysReg::PMBLIMITR_EL1,
        pmblimitr_el1::FM.set(lim, pmblimitr_el1::FM_DISCARD),
    );
    r.spe.sync(&el1_owner());
    for i in 0..200 {
        r.sample(&load(0x1000 + 4 * i));
    }
    r.spe.psb_csync(&mut r.port);
    let s = r.spe.stats();
    assert_eq!(s.sampled, 200);
    assert_eq!(s.discarded, 200);
    assert_eq!(s.lost, 0, "discarded by configuration");
    assert_eq!(s.written, 0);
    assert_eq!(r.ptr(), BASE);
    assert_eq!(r.sr(), 0, "no buffer management event");
    assert!(!r.spe.irq_level());
    assert_eq!(r.port.writes(), 0);
}

#[test]
fn discard_mode_needs_v1p2() {
    let cfg = SpeConfig {
        pms_ver: PmsVer::V1p1,
        ..SpeConfig::default()
    };
    let mut r = Rig::new(cfg, 0x10000, 0x10000);
    let lim = r.spe.read(SysReg::PMBLIMITR_EL1);
    r.spe.write(
        SysReg::PMBLIMITR_EL1,
        pmblimitr_el1::FM.set(lim, pmblimitr_el1::FM_DISCARD),
    );
    r.spe.sync(&el1_owner());
    r.sample(&load(0x1000));
    r.spe.psb_csync(&mut r.port);
    assert_eq!(
        r.spe.stats().written,
        1,
        "FM = 0b10 is a fill mode before v1p2"
    );
}

#[test]
fn disabling_the_buffer_without_psb_csync_loses_queued_records() {
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x10000);
    r.sample(&load(0x1000));
    r.sample(&load(0x2000));
    r.spe.write(SysReg::PMBLIMITR_EL1, 0);
    // Still enabled for the unit until the ISB: PSB CSYNC would write them.
    assert_eq!(r.spe.queued(), 2);
    r.spe.sync(&el1_owner());
    assert_eq!(r.spe.queued(), 0);
    assert_eq!(r.spe.stats().lost, 2);
    r.spe.psb_csync(&mut r.port);
    assert_eq!(r.port.writes(), 0);
    assert!(r.spe.conserved());

    // The KVM sequence (psb_csync; dsb; disable; isb) keeps them.
    let mut r = Rig::new(SpeConfig::default(), 0x10000, 0x10000);
    r.sample(&load(0x1000));
    r.sample(&load(0x2000));
    r.spe.psb_csync(&mut r.port);
    r.spe.write(SysReg::PMBLIMITR_EL1, 0);
    r.spe.sync(&el1_owner());
    assert_eq!(r.spe.stats().written, 2);
    assert_eq!(r.spe.stats().lost, 0);
    assert_eq!(r.ptr(), BASE + 2 * record_len());
}
