//! Building the record of a sampled operation: the sample storage of Arm
//! ARM `SPEStartSample()` / `SPESampleLoadStore()` / `SPECompleteSample()`
//! and the packets of `SPEConstructRecord()` (J1.1.1.76-78, J1.1.1.103-122),
//! as a [`Record`] that [`Record::encode`] turns into bytes.
//!
//! Verified against the pseudocode:
//! - PC and branch target packets carry the current EL and NS
//!   (`SPESampleAddAddressPCVirtual()`, `SPEBranch()`); the branch target is
//!   recorded only for a taken branch.
//! - CONTEXT packets (`CollectContextIDR1()`, `CollectContextIDR2()`):
//!   CONTEXTIDR_EL1 when PMSCR_EL1.CX, not at EL2, and not with
//!   `HCR_EL2.TGE == 1`; CONTEXTIDR_EL2 when EL2 is enabled and
//!   PMSCR_EL2.CX. Neither depends on who owns the buffer.
//! - Physical address (`CollectPhysicalAddress()`): with EL2,
//!   `PMSCR_EL2.PA && (owner == EL2 || PMSCR_EL1.PA)`; without, PMSCR_EL1.PA.
//! - Timestamp (`CollectTimeStamp()`): PMSCR_EL2.TS when EL2 owns the
//!   buffer, PMSCR_EL1.TS otherwise. With EL2, PMSCR_EL2.PCT == 0b00 forces
//!   the virtual count (the physical one when `IsInHost()`), whatever EL1
//!   asks; PMSCR_EL2.PCT == 0b01 gives the physical count to an EL2-owned
//!   buffer and lets PMSCR_EL1.PCT decide for an EL1-owned one
//!   (0b00 virtual or physical in host, 0b01 physical).
//! - Counters saturate at 0xFFF, or 0xFFFF with 16-bit counters
//!   (`SPEConstructRecord()`); total and issue latency are always recorded,
//!   translation latency for loads and stores.
//! - Events bit 6 (NOT_TAKEN) is `is_conditional && !cond_pass`
//!   (`SPECompleteSample()`).
//! - Operation type (`SPEConstructClass()`): OTHER `Zeros(5):simd:fp:cond`,
//!   general-purpose load/store `Zeros(7):st`, branch
//!   `Zeros(3):cr:gcs:indirect:cond` (cr = 0b00 without FEAT_SPE_CRR).
//!
//! Choices: the data source packet is recorded for loads (PMSIDR_EL1.LDS)
//! with the operation's 16-bit source; the data VA keeps all 64 bits (as
//! with TBI); the PA packet has CH = 0 and PAT = 0 (no MTE); events are the
//! operation's [`Op::spe_events`] limited to [`reported_events_mask`].

use hyperprof_arch::predicates::{profiling_buffer_owner, ExceptionLevel};
use hyperprof_arch::{hcr_el2, pmscr_el1, pmscr_el2, PmsVer};
use hyperprof_spe::packet::{address, event};
use hyperprof_spe::record::{CodeAddress, OpType, PhysAddr, Record};
use hyperprof_spe::OpClass;

use super::config::reported_events_mask;
use crate::op::{Op, OpKind};

/// What the PE knows about the operation at the sample point that the
/// operation itself does not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleContext {
    /// The Exception level the operation executed at.
    pub el: ExceptionLevel,
    /// Non-secure state.
    pub ns: bool,
    /// The operation's position in the PE's stream (operations executed so
    /// far, this one included); collisions compare these.
    pub op_index: u64,
    /// The data physical address of a load or store, when its translation
    /// is known.
    pub data_pa: Option<u64>,
    /// CONTEXTIDR_EL1 now.
    pub contextidr_el1: u32,
    /// CONTEXTIDR_EL2 now.
    pub contextidr_el2: u32,
    /// The virtual count (CNTVCT_EL0) now.
    pub cntvct: u64,
    /// The physical count (CNTPCT_EL0) now.
    pub cntpct: u64,
}

/// The register state that shapes a record: the unit's synchronized
/// sampling controls and the EL2 controls (see [`record_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordControls {
    /// SPE version (selects the reported events).
    pub pms_ver: PmsVer,
    /// 16-bit (true) or 12-bit saturating counters.
    pub countsize_16bit: bool,
    /// EL2 is implemented and enabled.
    pub el2_implemented: bool,
    /// HCR_EL2 (E2H, TGE).
    pub hcr_el2: u64,
    /// MDCR_EL2 (E2PB: the buffer owner).
    pub mdcr_el2: u64,
    /// PMSCR_EL1 (CX, PA, TS, PCT).
    pub pmscr_el1: u64,
    /// PMSCR_EL2 (CX, PA, TS, PCT).
    pub pmscr_el2: u64,
}

