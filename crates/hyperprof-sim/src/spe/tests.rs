//! Unit tests of the state machine (the public-API scenarios are in
//! `tests/spe_*.rs`).

use super::*;
use crate::op::OpKind;
use hyperprof_arch::{mdcr_el2, pmscr_el1};
use hyperprof_spe::packet::event;
use hyperprof_spe::RecordDecoder;

const BASE: u64 = 0x10_0000;
const E2PB_EL1: u64 = 0b11 << 12;

fn guest_ctl() -> Control {
    Control {
        el2_implemented: true,
        hcr_el2: 0,
        mdcr_el2: E2PB_EL1,
    }
}

fn op(pc: u64) -> Op {
    Op {
        pc,
        kind: OpKind::Load,
        data_va: 0x8000 + pc,
        target: 0,
        issue_latency: 2,
        total_latency: 10,
        translation_latency: 1,
        outcome: 0,
        data_source: 0,
        ldst_subclass: 0,
        cycles: 1,
    }
}

fn ctx(op_index: u64) -> SampleContext {
    SampleContext {
        el: ExceptionLevel::EL1,
        ns: true,
        op_index,
        data_pa: None,
        contextidr_el1: 0,
        contextidr_el2: 0,
        cntvct: 0,
        cntpct: 0,
    }
}

/// A unit sampling EL1 every `interval` (+1) operations into a buffer of
/// `size` bytes at BASE.
fn unit(cfg: SpeConfig, interval: u64, size: u64) -> Spe {
    let mut s = Spe::new(cfg);
    s.write(SysReg::PMBPTR_EL1, BASE);
    s.write(SysReg::PMBLIMITR_EL1, (BASE + size) | 1);
    s.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask());
    s.write(SysReg::PMSIRR_EL1, interval);
    s.sync(&guest_ctl());
    s
}

/// Runs to the next sample point and samples `o` there.
fn next_sample(s: &mut Spe, o: &Op, index: &mut u64, port: &mut dyn BufferPort) {
    let n = s.ops_to_sample();
    assert!((1..u64::MAX).contains(&n));
    s.skip(n - 1);
    *index += n;
    s.sample(o, &ctx(*index), port);
}

#[test]
fn reset_state_is_quiet() {
    let s = Spe::new(SpeConfig::default());
    for r in [
        SysReg::PMSCR_EL1,
        SysReg::PMSCR_EL2,
        SysReg::PMSICR_EL1,
        SysReg::PMBLIMITR_EL1,
        SysReg::PMBPTR_EL1,
        SysReg::PMBSR_EL1,
    ] {
        assert_eq!(s.read(r), 0, "{r:?}");
    }
    assert!(!s.irq_level());
    assert!(!s.profiling_buffer_enabled());
    assert!(!s.sampling_at(ExceptionLevel::EL1));
    assert_eq!(s.queued(), 0);
    assert_eq!(s.stats(), &SpeStats::default());
}

#[test]
fn sample_points_are_reload_plus_one_apart() {
    let mut s = unit(SpeConfig::default(), 0x100, 0x10000);
    let mut port = VecPort::new(BASE, 0x10000);
    // COUNT is 0: the next operation reloads, the 256 after it count down.
    assert_eq!(s.ops_to_sample(), 257);
    s.skip(1);
    assert_eq!(s.read(SysReg::PMSICR_EL1), 0x100);
    assert_eq!(s.ops_to_sample(), 256);
    s.skip(255);
    assert_eq!(s.ops_to_sample(), 1);
    s.sample(&op(0x1000), &ctx(257), &mut port);
    assert_eq!(s.stats().sampled, 1);
    assert_eq!(s.read(SysReg::PMSICR_EL1), 0);
    assert_eq!(s.ops_to_sample(), 257);
}

