//! Where a run's node logs go.

use std::path::PathBuf;

/// The log directory of the run `name`: `$TMPDIR/minotaur-e2e/<name>`, emptied first (as far
/// as it can be) so that what is in it after a run is that run's. Not created here: the
/// cluster creates it and reports a failure as an [`crate::Error`].
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("minotaur-e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
