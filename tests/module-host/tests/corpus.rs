//! The committed seeds of the fuzz target `module` (tests/fuzz/corpus/module) through the same
//! function the fuzzer runs: `make module-test` replays them on stable Rust.
use std::path::PathBuf;

use sts_gateway_module_host::scenario::{from_bytes, fuzz_one};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/module");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read seed"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn seeds_decode_to_the_events_they_name_and_run_clean() {
    let files = corpus();
    assert!(
        files.len() >= 3,
        "seeds in tests/fuzz/corpus/module: {}",
        files.len()
    );
    for (name, data) in &files {
        let ops = from_bytes(data);
        assert!(!ops.is_empty(), "{name}: no event");
        fuzz_one(data);
    }
}
