//! Other builds of Minotaur for the tests that run them beside this one: the previous release
//! (`rel/previous-release`), built from its own sources, and the `schema-v2` build of this
//! source (the state-migration test's "next version").
//!
//! Each is taken from its environment variable when set (CI builds it once, before the
//! tests), else built here on first use (once per test process, whatever the number of tests
//! asking) by `rel/build-previous.sh` or cargo, into the workspace's own target directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The variable naming the previous release's `minotaur` binary.
pub const PREVIOUS_BIN_VAR: &str = "MINOTAUR_PREVIOUS_BIN";
/// The variable naming the `schema-v2` binary.
pub const V2_BIN_VAR: &str = "MINOTAUR_V2_BIN";
/// The app version the `schema-v2` binary is built with: newer than this release, older
/// than the next.
pub const V2_VERSION: &str = "0.3.0-schema2";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `rel/build-previous.sh ARGS` and returns the path it prints.
///
/// # Panics
/// When the build fails (the test cannot run without it), with the script's own error.
fn build_previous(args: &[&str]) -> PathBuf {
    let root = workspace();
    let out = Command::new(root.join("rel/build-previous.sh"))
        .args(args)
        .current_dir(&root)
        .env("CARGO", env!("CARGO"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run rel/build-previous.sh: {e}"));
    assert!(
        out.status.success(),
        "rel/build-previous.sh {} failed (its error is above)",
        args.join(" ")
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    PathBuf::from(path)
}

/// The previous release's `minotaur`: `MINOTAUR_PREVIOUS_BIN`, else built from the commit
/// `rel/previous-release` names. Blocking: call it from `spawn_blocking` in async tests.
pub fn previous_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os(PREVIOUS_BIN_VAR) {
        Some(p) => PathBuf::from(p),
        None => build_previous(&["bin"]),
    })
    .clone()
}

/// The previous release's app version, as `rel/previous-release` says (`<commit> <version>`).
pub fn previous_version() -> String {
    let text = std::fs::read_to_string(workspace().join("rel/previous-release"))
        .unwrap_or_else(|e| panic!("cannot read rel/previous-release: {e}"));
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// `minotaur` as of an earlier `commit` of main (before any release), renamed
/// `<version>-<commit>` (see `rel/build-previous.sh bin-at`): `MINOTAUR_BIN_<COMMIT>` (CI
/// builds it before the tests, e.g. `MINOTAUR_BIN_367B6AD`), else built here. Blocking.
pub fn binary_at(commit: &str) -> PathBuf {
    let var = format!("MINOTAUR_BIN_{}", commit.to_uppercase());
    match std::env::var_os(&var) {
        Some(p) => PathBuf::from(p),
        None => build_previous(&["bin-at", commit]),
    }
}

/// This source built with `--features schema-v2` as app version [`V2_VERSION`]:
/// `MINOTAUR_V2_BIN`, else built here into `target/v2`. Blocking.
pub fn v2_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os(V2_BIN_VAR) {
            return PathBuf::from(p);
        }
        let root = workspace();
        let target = root.join("target/v2");
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .env("MINOTAUR_APP_VERSION", V2_VERSION)
            .args([
                "build",
                "-p",
                "minotaur",
                "--features",
                "schema-v2",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
        assert!(status.success(), "building the schema-v2 binary failed");
        target.join("debug/minotaur")
    })
    .clone()
}
