//! Where tests keep logs, and tracing output for the test runner.

use std::path::PathBuf;

pub use local_cluster::logs::fresh_dir;

/// A fresh directory for the logs of `test`: `$TMPDIR/minotaur-e2e/<test>`, emptied first so
/// that what is in it after a run is that run's.
///
/// # Panics
/// When the directory cannot be created.
pub fn test_dir(test: &str) -> PathBuf {
    let dir = local_cluster::logs::fresh_dir(test);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create the log directory {}: {e}", dir.display());
    }
    dir
}

/// Sends this process's tracing output, filtered by `RUST_LOG`, to the test runner (shown
/// for failed tests). For in-process tests only: binaries install their own subscriber. Later
/// calls do nothing.
pub fn capture() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
