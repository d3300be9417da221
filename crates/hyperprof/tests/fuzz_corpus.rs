//! The seed corpora of the cargo-fuzz targets in `fuzz/`, replayed through
//! the same entry points with the stable toolchain: each input must run
//! without a panic (a crash a fuzzer found is added to its corpus and stays
//! fixed).

use std::path::Path;

use hyperprof::fuzzing::TARGETS;

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, entry) in TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| entry(&data));
            assert!(r.is_ok(), "{name}: {} panicked", path.display());
            inputs += 1;
        }
        assert!(inputs >= 4, "{name}: only {inputs} seed inputs");
    }
}

#[test]
fn the_fuzz_targets_are_the_library_entry_points() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in TARGETS {
        let src = std::fs::read_to_string(targets.join(format!("{name}.rs"))).unwrap();
        assert!(
            src.contains(&format!("hyperprof::fuzzing::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs does not call hyperprof::fuzzing::{name}"
        );
    }
}
