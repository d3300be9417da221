//! Sample filtering: Arm ARM `SPECollectRecord()` and the filters it calls,
//! `SPEFilterByEvents()`, `SPEFilterByType()`, `SPEFilterByLatency()`,
//! `SPEFilterByDataSource()` (J1.1.1.75, J1.1.1.84-87).
//!
//! Verified against the pseudocode:
//! - FE: keep the record only if every event selected in PMSEVFR_EL1 (within
//!   the implemented event mask) is set in the record's events.
//! - FnE (FEAT_SPE_FnE): keep it only if none of the events selected in
//!   PMSNEVFR_EL1 is set.
//! - FT: with B/LD/ST not all zero, keep it only if it is of a selected
//!   type (an OR of the type bits; FEAT_SPE_EFT's FP/SIMD bits and the
//!   `*m` AND-masks are not modelled, so they are RES0).
//! - FL: keep it only if its total latency is at least PMSLATFR_EL1.MINLAT.
//! - FDS (FEAT_SPE_FDS): for loads with a data source, keep it only if
//!   PMSDSFR_EL1 bit `source[5:0]` is set.
//!
//! CONSTRAINED UNPREDICTABLE cases (`Unpredictable_BADPMSFCR`) and the
//! model's choice: FE with PMSEVFR_EL1 == 0, FnE with PMSNEVFR_EL1 == 0, FT
//! with B/LD/ST == 0, FL with MINLAT == 0 each filter nothing; FE and FnE
//! selecting a common event reject every record.

use hyperprof_arch::{pmsfcr_el1, pmslatfr_el1, PmsVer};
use hyperprof_spe::record::Record;
use hyperprof_spe::OpClass;

use super::config::filterable_events_mask;

/// Why a sampled record was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterReject {
    /// PMSFCR_EL1.FE: an event PMSEVFR_EL1 requires is missing.
    Event,
    /// PMSFCR_EL1.FnE: an event PMSNEVFR_EL1 excludes is present.
    InvertedEvent,
    /// PMSFCR_EL1.FT: not one of the selected operation types.
    Type,
    /// PMSFCR_EL1.FL: total latency below PMSLATFR_EL1.MINLAT.
    Latency,
    /// PMSFCR_EL1.FDS: data source not selected in PMSDSFR_EL1.
    DataSource,
}

/// The filter registers, as the unit has synchronized them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilterControls {
    /// SPE version (FnE from v1p2, FDS from v1p4; the event mask).
    pub pms_ver: PmsVer,
    /// PMSFCR_EL1.
    pub pmsfcr: u64,
    /// PMSEVFR_EL1.
    pub pmsevfr: u64,
    /// PMSNEVFR_EL1 (ignored without FnE).
    pub pmsnevfr: u64,
    /// PMSLATFR_EL1.
    pub pmslatfr: u64,
    /// PMSDSFR_EL1 (ignored without FDS).
    pub pmsdsfr: u64,
}

