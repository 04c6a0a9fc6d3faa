//! The recorder's Ed25519 signing key: loaded from a PKCS#8 PEM file (in
//! Kubernetes, a mounted Secret), or created on first start with mode 0600.
//! Auditors get the public key as an SPKI PEM (`sidetrace journal export-key`).

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {0}: {1}")]
    Io(String, std::io::Error),
    #[error("signing key {0} is not an Ed25519 PKCS#8 PEM private key ({1})")]
    Format(String, String),
    #[error("public key {0} is not an Ed25519 SPKI PEM public key ({1})")]
    PublicFormat(String, String),
}

/// The default key location: beside the journal.
pub fn default_path(journal: &Path) -> PathBuf {
    journal
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("signing-key.pem")
}

/// Loads the key, or creates it (0600) if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            crate::key_file::warn_if_world_readable(path, "the journal signing key");
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Format(name, e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Format(name.clone(), e.to_string()))?;
            write_private(path, pem.as_bytes()).map_err(|e| KeyError::Io(name.clone(), e))?;
            tracing::info!(path = %name, key_id = %key_id(&key.verifying_key()), "created the journal signing key");
            Ok(key)
        }
        Err(e) => Err(KeyError::Io(name, e)),
    }
}

/// Reads an existing key without creating one.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let name = path.display().to_string();
    let pem = std::fs::read_to_string(path).map_err(|e| KeyError::Io(name.clone(), e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Format(name, e.to_string()))
}

pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 public key always encodes")
}

pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let name = path.display().to_string();
    let pem = std::fs::read_to_string(path).map_err(|e| KeyError::Io(name.clone(), e))?;
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| KeyError::PublicFormat(name, e.to_string()))
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_0600_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing-key.pem");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let public = dir.path().join("public.pem");
        std::fs::write(&public, public_pem(&a.verifying_key())).unwrap();
        assert_eq!(read_public(&public).unwrap(), a.verifying_key());
        assert_eq!(key_id(&a.verifying_key()).len(), 16);
    }
}