#[test]
fn sample_off_the_sample_point_only_counts() {
    let mut s = unit(SpeConfig::default(), 0x100, 0x10000);
    let mut port = VecPort::new(BASE, 0x10000);
    // The reload operation handed to sample(): counted, not sampled.
    s.sample(&op(0x1000), &ctx(1), &mut port);
    assert_eq!(s.stats().sampled, 0);
    assert_eq!(s.ops_to_sample(), 256);
    // Not sampling at EL2 (owner is EL1): COUNT does not move.
    let mut c = ctx(2);
    c.el = ExceptionLevel::EL2;
    s.sample(&op(0x1000), &c, &mut port);
    assert_eq!(s.ops_to_sample(), 256);
}

#[test]
fn interval_zero_without_rnd_never_samples() {
    let mut s = unit(SpeConfig::default(), 0, 0x10000);
    assert_eq!(s.ops_to_sample(), u64::MAX);
    s.skip(u64::MAX - 1);
    assert_eq!(s.read(SysReg::PMSICR_EL1), 0);
    assert_eq!(s.ops_to_sample(), u64::MAX);
}

#[test]
fn rnd_perturbs_only_the_low_byte_and_ops_to_sample_predicts_it() {
    let mut s = unit(SpeConfig::default(), 0x400 | 1, 0x10000);
    let mut seen_low = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let n = s.ops_to_sample();
        assert!((0x401..=0x500).contains(&n), "{n:#x}");
        s.skip(1); // the reload
        let count = s.read(SysReg::PMSICR_EL1);
        assert_eq!(count & !0xFF, 0x400);
        assert_eq!(count + 1, n, "the prediction is the reload drawn");
        seen_low.insert(count & 0xFF);
        s.skip(count); // run down to 0 (past the sample point)
    }
    assert!(
        seen_low.len() > 50,
        "the low byte varies: {}",
        seen_low.len()
    );
}

#[test]
fn collisions_set_coll_and_record_nothing() {
    let mut s = unit(SpeConfig::default(), 0x100, 0x10000);
    let mut port = VecPort::new(BASE, 0x10000);
    let mut slow = op(0x1000);
    slow.total_latency = 300; // in flight at the next sample point (257 later), not the one after
    let mut i = 0;
    next_sample(&mut s, &slow, &mut i, &mut port);
    next_sample(&mut s, &op(0x2000), &mut i, &mut port);
    assert_eq!(s.stats().collided, 1);
    assert_eq!(s.queued(), 1);
    let sr = s.read(SysReg::PMBSR_EL1);
    assert!(pmbsr_el1::COLL.is_set(sr));
    assert!(
        !pmbsr_el1::S.is_set(sr),
        "a collision is not a management event"
    );
    assert!(!s.irq_level());
    // Once the first sample completed, sampling resumes.
    for _ in 0..4 {
        next_sample(&mut s, &op(0x3000), &mut i, &mut port);
    }
    assert_eq!(s.stats().collided, 1);
    assert!(s.conserved());
}

#[test]
fn records_fit_the_maximum_size_and_the_alignment() {
    let cfg = SpeConfig {
        align_log2: 5,
        ..SpeConfig::default()
    };
    let mut s = unit(cfg, 0x100, 0x10000);
    s.write(
        SysReg::PMSCR_EL1,
        pmscr_el1::E1SPE.mask()
            | pmscr_el1::CX.mask()
            | pmscr_el1::TS.mask()
            | pmscr_el1::PA.mask(),
    );
    s.write(
        SysReg::PMSCR_EL2,
        hyperprof_arch::pmscr_el2::CX.mask() | hyperprof_arch::pmscr_el2::PA.mask(),
    );
    s.sync(&guest_ctl());
    let mut port = VecPort::new(BASE, 0x10000);
    let mut big = op(0x1000);
    big.outcome = 1 << event::SVE_EMPTY_PRED | 1 << event::LLC_MISS;
    big.data_source = 0x1234;
    let mut c = ctx(300);
    c.data_pa = Some(0x4000_0000);
    for _ in 0..256 {
        s.skip(s.ops_to_sample() - 1);
        c.op_index += 1000;
        s.sample(&big, &c, &mut port);
    }
    s.psb_csync(&mut port);
    let written = s.read(SysReg::PMBPTR_EL1) - BASE;
    assert_eq!(
        written,
        256 * 64,
        "every record padded to 32 and at most 64 bytes"
    );
    let recs: Vec<_> = RecordDecoder::new(&port.data()[..written as usize]).collect();
    assert_eq!(recs.len(), 256);
    for r in recs {
        let (off, r) = r.unwrap_or((usize::MAX, Record::default()));
        assert_eq!(off % 64, 0);
        // The data source packet was dropped to fit 64 bytes.
        assert_eq!(r.data_source, None);
        assert_eq!(r.context_el2, Some(0));
        assert!(r.has_event(event::SVE_EMPTY_PRED));
    }
}

