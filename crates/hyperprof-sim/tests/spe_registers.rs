//! SPE unit registers: reset values, write masks per version, read-only ID
//! registers, strict-mode synchronization, and the PMBIRQ level.

use hyperprof_arch::predicates::ExceptionLevel;
use hyperprof_arch::{
    maxbuffsize, mdcr_el2, pmbidr_el1, pmblimitr_el1, pmbsr_el1, pmscr_el1, pmscr_el2, pmsfcr_el1,
    pmsicr_el1, pmsidr_el1, pmsirr_el1, PmsVer, SysReg,
};
use hyperprof_sim::spe::{filterable_events_mask, Control, Spe, SpeConfig};

const SPE_REGS: [SysReg; 12] = hyperprof_sim::spe::REGISTERS;

const VERSIONS: [PmsVer; 6] = [
    PmsVer::V1p0,
    PmsVer::V1p1,
    PmsVer::V1p2,
    PmsVer::V1p3,
    PmsVer::V1p4,
    PmsVer::V1p5,
];

fn cfg(ver: PmsVer) -> SpeConfig {
    SpeConfig {
        pms_ver: ver,
        ..SpeConfig::default()
    }
}

fn el1_owner() -> Control {
    Control {
        el2_implemented: true,
        hcr_el2: 0,
        mdcr_el2: mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1),
    }
}

#[test]
fn reset_values_are_zero_at_every_version() {
    for ver in VERSIONS {
        let s = Spe::new(cfg(ver));
        for r in SPE_REGS {
            assert_eq!(s.read(r), 0, "{ver:?} {r:?}");
            assert_eq!(s.effective(r), 0, "{ver:?} {r:?}");
        }
        assert!(!s.irq_level());
        assert_eq!(s.queued(), 0);
    }
}

/// The expected writable bits of each register, written out from the Arm
/// ARM layouts (independently of `SpeConfig::write_mask`).
fn expected_mask(ver: PmsVer, reg: SysReg) -> u64 {
    let fne = ver >= PmsVer::V1p2;
    let fds = ver >= PmsVer::V1p4;
    match reg {
        // E0SPE, E1SPE, CX, PA, TS, PCT<0> (PCT<1> RES0 without FEAT_ECV).
        SysReg::PMSCR_EL1 | SysReg::PMSCR_EL2 => 0b0111_1011,
        SysReg::PMSNEVFR_EL1 if fne => filterable_events_mask(ver),
        SysReg::PMSNEVFR_EL1 => 0,
        SysReg::PMSICR_EL1 => 0xFFFF_FFFF,
        SysReg::PMSIRR_EL1 => 0xFFFF_FF01,
        SysReg::PMSFCR_EL1 => {
            0x7_0007 | if fne { 1 << 3 } else { 0 } | if fds { 1 << 4 } else { 0 }
        }
        SysReg::PMSEVFR_EL1 => filterable_events_mask(ver),
        SysReg::PMSLATFR_EL1 => 0xFFF,
        SysReg::PMBLIMITR_EL1 => !0xFFF | 0b111 | if fne { 1 << 5 } else { 0 },
        SysReg::PMBPTR_EL1 => u64::MAX,
        SysReg::PMBSR_EL1 => 0xFC0F_FFFF,
        SysReg::PMSDSFR_EL1 if fds => u64::MAX,
        _ => 0,
    }
}

#[test]
fn write_masks_drop_res0_and_missing_features() {
    for ver in VERSIONS {
        for r in SPE_REGS {
            let mut s = Spe::new(cfg(ver));
            s.write(r, u64::MAX);
            let want = expected_mask(ver, r);
            assert_eq!(s.read(r), want, "{ver:?} {r:?} all ones");
            assert_eq!(s.config().write_mask(r), want, "{ver:?} {r:?} mask");
            s.write(r, 0);
            assert_eq!(s.read(r), 0, "{ver:?} {r:?} zero");
        }
    }
}