/// Which counter a TIMESTAMP packet holds (`CollectTimeStamp()`; the
/// offset-physical choice needs FEAT_ECV, which is not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampSource {
    /// No timestamp: the record ends with END.
    None,
    /// The virtual count, CNTVCT_EL0.
    Virtual,
    /// The physical count, CNTPCT_EL0.
    Physical,
}

impl RecordControls {
    fn owner(&self) -> ExceptionLevel {
        profiling_buffer_owner(self.el2_implemented, self.mdcr_el2)
    }

    fn tge(&self) -> bool {
        self.el2_implemented && hcr_el2::TGE.is_set(self.hcr_el2)
    }

    /// `ELIsInHost(el)`: EL2 with `HCR_EL2.E2H == 1`, or EL0 with
    /// `HCR_EL2.{E2H, TGE} == {1, 1}`.
    pub fn is_in_host(&self, el: ExceptionLevel) -> bool {
        let e2h = self.el2_implemented && hcr_el2::E2H.is_set(self.hcr_el2);
        match el {
            ExceptionLevel::EL2 => e2h,
            ExceptionLevel::EL0 => e2h && self.tge(),
            _ => false,
        }
    }

    /// `CollectContextIDR1()` for an operation at `el`.
    pub fn collects_context_el1(&self, el: ExceptionLevel) -> bool {
        el != ExceptionLevel::EL2 && !self.tge() && pmscr_el1::CX.is_set(self.pmscr_el1)
    }

    /// `CollectContextIDR2()`.
    pub fn collects_context_el2(&self) -> bool {
        self.el2_implemented && pmscr_el2::CX.is_set(self.pmscr_el2)
    }

    /// `CollectPhysicalAddress()`.
    pub fn collects_physical_address(&self) -> bool {
        if self.el2_implemented {
            pmscr_el2::PA.is_set(self.pmscr_el2)
                && (self.owner() == ExceptionLevel::EL2 || pmscr_el1::PA.is_set(self.pmscr_el1))
        } else {
            pmscr_el1::PA.is_set(self.pmscr_el1)
        }
    }

    /// `CollectTimeStamp()` for an operation at `el` (FEAT_ECV absent, so
    /// PCT bit 1 reads as 0).
    pub fn timestamp_source(&self, el: ExceptionLevel) -> TimestampSource {
        let owner = self.owner();
        let ts = if owner == ExceptionLevel::EL2 {
            pmscr_el2::TS.is_set(self.pmscr_el2)
        } else {
            pmscr_el1::TS.is_set(self.pmscr_el1)
        };
        if !ts {
            return TimestampSource::None;
        }
        let virtual_or_host = if self.is_in_host(el) {
            TimestampSource::Physical
        } else {
            TimestampSource::Virtual
        };
        if self.el2_implemented {
            if pmscr_el2::PCT.get(self.pmscr_el2) & 1 == 0 {
                return virtual_or_host;
            }
            if owner == ExceptionLevel::EL2 {
                return TimestampSource::Physical;
            }
        }
        if pmscr_el1::PCT.get(self.pmscr_el1) & 1 == 0 {
            virtual_or_host
        } else {
            TimestampSource::Physical
        }
    }

    fn counter_max(&self) -> u16 {
        if self.countsize_16bit {
            0xFFFF
        } else {
            0x0FFF
        }
    }
}

/// The OP TYPE packet for an operation kind (`SPEConstructClass()`).
/// `not_taken` marks an OTHER operation that failed its condition check
/// (it is then a conditional operation); `ldst_subclass` is a load's or
/// store's [`Op::ldst_subclass`].
pub fn op_type(kind: OpKind, not_taken: bool, ldst_subclass: u8) -> OpType {
    match kind {
        OpKind::Load => OpType {
            class: OpClass::LoadStore,
            payload: ldst_subclass & !1,
        },
        OpKind::Store => OpType {
            class: OpClass::LoadStore,
            payload: ldst_subclass | 1,
        },
        OpKind::Branch {
            conditional,
            indirect,
            ..
        } => OpType {
            class: OpClass::Branch,
            payload: u8::from(indirect) << 1 | u8::from(conditional),
        },
        OpKind::Other => OpType {
            class: OpClass::Other,
            payload: u8::from(not_taken),
        },
    }
}