#[test]
fn read_at_reports_programming_not_allowed_below_the_owner() {
    let mut s = Spe::new(SpeConfig::default());
    s.sync(&Control {
        el2_implemented: true,
        hcr_el2: 0,
        mdcr_el2: 0,
    });
    assert_eq!(s.buffer_owner(), ExceptionLevel::EL2);
    let p = pmbidr_el1::P.mask();
    assert_eq!(s.read_at(SysReg::PMBIDR_EL1, ExceptionLevel::EL1) & p, p);
    assert_eq!(s.read_at(SysReg::PMBIDR_EL1, ExceptionLevel::EL2) & p, 0);
    assert_eq!(s.read(SysReg::PMBIDR_EL1) & p, 0);
    s.sync(&guest_ctl());
    assert_eq!(s.read_at(SysReg::PMBIDR_EL1, ExceptionLevel::EL1) & p, 0);
    assert_eq!(
        s.read_at(SysReg::PMSIDR_EL1, ExceptionLevel::EL1),
        s.read(SysReg::PMSIDR_EL1)
    );
}

#[test]
fn owner_change_loses_queued_records() {
    let mut s = unit(SpeConfig::default(), 0x100, 0x10000);
    let mut port = VecPort::new(BASE, 0x10000);
    let mut i = 0;
    next_sample(&mut s, &op(0x1000), &mut i, &mut port);
    next_sample(&mut s, &op(0x1000), &mut i, &mut port);
    assert_eq!(s.queued(), 2);
    // Same owner, buffer still enabled: the records stay.
    s.sync(&guest_ctl());
    assert_eq!(s.queued(), 2);
    // The hypervisor takes the buffer back without PSB CSYNC: lost.
    s.sync(&Control {
        mdcr_el2: mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL2),
        ..guest_ctl()
    });
    assert_eq!(s.queued(), 0);
    assert_eq!(s.stats().lost, 2);
    assert_eq!(s.stats().discarded, 2);
    assert_eq!(port.writes(), 0);
    assert!(s.conserved());
}

#[test]
fn software_write_wins_over_a_pending_hardware_update() {
    let mut s = unit(SpeConfig::default(), 0x100, 0x10000);
    let mut port = VecPort::new(BASE, 0x10000);
    let mut i = 0;
    next_sample(&mut s, &op(0x1000), &mut i, &mut port);
    // Software moves the pointer; the queued record lands there after the sync.
    s.write(SysReg::PMBPTR_EL1, BASE + 0x800);
    s.psb_csync(&mut port);
    let len = s.stats().records_bytes;
    assert!(len > 0);
    assert_eq!(
        s.effective(SysReg::PMBPTR_EL1),
        BASE + len,
        "written at the old pointer"
    );
    assert!(port.bytes(BASE, 1).is_some_and(|b| b[0] != 0));
    assert_eq!(
        s.read(SysReg::PMBPTR_EL1),
        BASE + 0x800,
        "software's write pending"
    );
    s.sync(&guest_ctl());
    assert_eq!(s.effective(SysReg::PMBPTR_EL1), BASE + 0x800);
}