#[test]
fn sixteen_bit_counters_widen_minlat_and_alignment_masks_pmbptr() {
    let mut s = Spe::new(SpeConfig {
        countsize_16bit: true,
        align_log2: 6,
        ..SpeConfig::default()
    });
    s.write(SysReg::PMSLATFR_EL1, u64::MAX);
    assert_eq!(s.read(SysReg::PMSLATFR_EL1), 0xFFFF);
    s.write(SysReg::PMBPTR_EL1, 0x1234_5678);
    assert_eq!(s.read(SysReg::PMBPTR_EL1), 0x1234_5640);
}

#[test]
fn id_registers_describe_the_configuration_and_ignore_writes() {
    let c = SpeConfig {
        pms_ver: PmsVer::V1p5,
        interval_field: 0b0100,
        max_record_log2: 7,
        max_buff_size: 64 << 20,
        align_log2: 3,
        countsize_16bit: true,
        ..SpeConfig::default()
    };
    let mut s = Spe::new(c);
    let idr = s.read(SysReg::PMSIDR_EL1);
    assert_eq!(
        pmsidr_el1::interval_from_field(pmsidr_el1::INTERVAL.get(idr)),
        Some(1024)
    );
    assert_eq!(pmsidr_el1::max_record_size(idr), 128);
    assert_eq!(
        pmsidr_el1::COUNTSIZE.get(idr),
        pmsidr_el1::COUNTSIZE_16_BIT_SAT
    );
    for f in [
        pmsidr_el1::FE,
        pmsidr_el1::FT,
        pmsidr_el1::FL,
        pmsidr_el1::FnE,
        pmsidr_el1::FDS,
        pmsidr_el1::LDS,
    ] {
        assert!(f.is_set(idr), "{f:?}");
    }
    assert!(!pmsidr_el1::ERND.is_set(idr));
    let bidr = s.read(SysReg::PMBIDR_EL1);
    assert_eq!(pmbidr_el1::alignment(bidr), 8);
    assert_eq!(maxbuffsize::size(bidr), 64 << 20);
    assert!(!pmbidr_el1::P.is_set(bidr));
    s.write(SysReg::PMSIDR_EL1, 0);
    s.write(SysReg::PMBIDR_EL1, u64::MAX);
    s.sync(&el1_owner());
    assert_eq!(s.read(SysReg::PMSIDR_EL1), idr);
    assert_eq!(s.read(SysReg::PMBIDR_EL1), bidr);
    // Non-SPE registers are ignored and read 0.
    s.write(SysReg::PMCR_EL0, u64::MAX);
    assert_eq!(s.read(SysReg::PMCR_EL0), 0);

    let old = Spe::new(cfg(PmsVer::V1p1));
    let idr = old.read(SysReg::PMSIDR_EL1);
    assert!(!pmsidr_el1::FnE.is_set(idr) && !pmsidr_el1::FDS.is_set(idr));
    assert_eq!(
        pmsidr_el1::COUNTSIZE.get(idr),
        pmsidr_el1::COUNTSIZE_12_BIT_SAT
    );
    // MaxBuffSize exists only from v1p5.
    let v4 = Spe::new(SpeConfig {
        pms_ver: PmsVer::V1p4,
        max_buff_size: 1 << 20,
        ..SpeConfig::default()
    });
    assert_eq!(maxbuffsize::get(v4.read(SysReg::PMBIDR_EL1)), 0);
}

#[test]
fn writes_reach_the_unit_only_at_a_context_synchronization_event() {
    let mut s = Spe::new(SpeConfig::default());
    s.sync(&el1_owner());
    s.write(SysReg::PMBLIMITR_EL1, 0x2000_0000 | pmblimitr_el1::E.mask());
    s.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask());
    s.write(SysReg::PMSICR_EL1, 7);
    // Visible to software at once ...
    assert_eq!(s.read(SysReg::PMSCR_EL1), pmscr_el1::E1SPE.mask());
    assert_eq!(s.read(SysReg::PMSICR_EL1), 7);
    // ... but the unit still runs on the old values.
    assert_eq!(s.effective(SysReg::PMSCR_EL1), 0);
    assert!(!s.profiling_buffer_enabled());
    assert!(!s.sampling_at(ExceptionLevel::EL1));
    assert_eq!(s.ops_to_sample(), u64::MAX);
    s.sync(&el1_owner());
    assert!(s.profiling_buffer_enabled());
    assert!(s.sampling_at(ExceptionLevel::EL1));
    assert!(!s.sampling_at(ExceptionLevel::EL0));
    assert!(!s.sampling_at(ExceptionLevel::EL2));
    // Software's PMSICR write sets COUNT.
    assert_eq!(s.ops_to_sample(), 7);
    // Clearing E takes effect only at the next sync, too.
    s.write(SysReg::PMBLIMITR_EL1, 0);
    assert!(s.sampling_at(ExceptionLevel::EL1));
    s.sync(&el1_owner());
    assert!(!s.sampling_at(ExceptionLevel::EL1));
}

