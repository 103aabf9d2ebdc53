//! The fuzz corpora under `fuzz/corpus/`, replayed through the targets' own entry points, so that
//! every input a fuzzing run kept (crashes it found included, once fixed) is run by `cargo test`
//! on stable.

use std::path::PathBuf;

/// Runs `target` on every file of `fuzz/corpus/NAME`; the corpus must not be empty.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "{} holds no input", dir.display());
    for path in entries {
        // A fuzzing run in this checkout replaces inputs with smaller ones as it goes.
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", path.display()),
        };
        // A panic names the input, so it can be run again under `cargo fuzz run`.
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{} panicked on {}", name, path.display());
    }
}

#[test]
fn xml_corpus() {
    replay("xml", embatch::fuzzing::xml)
}

#[test]
fn json_corpus() {
    replay("json", embatch::fuzzing::json)
}

#[test]
fn plan_corpus() {
    replay("plan", embatch::fuzzing::plan);
}
