//! The plan reader on arbitrary bytes; see `embatch::fuzzing::plan`.

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| embatch::fuzzing::plan(data));