/// The EVENTS packet bits of an operation: [`Op::spe_events`] limited to
/// the events a unit of version `ver` reports, with NOT_TAKEN recomputed
/// for branches from the operation kind (`conditional && !taken`).
pub fn events_for(op: &Op, ver: PmsVer) -> u64 {
    let mut e = op.spe_events() & reported_events_mask(ver);
    if let OpKind::Branch {
        conditional, taken, ..
    } = op.kind
    {
        let bit = 1u64 << event::NOT_TAKEN;
        if conditional && !taken {
            e |= bit;
        } else {
            e &= !bit;
        }
    }
    e
}

/// The record of `op`, sampled in context `ctx` under the controls `rc`
/// (the caller has checked that `StatisticalProfilingEnabled(ctx.el)`).
/// A pure function of its inputs.
pub fn record_for(op: &Op, ctx: &SampleContext, rc: &RecordControls) -> Record {
    let el = ctx.el.as_u8();
    let max = rc.counter_max();
    let code = |addr: u64| CodeAddress {
        addr: address::addr(addr),
        el,
        ns: ctx.ns,
    };
    let events = events_for(op, rc.pms_ver);
    let mut rec = Record {
        pc: Some(code(op.pc)),
        op: Some(op_type(
            op.kind,
            events & 1 << event::NOT_TAKEN != 0,
            op.ldst_subclass,
        )),
        events: Some(events),
        issue_latency: Some(op.issue_latency.min(max)),
        total_latency: Some(op.total_latency.min(max)),
        ..Record::default()
    };
    if rc.collects_context_el1(ctx.el) {
        rec.context_el1 = Some(ctx.contextidr_el1);
    }
    if rc.collects_context_el2() {
        rec.context_el2 = Some(ctx.contextidr_el2);
    }
    match op.kind {
        OpKind::Load | OpKind::Store => {
            rec.data_va = Some(op.data_va);
            rec.translation_latency = Some(op.translation_latency.min(max));
            if rc.collects_physical_address() {
                rec.data_pa = ctx.data_pa.map(|pa| PhysAddr {
                    addr: address::addr(pa),
                    ns: ctx.ns,
                    ch: false,
                    pat: 0,
                });
            }
            if op.kind == OpKind::Load {
                rec.data_source = Some(u64::from(op.data_source));
            }
        }
        OpKind::Branch { taken: true, .. } => rec.branch_target = Some(code(op.target)),
        OpKind::Branch { .. } | OpKind::Other => {}
    }
    rec.timestamp = match rc.timestamp_source(ctx.el) {
        TimestampSource::None => None,
        TimestampSource::Virtual => Some(ctx.cntvct),
        TimestampSource::Physical => Some(ctx.cntpct),
    };
    rec
}

