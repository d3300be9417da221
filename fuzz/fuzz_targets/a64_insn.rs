//! cargo-fuzz target `a64_insn`: `hyperprof::fuzzing::a64_insn` on arbitrary bytes (the A64 decoder and engine).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hyperprof::fuzzing::a64_insn(data));
