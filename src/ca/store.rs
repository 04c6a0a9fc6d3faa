//! The CA's files on disk: `ca-key.pem` and `ca-cert.pem` in one directory.
//!
//! Guarantees: a file sidetrace writes is whole or absent. Each is written to
//! a temporary file in the same directory, created with its final mode (the
//! key 0600, never chmod-ed afterwards), synced, then published under its
//! final name. CA files are published with `hard_link`, which never replaces
//! an existing file, so two processes creating the CA at once cannot end up
//! with one's key beside the other's certificate: the loser learns
//! `AlreadyExists` and loads the winner's. A directory sidetrace creates is
//! 0700. Bounds: nothing is read but these two small files.
//! Failure: every error names the file; a crash leaves at most a stray
//! `.*.tmp.*` file, never a truncated key.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use super::CaError;

pub(super) const KEY_FILE: &str = "ca-key.pem";
pub const CERT_FILE: &str = "ca-cert.pem";

/// What the directory holds.
pub(super) enum Found {
    Both {
        key: String,
        cert: String,
    },
    Neither,
    /// Exactly one of the two files: (present, missing).
    One(PathBuf, PathBuf),
}

pub(super) fn read(dir: &Path) -> Result<Found, CaError> {
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    let key = read_optional(&key_path)?;
    let cert = read_optional(&cert_path)?;
    Ok(match (key, cert) {
        (Some(key), Some(cert)) => {
            crate::key_file::warn_if_world_readable(&key_path, "the CA private key");
            Found::Both { key, cert }
        }
        (None, None) => Found::Neither,
        (Some(_), None) => Found::One(key_path, cert_path),
        (None, Some(_)) => Found::One(cert_path, key_path),
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, CaError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CaError::io(path, e)),
    }
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist.
pub(super) fn create_dir(dir: &Path) -> Result<(), CaError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CaError::io(dir, e))
}

/// Whether `publish_new` wrote the file or found one already there.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Published {
    Written,
    AlreadyExists,
}

/// Writes `dir/name` with `mode`, atomically, only if it does not exist.
pub(super) fn publish_new(
    dir: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<Published, CaError> {
    let path = dir.join(name);
    let tmp = write_temp(&path, data, mode)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir);
            Ok(Published::Written)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Published::AlreadyExists),
        Err(e) => Err(CaError::io(&path, e)),
    }
}

/// Writes `path` with `mode`, atomically, replacing any existing file.
pub(super) fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = write_temp(path, data, mode)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(CaError::io(path, e));
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Removes a file this process just published (undoing a half-made CA).
pub(super) fn remove(path: &Path) -> Result<(), CaError> {
    std::fs::remove_file(path).map_err(|e| CaError::io(path, e))
}

/// A new file beside `path`, created with `mode`, holding `data`, synced.
fn write_temp(path: &Path, data: &[u8], mode: u32) -> Result<PathBuf, CaError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(CaError::io(path, e))
        }
    }
}

/// Makes the new directory entry durable; best effort (some file systems
/// refuse to sync a directory).
fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn publish_new_never_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            publish_new(d, "f", b"one", 0o600).unwrap(),
            Published::Written
        );
        assert_eq!(
            publish_new(d, "f", b"two", 0o600).unwrap(),
            Published::AlreadyExists
        );
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"one");
        assert_eq!(mode(&d.join("f")), 0o600);
        replace(&d.join("g"), b"x", 0o644).unwrap();
        replace(&d.join("g"), b"y", 0o644).unwrap();
        assert_eq!(std::fs::read(d.join("g")).unwrap(), b"y");
        let names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn created_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("a/b/ca");
        create_dir(&ca).unwrap();
        assert_eq!(mode(&ca), 0o700);
        create_dir(&ca).unwrap();
    }
}