/// Removes the `step`-th optional packet (in the order: data source,
/// CONTEXTIDR_EL2, CONTEXTIDR_EL1, translation latency, issue latency, data
/// PA, branch target, data VA, events, total latency, timestamp, op type)
/// so that a record fits the maximum record size. Returns false when there
/// is nothing left to remove (PC and END alone always fit).
///
/// Only a 64-byte maximum with every packet present and events beyond bit
/// 15 can exceed the limit; the architecture requires records not to exceed
/// 2^PMSIDR_EL1.MaxSize bytes, and the order is the model's choice.
pub(crate) fn trim(rec: &mut Record, step: usize) -> bool {
    match step {
        0 => rec.data_source = None,
        1 => rec.context_el2 = None,
        2 => rec.context_el1 = None,
        3 => rec.translation_latency = None,
        4 => rec.issue_latency = None,
        5 => rec.data_pa = None,
        6 => rec.branch_target = None,
        7 => rec.data_va = None,
        8 => rec.events = None,
        9 => rec.total_latency = None,
        10 => rec.timestamp = None,
        11 => rec.op = None,
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperprof_arch::{mdcr_el2, pct};

    fn load() -> Op {
        Op {
            pc: 0xffff_8000_1234_5678,
            kind: OpKind::Load,
            data_va: 0xffff_0000_dead_b000,
            target: 0,
            issue_latency: 3,
            total_latency: 5000,
            translation_latency: 7,
            outcome: 1 << event::L1D_REFILL,
            data_source: 0x8,
            ldst_subclass: 0,
            cycles: 10,
        }
    }

    fn ctx(el: ExceptionLevel) -> SampleContext {
        SampleContext {
            el,
            ns: true,
            op_index: 100,
            data_pa: Some(0x8000_1000),
            contextidr_el1: 0x11,
            contextidr_el2: 0x22,
            cntvct: 1000,
            cntpct: 5000,
        }
    }

    fn rc() -> RecordControls {
        RecordControls {
            pms_ver: PmsVer::V1p2,
            countsize_16bit: false,
            el2_implemented: true,
            hcr_el2: 0,
            mdcr_el2: mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1),
            pmscr_el1: 0,
            pmscr_el2: 0,
        }
    }

    #[test]
    fn load_record_has_the_op_fields() {
        let r = record_for(&load(), &ctx(ExceptionLevel::EL1), &rc());
        let pc = r.pc.unwrap_or(CodeAddress {
            addr: 0,
            el: 9,
            ns: false,
        });
        assert_eq!(pc.addr, 0x00ff_8000_1234_5678);
        assert_eq!(pc.virtual_address(), 0xffff_8000_1234_5678);
        assert_eq!((pc.el, pc.ns), (1, true));
        assert_eq!(r.data_va, Some(0xffff_0000_dead_b000));
        assert_eq!(r.total_latency, Some(0xFFF), "12-bit saturation");
        assert_eq!(r.issue_latency, Some(3));
        assert_eq!(r.translation_latency, Some(7));
        assert_eq!(r.data_source, Some(8));
        assert_eq!(r.data_pa, None, "PA not enabled");
        assert_eq!(r.timestamp, None);
        assert_eq!((r.context_el1, r.context_el2), (None, None));
        assert!(r.has_event(event::RETIRED) && r.has_event(event::L1D_REFILL));
        let t = r.op.map(|o| (o.class, o.payload));
        assert_eq!(t, Some((OpClass::LoadStore, 0)));
        let r16 = record_for(
            &load(),
            &ctx(ExceptionLevel::EL1),
            &RecordControls {
                countsize_16bit: true,
                ..rc()
            },
        );
        assert_eq!(r16.total_latency, Some(5000));
    }

    #[test]
    fn branches_record_targets_only_when_taken() {
        let mut op = load();
        op.kind = OpKind::Branch {
            conditional: true,
            indirect: true,
            taken: false,
        };
        op.target = 0x4000;
        op.outcome = 0;
        let r = record_for(&op, &ctx(ExceptionLevel::EL0), &rc());
        assert_eq!(r.branch_target, None);
        assert!(r.has_event(event::NOT_TAKEN));
        assert_eq!(r.data_va, None);
        assert_eq!(r.data_source, None);
        assert_eq!(r.op.map(|o| o.payload), Some(0b11));
        op.kind = OpKind::Branch {
            conditional: false,
            indirect: false,
            taken: true,
        };
        op.outcome = 1 << event::NOT_TAKEN;
        let r = record_for(&op, &ctx(ExceptionLevel::EL0), &rc());
        assert_eq!(r.branch_target.map(|t| (t.addr, t.el)), Some((0x4000, 0)));
        assert!(!r.has_event(event::NOT_TAKEN));
        assert_eq!(
            r.op.map(|o| (o.class, o.payload)),
            Some((OpClass::Branch, 0))
        );
    }

    #[test]
    fn events_are_limited_to_the_version() {
        let mut op = load();
        op.outcome = 1 << event::ALIGNMENT | 1 << event::SVE_EMPTY_PRED | 1 << 40;
        let v0 = events_for(&op, PmsVer::V1p0);
        assert_eq!(
            v0 & (1 << event::ALIGNMENT | 1 << event::SVE_EMPTY_PRED | 1 << 40),
            0
        );
        let v1 = events_for(&op, PmsVer::V1p1);
        assert_ne!(v1 & 1 << event::ALIGNMENT, 0);
        assert_ne!(v1 & 1 << event::SVE_EMPTY_PRED, 0);
        assert_eq!(v1 & 1 << 40, 0);
    }

    #[test]
    fn contexts_follow_collect_context_idr() {
        let mut c = rc();
        c.pmscr_el1 = pmscr_el1::CX.mask();
        c.pmscr_el2 = pmscr_el2::CX.mask();
        let r = record_for(&load(), &ctx(ExceptionLevel::EL1), &c);
        assert_eq!((r.context_el1, r.context_el2), (Some(0x11), Some(0x22)));
        let r = record_for(&load(), &ctx(ExceptionLevel::EL2), &c);
        assert_eq!((r.context_el1, r.context_el2), (None, Some(0x22)));
        c.hcr_el2 = hcr_el2::TGE.mask();
        let r = record_for(&load(), &ctx(ExceptionLevel::EL0), &c);
        assert_eq!(r.context_el1, None, "TGE suppresses CONTEXTIDR_EL1");
        let no_el2 = RecordControls {
            el2_implemented: false,
            ..c
        };
        let r = record_for(&load(), &ctx(ExceptionLevel::EL1), &no_el2);
        assert_eq!((r.context_el1, r.context_el2), (Some(0x11), None));
    }

    #[test]
    fn physical_address_needs_el2_permission() {
        let mut c = rc();
        c.pmscr_el1 = pmscr_el1::PA.mask();
        assert!(
            !c.collects_physical_address(),
            "EL1 owner needs PMSCR_EL2.PA too"
        );
        c.pmscr_el2 = pmscr_el2::PA.mask();
        assert!(c.collects_physical_address());
        let r = record_for(&load(), &ctx(ExceptionLevel::EL1), &c);
        assert_eq!(r.data_pa.map(|p| (p.addr, p.ns)), Some((0x8000_1000, true)));
        c.pmscr_el1 = 0;
        assert!(!c.collects_physical_address());
        c.mdcr_el2 = mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL2);
        assert!(
            c.collects_physical_address(),
            "EL2 owner: PMSCR_EL2.PA alone"
        );
        c.el2_implemented = false;
        assert!(!c.collects_physical_address());
    }

    #[test]
    fn timestamp_choice_table() {
        use ExceptionLevel::{EL0, EL1, EL2};
        use TimestampSource::{None as No, Physical as P, Virtual as V};
        let el1_owner = mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1);
        let el2_owner = mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL2);
        let ts1 = |p: u64| pmscr_el1::TS.mask() | pmscr_el1::PCT.value(p);
        let ts2 = |p: u64| pmscr_el2::TS.mask() | pmscr_el2::PCT.value(p);
        let vhe = hcr_el2::E2H.mask() | hcr_el2::TGE.mask();
        // (el, el2, hcr, mdcr, pmscr_el1, pmscr_el2, expected)
        let cases = [
            (EL1, true, 0, el1_owner, 0, ts2(pct::PHYS), No),
            (EL1, true, 0, el1_owner, ts1(pct::PHYS), ts2(pct::PHYS), P),
            (EL1, true, 0, el1_owner, ts1(pct::VIRT), ts2(pct::PHYS), V),
            // PMSCR_EL2.PCT == 0b00 limits EL1 to the virtual count.
            (EL1, true, 0, el1_owner, ts1(pct::PHYS), 0, V),
            // EL2-owned buffer: PMSCR_EL2.TS and PCT decide.
            (EL1, true, 0, el2_owner, ts1(pct::PHYS), 0, No),
            (EL1, true, 0, el2_owner, 0, ts2(pct::PHYS), P),
            (EL1, true, 0, el2_owner, 0, ts2(pct::VIRT), V),
            // In host (VHE): "virtual" is the physical count.
            (EL2, true, vhe, el2_owner, 0, ts2(pct::VIRT), P),
            (EL0, true, vhe, el2_owner, 0, ts2(pct::VIRT), P),
            (EL2, true, 0, el2_owner, 0, ts2(pct::VIRT), V),
            // Without EL2 only PMSCR_EL1 matters.
            (EL1, false, 0, el2_owner, ts1(pct::PHYS), 0, P),
            (EL1, false, 0, el2_owner, ts1(pct::VIRT), ts2(pct::PHYS), V),
            // PCT bit 1 is RES0 without FEAT_ECV: GUEST (0b11) acts as PHYS.
            (EL1, true, 0, el1_owner, ts1(pct::GUEST), ts2(pct::GUEST), P),
        ];
        for (i, (el, el2, hcr, mdcr, p1, p2, want)) in cases.into_iter().enumerate() {
            let c = RecordControls {
                el2_implemented: el2,
                hcr_el2: hcr,
                mdcr_el2: mdcr,
                pmscr_el1: p1,
                pmscr_el2: p2,
                ..rc()
            };
            assert_eq!(c.timestamp_source(el), want, "case {i}");
            let r = record_for(&load(), &ctx(el), &c);
            let ts = match want {
                No => None,
                V => Some(1000),
                P => Some(5000),
            };
            assert_eq!(r.timestamp, ts, "case {i}");
        }
    }

    #[test]
    fn trim_ends() {
        let mut r = record_for(&load(), &ctx(ExceptionLevel::EL1), &rc());
        let mut step = 0;
        while trim(&mut r, step) {
            step += 1;
        }
        assert_eq!(step, 12);
        assert!(r.pc.is_some());
        assert_eq!(r.op, None);
        assert_eq!(r.data_va, None);
    }
}
