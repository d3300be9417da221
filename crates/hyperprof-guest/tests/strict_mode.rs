//! Strict mode: a driver that leaves out a barrier the architecture needs
//! gets a wrong or incomplete result, as it would on silicon.

mod common;

use hyperprof_arch::ExceptionLevel;
use hyperprof_guest::drivers::spe::{Mistakes, SpeDriver, SpeSessionConfig};
use hyperprof_guest::host;
use hyperprof_sim::machine::Machine;
use hyperprof_sim::workload::by_name;
use hyperprof_spe::RecordDecoder;

#[test]
fn a_correct_driver_collects_every_record_written() {
    let mut m = common::machine(1);
    let r = &host::run(&mut m, &common::host(3_000_000)).unwrap()[0];
    let unit = r.spe_unit.as_ref().unwrap();
    let decoded = RecordDecoder::new(&r.spe_data).count() as u64;
    assert!(unit.written > 2000, "{unit:?}");
    assert_eq!(decoded, unit.written);
    assert_eq!(r.spe_data.len() as u64, unit.records_bytes);
}

#[test]
fn forgetting_the_drain_before_reading_pmbptr_loses_records() {
    let mut m = common::machine(1);
    let mut cfg = common::host(3_000_000);
    cfg.mistakes = Mistakes {
        no_drain_before_read: true,
        ..Mistakes::default()
    };
    let r = &host::run(&mut m, &cfg).unwrap()[0];
    let unit = r.spe_unit.as_ref().unwrap();
    // Without PSB CSYNC the records held in the unit never reach the buffer
    // when the driver reads PMBPTR; without DSB what did reach it is not yet
    // in memory: the driver's copy is short of what the unit produced, or
    // holds bytes that are not the records.
    let decoded = RecordDecoder::new(&r.spe_data)
        .filter(|x| x.is_ok())
        .count() as u64;
    let produced = unit.written + r.spe_queued;
    assert!(
        decoded < produced,
        "decoded {decoded} of {produced} produced: the mistake went unnoticed"
    );
}

/// A 16-page session sampling every 1024 operations without jitter.
fn el2_session(m: &mut Machine, mistakes: Mistakes) -> SpeDriver {
    let cfg = SpeSessionConfig {
        interval: 1024,
        jitter: false,
        ..SpeSessionConfig::default()
    };
    common::el2_session(m, 16, |_| true, None, cfg, mistakes)
}

/// Runs kernel code at EL2 right after the driver enabled sampling, with no
/// exception in between; returns the records collected at stop.
fn kernel_records_after_enable(mistakes: Mistakes) -> u64 {
    let mut m = common::machine(1);
    let mut d = el2_session(&mut m, mistakes);
    assert_eq!(m.pe(0).unwrap().el(), ExceptionLevel::EL2);
    let mut w = by_name("kernel-array-sum", 3).unwrap();
    let mut done = 0;
    m.run(0, w.as_mut(), 100_000, &mut done).unwrap();
    assert_eq!(done, 100_000);
    let mut c = m.cpu(0).unwrap();
    d.stop(&mut c).unwrap();
    RecordDecoder::new(&d.take_data()).count() as u64
}

#[test]
fn forgetting_the_isb_after_enabling_sampling_samples_nothing() {
    let correct = kernel_records_after_enable(Mistakes::default());
    // 100 000 operations at one sample per 1024.
    assert!((90..=98).contains(&correct), "{correct}");
    let forgot = kernel_records_after_enable(Mistakes {
        no_isb_after_enable: true,
        ..Mistakes::default()
    });
    // The enable never reached the unit: no context synchronization event
    // happened while the kernel ran.
    assert_eq!(forgot, 0);
}