impl FilterControls {
    /// `SPECollectRecord()`: `Ok` when `rec` is to be written, otherwise the
    /// first filter (in the order above) that rejects it. `total_latency` is
    /// the operation's latency before counter saturation, as the pseudocode
    /// filters on the sample counter.
    pub fn check(&self, rec: &Record, total_latency: u16) -> Result<(), FilterReject> {
        let fcr = self.pmsfcr;
        let mask = filterable_events_mask(self.pms_ver);
        let events = rec.events.unwrap_or(0) & mask;
        let fe = pmsfcr_el1::FE.is_set(fcr);
        let fne = self.pms_ver.has_fne() && pmsfcr_el1::FnE.is_set(fcr);
        let evfr = self.pmsevfr & mask;
        let nevfr = if self.pms_ver.has_fne() {
            self.pmsnevfr & mask
        } else {
            0
        };
        if fe && fne && evfr & nevfr != 0 {
            return Err(FilterReject::Event);
        }
        if fe && evfr != 0 && !events & evfr != 0 {
            return Err(FilterReject::Event);
        }
        if fne && nevfr != 0 && events & nevfr != 0 {
            return Err(FilterReject::InvertedEvent);
        }

        let op = rec.op;
        let is_load = op.is_some_and(|o| o.class == OpClass::LoadStore && !o.is_store());
        if pmsfcr_el1::FT.is_set(fcr) {
            let ctrl = (fcr
                & (pmsfcr_el1::B.mask() | pmsfcr_el1::LD.mask() | pmsfcr_el1::ST.mask()))
                >> pmsfcr_el1::B.lsb();
            let flags = match op {
                Some(o) if o.class == OpClass::Branch => 0b001,
                Some(o) if o.class == OpClass::LoadStore && o.is_store() => 0b100,
                Some(o) if o.class == OpClass::LoadStore => 0b010,
                _ => 0,
            };
            if ctrl != 0 && flags & ctrl == 0 {
                return Err(FilterReject::Type);
            }
        }

        if pmsfcr_el1::FL.is_set(fcr) {
            let min = pmslatfr_el1::MINLAT.get(self.pmslatfr);
            if min != 0 && u64::from(total_latency) < min {
                return Err(FilterReject::Latency);
            }
        }

        if self.pms_ver.has_fds() && pmsfcr_el1::FDS.is_set(fcr) && is_load {
            if let Some(source) = rec.data_source {
                if self.pmsdsfr >> (source & 0x3F) & 1 == 0 {
                    return Err(FilterReject::DataSource);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperprof_spe::packet::event;
    use hyperprof_spe::record::OpType;

    fn rec(class: OpClass, payload: u8, events: u64) -> Record {
        Record {
            op: Some(OpType { class, payload }),
            events: Some(events),
            data_source: (class == OpClass::LoadStore && payload == 0).then_some(9),
            ..Record::default()
        }
    }

    fn fc(ver: PmsVer, pmsfcr: u64) -> FilterControls {
        FilterControls {
            pms_ver: ver,
            pmsfcr,
            pmsevfr: 0,
            pmsnevfr: 0,
            pmslatfr: 0,
            pmsdsfr: 0,
        }
    }

    const REFILL: u64 = 1 << event::L1D_REFILL;
    const RETIRED: u64 = 1 << event::RETIRED;
    const MISPRED: u64 = 1 << event::MISPREDICTED;

    #[test]
    fn no_filter_keeps_everything() {
        let f = fc(PmsVer::V1p4, 0);
        assert_eq!(f.check(&rec(OpClass::Other, 0, 0), 0), Ok(()));
        assert_eq!(f.check(&Record::default(), 0), Ok(()));
    }

    #[test]
    fn event_filter_requires_all_selected_events() {
        let mut f = fc(PmsVer::V1p2, pmsfcr_el1::FE.mask());
        f.pmsevfr = REFILL | RETIRED;
        assert_eq!(
            f.check(&rec(OpClass::LoadStore, 0, REFILL | RETIRED), 0),
            Ok(())
        );
        assert_eq!(
            f.check(&rec(OpClass::LoadStore, 0, RETIRED), 0),
            Err(FilterReject::Event)
        );
        // Unimplemented (unfilterable) bits are ignored: bit 2 before v1p4.
        f.pmsevfr = 1 << event::L1D_ACCESS;
        assert_eq!(f.check(&rec(OpClass::LoadStore, 0, 0), 0), Ok(()));
        // PMSEVFR_EL1 == 0: the CONSTRAINED UNPREDICTABLE case filters nothing.
        f.pmsevfr = 0;
        assert_eq!(f.check(&rec(OpClass::Other, 0, 0), 0), Ok(()));
    }

    #[test]
    fn inverted_event_filter_needs_fne() {
        let mut f = fc(PmsVer::V1p2, pmsfcr_el1::FnE.mask());
        f.pmsnevfr = MISPRED;
        assert_eq!(
            f.check(&rec(OpClass::Branch, 0, RETIRED | MISPRED), 0),
            Err(FilterReject::InvertedEvent)
        );
        assert_eq!(f.check(&rec(OpClass::Branch, 0, RETIRED), 0), Ok(()));
        // Before v1p2 FnE does not exist.
        f.pms_ver = PmsVer::V1p1;
        assert_eq!(
            f.check(&rec(OpClass::Branch, 0, RETIRED | MISPRED), 0),
            Ok(())
        );
        // FE and FnE on a common event reject everything (the model's choice).
        let mut both = fc(PmsVer::V1p2, pmsfcr_el1::FE.mask() | pmsfcr_el1::FnE.mask());
        both.pmsevfr = RETIRED;
        both.pmsnevfr = RETIRED;
        assert_eq!(
            both.check(&rec(OpClass::Other, 0, RETIRED), 0),
            Err(FilterReject::Event)
        );
    }

    #[test]
    fn type_filter_ors_the_selected_types() {
        let ld = rec(OpClass::LoadStore, 0, RETIRED);
        let st = rec(OpClass::LoadStore, 1, RETIRED);
        let br = rec(OpClass::Branch, 1, RETIRED);
        let other = rec(OpClass::Other, 0, RETIRED);
        let f = |bits: u64| fc(PmsVer::V1p2, pmsfcr_el1::FT.mask() | bits);
        let ld_st = f(pmsfcr_el1::LD.mask() | pmsfcr_el1::ST.mask());
        assert_eq!(ld_st.check(&ld, 0), Ok(()));
        assert_eq!(ld_st.check(&st, 0), Ok(()));
        assert_eq!(ld_st.check(&br, 0), Err(FilterReject::Type));
        assert_eq!(ld_st.check(&other, 0), Err(FilterReject::Type));
        let b = f(pmsfcr_el1::B.mask());
        assert_eq!(b.check(&br, 0), Ok(()));
        assert_eq!(b.check(&ld, 0), Err(FilterReject::Type));
        let st_only = f(pmsfcr_el1::ST.mask());
        assert_eq!(st_only.check(&ld, 0), Err(FilterReject::Type));
        assert_eq!(st_only.check(&st, 0), Ok(()));
        // FT with no type selected filters nothing (CONSTRAINED UNPREDICTABLE choice).
        assert_eq!(f(0).check(&other, 0), Ok(()));
    }

    #[test]
    fn latency_filter_uses_minlat() {
        let mut f = fc(PmsVer::V1p0, pmsfcr_el1::FL.mask());
        f.pmslatfr = 100;
        let r = rec(OpClass::Other, 0, RETIRED);
        assert_eq!(f.check(&r, 99), Err(FilterReject::Latency));
        assert_eq!(f.check(&r, 100), Ok(()));
        f.pmslatfr = 0;
        assert_eq!(f.check(&r, 0), Ok(()));
    }

    #[test]
    fn data_source_filter_needs_fds_and_a_load() {
        let mut f = fc(PmsVer::V1p4, pmsfcr_el1::FDS.mask());
        f.pmsdsfr = 1 << 9;
        let ld = rec(OpClass::LoadStore, 0, RETIRED);
        assert_eq!(f.check(&ld, 0), Ok(()));
        f.pmsdsfr = 1 << 8;
        assert_eq!(f.check(&ld, 0), Err(FilterReject::DataSource));
        // Stores carry no data source: never filtered by it.
        assert_eq!(f.check(&rec(OpClass::LoadStore, 1, RETIRED), 0), Ok(()));
        // Without FEAT_SPE_FDS the bit does nothing.
        f.pms_ver = PmsVer::V1p2;
        assert_eq!(f.check(&ld, 0), Ok(()));
    }
}
