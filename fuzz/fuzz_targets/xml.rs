#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| embatch::fuzzing::xml(data));
