//! cargo-fuzz target `scenario`: `hyperprof::fuzzing::scenario` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyperprof::fuzzing::scenario(data));