#[test]
fn el2_controls_come_from_the_last_sync() {
    let mut s = Spe::new(SpeConfig::default());
    s.write(SysReg::PMBLIMITR_EL1, 0x2000_0000 | 1);
    s.write(
        SysReg::PMSCR_EL1,
        pmscr_el1::E0SPE.mask() | pmscr_el1::E1SPE.mask(),
    );
    s.write(
        SysReg::PMSCR_EL2,
        pmscr_el2::E2SPE.mask() | pmscr_el2::E0HSPE.mask(),
    );
    // EL2 owns the buffer (E2PB == 0b00): EL2, EL1 and EL0 may be sampled.
    let host = Control {
        el2_implemented: true,
        hcr_el2: 0,
        mdcr_el2: 0,
    };
    s.sync(&host);
    assert_eq!(s.buffer_owner(), ExceptionLevel::EL2);
    assert!(s.sampling_at(ExceptionLevel::EL2));
    assert!(s.sampling_at(ExceptionLevel::EL1));
    // Guest owns it: EL2 is never sampled into it.
    s.sync(&el1_owner());
    assert_eq!(s.buffer_owner(), ExceptionLevel::EL1);
    assert!(!s.sampling_at(ExceptionLevel::EL2));
    assert!(s.sampling_at(ExceptionLevel::EL1));
    assert_eq!(s.control(), &el1_owner());
}

#[test]
fn pmbirq_follows_the_visible_service_bit() {
    let mut s = Spe::new(SpeConfig::default());
    s.write(SysReg::PMBSR_EL1, pmbsr_el1::S.mask());
    assert!(s.irq_level(), "software setting S asserts PMBIRQ");
    s.sync(&el1_owner());
    assert!(s.irq_level());
    // S = 1 stops profiling even with E set.
    s.write(SysReg::PMBLIMITR_EL1, 0x2000_0000 | 1);
    s.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask());
    s.sync(&el1_owner());
    assert!(!s.profiling_buffer_enabled());
    assert!(s.profiling_stopped());
    assert!(!s.sampling_at(ExceptionLevel::EL1));
    s.write(SysReg::PMBSR_EL1, 0);
    assert!(!s.irq_level(), "cleared as soon as software writes 0");
    s.sync(&el1_owner());
    assert!(s.sampling_at(ExceptionLevel::EL1));
}

#[test]
fn field_helpers_agree_with_the_masks() {
    let mut s = Spe::new(SpeConfig::default());
    s.write(
        SysReg::PMSIRR_EL1,
        pmsirr_el1::INTERVAL.value(0x10) | pmsirr_el1::RND.mask() | 0xFE,
    );
    assert_eq!(s.read(SysReg::PMSIRR_EL1), 0x1001);
    s.write(SysReg::PMSICR_EL1, pmsicr_el1::ECOUNT.value(0xAB) | 0x55);
    assert_eq!(
        s.read(SysReg::PMSICR_EL1),
        0x55,
        "ECOUNT is RES0 without ERnd"
    );
    s.write(
        SysReg::PMSFCR_EL1,
        pmsfcr_el1::FP.mask() | pmsfcr_el1::Bm.mask() | pmsfcr_el1::FT.mask(),
    );
    assert_eq!(
        s.read(SysReg::PMSFCR_EL1),
        pmsfcr_el1::FT.mask(),
        "no FEAT_SPE_EFT"
    );
}
