//! cargo-fuzz target `report_json`: `hyperprof::fuzzing::report_json` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyperprof::fuzzing::report_json(data));
