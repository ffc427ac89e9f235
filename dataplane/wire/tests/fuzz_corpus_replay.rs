//! Replays the committed fuzz corpora (`dataplane/wire/fuzz/corpus/<target>/`) through the fuzz
//! target bodies in `weft_wire::fuzzing`. This is the stable, fast regression check for the fuzz
//! targets; continuous fuzzing itself needs `cargo fuzz` (see `scripts/fuzz-smoke.sh`).

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("datagram", weft_wire::fuzzing::datagram),
    ("reassembly", weft_wire::fuzzing::reassembly),
    ("dictionary", weft_wire::fuzzing::dictionary),
    ("world", weft_wire::fuzzing::world),
    ("identity", weft_wire::fuzzing::identity),
    ("addresses", weft_wire::fuzzing::addresses),
    ("tcp_tunnel", weft_wire::fuzzing::tcp_tunnel),
    ("netconf", weft_wire::fuzzing::netconf),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    files
}

fn replay(target: &str, f: Target) {
    let files = corpus_files(target);
    let mut bytes = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        bytes += data.len();
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!(
                "fuzz target {target} panicked on {} (reproduce: cd dataplane/wire/fuzz && \
                 cargo fuzz run {target} -s none {})",
                path.display(),
                path.display()
            );
        }
    }
    println!(
        "fuzz corpus {target}: {} inputs, {bytes} bytes replayed",
        files.len()
    );
}

#[test]
fn datagram() {
    replay(TARGETS[0].0, TARGETS[0].1);
}

#[test]
fn reassembly() {
    replay(TARGETS[1].0, TARGETS[1].1);
}

#[test]
fn dictionary() {
    replay(TARGETS[2].0, TARGETS[2].1);
}

#[test]
fn world() {
    replay(TARGETS[3].0, TARGETS[3].1);
}

#[test]
fn identity() {
    replay(TARGETS[4].0, TARGETS[4].1);
}

#[test]
fn addresses() {
    replay(TARGETS[5].0, TARGETS[5].1);
}

#[test]
fn tcp_tunnel() {
    replay(TARGETS[6].0, TARGETS[6].1);
}

#[test]
fn netconf() {
    replay(TARGETS[7].0, TARGETS[7].1);
}

/// Every fuzz target has a corpus directory, and every corpus directory is a known target.
#[test]
fn corpus_directories_match_targets() {
    let root = corpus_dir("");
    let mut on_disk: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("corpus root {} is missing: {e}", root.display()))
        .map(|e| e.expect("read corpus root entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    known.sort();
    assert_eq!(on_disk, known, "corpus directories vs. fuzz targets");
}
