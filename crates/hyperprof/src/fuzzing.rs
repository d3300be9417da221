//! Entry points for fuzzing: each takes arbitrary bytes, drives one parser
//! the CLI exposes to user input, and must return without panicking. The
//! cargo-fuzz targets in `fuzz/` call them, and the `fuzz_corpus` test
//! replays the committed seed corpora through them with a stable toolchain.

use std::path::Path;

use hyperprof_spe::perf_data::PerfData;
use hyperprof_spe::text::{write_dump_line, DumpWalker, Sink};
use hyperprof_spe::{decode, RecordDecoder};

/// A fuzz target's entry point.
pub type Entry = fn(&[u8]);

/// The fuzz targets, by the name of their corpus directory.
pub const TARGETS: [(&str, Entry); 4] = [
    ("spe_packet", spe_packet),
    ("perf_data", perf_data),
    ("scenario", scenario),
    ("report_json", report_json),
];

struct Discard(usize);

impl Sink for Discard {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// The SPE packet decoder, the record decoder and perf's dump text.
pub fn spe_packet(data: &[u8]) {
    let mut pos = 0;
    while pos < data.len() {
        match decode(&data[pos..], pos) {
            Ok((_, n)) => pos += n.max(1),
            Err(_) => pos += 1,
        }
    }
    for r in RecordDecoder::new(data) {
        if r.is_err() {
            break;
        }
    }
    let mut out = Discard(0);
    for item in DumpWalker::new(data, 0) {
        write_dump_line(&mut out, data, &item);
    }
}

/// The perf.data reader, and the packets of every buffer it finds.
pub fn perf_data(data: &[u8]) {
    if let Ok(pd) = PerfData::parse(data) {
        for t in pd.aux_traces() {
            match t {
                Ok(t) => spe_packet(t.data),
                Err(_) => break,
            }
        }
    }
}

/// The scenario parser and its validation.
pub fn scenario(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = crate::scenario::Scenario::parse(text, Path::new("fuzz.toml")) {
            let _ = crate::run::from_scenario::setup(&s);
        }
    }
}

/// report.json's parser and checks, and the text `hyperprof report` prints.
pub fn report_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = crate::run::artifacts::parse_report(text) {
            let _ = crate::run::system::render(&r);
        }
    }
}
