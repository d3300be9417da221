//! cargo-fuzz target `spe_packet`: `hyperprof::fuzzing::spe_packet` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyperprof::fuzzing::spe_packet(data));
