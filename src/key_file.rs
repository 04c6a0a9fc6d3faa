//! Private key files (the CA key, the journal signing key): who may read them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Warns when anyone outside the owner and group can read a private key.
/// Group bits alone are not warned about: a Kubernetes Secret mounted with
/// an `fsGroup` is group-readable by design, and the group is the pod's.
pub fn warn_if_world_readable(path: &Path, what: &str) {
    let Ok(m) = std::fs::metadata(path) else {
        return;
    };
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "{what} is readable by other users; it should be 0600 (chmod 600 it)"
        );
    } else if mode & 0o070 != 0 {
        tracing::debug!(path = %path.display(), mode = format!("{mode:o}"), "{what} is readable by its group");
    }
}
