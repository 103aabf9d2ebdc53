//! The entry points of the fuzz targets under `fuzz/`: each takes arbitrary bytes and must
//! neither panic nor overflow its stack, whatever they hold. `cargo fuzz` drives them on nightly;
//! `cargo test` replays the checked-in corpora through these same functions on stable
//! (`tests/it/fuzz_corpus.rs`), so a crash once found and fixed stays fixed.
