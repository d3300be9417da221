//! cargo-fuzz target `perf_data`: `hyperprof::fuzzing::perf_data` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyperprof::fuzzing::perf_data(data));
