//! The console cookie of a `RELEASE_DISTRIBUTION=none` node started without one, as an Erlang
//! node writes `~/.erlang.cookie`: the node makes a random cookie, writes it to a file only its
//! user can read (mode 0600, in a directory of mode 0700), and `minotaur remote`/`rpc` run by
//! that user on that host read it. One file per node name (see
//! [`crate::config::console_cookie_file`]), so two nodes on one host never clash. Owns the
//! file's creation and reading; where it lives is the configuration's business.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the cookie file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CookieFileError {
    /// Creating the directory or writing the file failed.
    #[error("cannot write the console cookie to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading failed (most often: no node of that name runs here, as this user).
    #[error(
        "cannot read the console cookie {path}: {source} (is the node running on this host, as this user? or set RELEASE_COOKIE)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Someone else may read it: it is not trusted, as OpenSSH refuses such keys.
    #[error(
        "the console cookie {path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// A fresh random cookie: 32 random bytes, hex.
pub fn generate() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `cookie` to `path` with mode 0600, creating its directory with mode 0700. The file
/// is written beside and renamed into place, so a reader never sees half a cookie, and a file
/// left by an earlier run (whatever its mode) is replaced, not reused.
pub fn write(path: &Path, cookie: &str) -> Result<(), CookieFileError> {
    let fail = |source| CookieFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    // The mode given at creation is filtered by the umask; 0600 is what is promised.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(cookie.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Reads the cookie at `path`, refusing a file that group or others may read.
pub fn read(path: &Path) -> Result<String, CookieFileError> {
    let fail = |source| CookieFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(fail)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CookieFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let cookie = std::fs::read_to_string(path).map_err(fail)?;
    Ok(cookie.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_0600_in_a_0700_directory_and_read_back() {
        let root =
            std::env::temp_dir().join(format!("minotaur-cookie-test-{}", std::process::id()));
        let path = root.join("sub").join("minotaur@10.0.0.1.cookie");
        let cookie = generate();
        assert_eq!(cookie.len(), 64);
        assert_ne!(cookie, generate());
        write(&path, &cookie).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(read(&path).unwrap(), cookie);
        // A second run replaces it.
        write(&path, "second").unwrap();
        assert_eq!(read(&path).unwrap(), "second");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("readable by group or others (mode 644)"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
