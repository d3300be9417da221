//! cargo-fuzz target `guest_image`: `hyperprof::fuzzing::guest_image` on arbitrary bytes (guest images (ELF or raw) and the device tree's place).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyperprof::fuzzing::guest_image(data));
