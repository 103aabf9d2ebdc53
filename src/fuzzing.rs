//! The entry points of the fuzz targets under `fuzz/`: each takes arbitrary bytes and must
//! neither panic nor overflow its stack, whatever they hold. `cargo fuzz` drives them on nightly;
//! `cargo test` replays the checked-in corpora through these same functions on stable
//! (`tests/it/fuzz_corpus.rs`), so a crash once found and fixed stays fixed.

use crate::em::{Wire, decode_everything};

/// The XML wire format: `data`, read as the client reads an answer's bytes (UTF-8, lossily),
/// through every XML decoder and the error-body path.
pub fn xml(data: &[u8]) {
    decode_everything(Wire::Xml, &String::from_utf8_lossy(data));
}

/// The JSON wire format: `data`, read as the client reads an answer's bytes (UTF-8, lossily),
/// through every JSON decoder and the error-body path.
pub fn json(data: &[u8]) {
    decode_everything(Wire::Json, &String::from_utf8_lossy(data));
}
