//! The identity assertion's signing keys: the key file, rotation, and the
//! public keys published as a JWKS.
//!
//! The file (`identity.key_file`, by default `identity-keys.json` in the
//! store directory) is JSON, mode 0600, holding every key still published:
//! the one the gate signs with (the newest that is not retired) and those
//! retired by a rotation whose assertions may not all have expired yet. A
//! rotation retires the signing key, adds a new one, and drops keys retired
//! long enough ago that nothing they signed is still valid. The file is
//! replaced whole (written beside it, synced, renamed), so a reader never
//! sees half of one and a crash leaves the old or the new file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::EncodingKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// How long a retired key stays published after the longest an assertion it
/// signed can live: room for clocks that disagree and for a verifier that
/// fetched the key set just before the rotation.
pub const RETIRED_KEY_GRACE_SECS: u64 = 60;

/// Why the key file could not be read, made or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("identity.key_file {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("identity.key_file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// One signing key as the file keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The key's ID (its RFC 7638 thumbprint), in every assertion's header.
    pub kid: String,
    /// The Ed25519 private key, PKCS#8 PEM (as `openssl genpkey -algorithm
    /// ed25519` writes one).
    pub private_key: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created: u64,
    /// When a rotation retired it; `None` for the signing key.
    pub retired: Option<u64>,
}

/// The key file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub keys: Vec<StoredKey>,
}

/// A key ready to sign with, and its public half.
pub struct LoadedKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public: Jwk,
    pub retired: Option<u64>,
}

/// Leaves the private key out: a debug line must not carry it.
impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// Names the key only: the private half is never printed.
impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedKey({})", self.kid)
    }
}

impl StoredKey {
    /// A new key from the operating system's randomness (an Ed25519 private
    /// key is 32 random bytes).
    pub fn generate(now: u64) -> Result<StoredKey, String> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        // PKCS#8 version 1, the private key alone: what `openssl genpkey
        // -algorithm ed25519` writes, and what OpenSSL and Node read (the
        // version 2 form, with the public key inside, they do not).
        let pem = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: seed,
            public_key: None,
        }
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("cannot encode a new key: {e}"))?;
        let mut key = StoredKey {
            kid: String::new(),
            private_key: pem.to_string(),
            created: now,
            retired: None,
        };
        key.kid = key
            .load()?
            .public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string())?;
        Ok(key)
    }

    /// The key decoded: its signing key and public JWK (with `kid`).
    pub fn load(&self) -> Result<LoadedKey, String> {
        let signing = SigningKey::from_pkcs8_pem(&self.private_key)
            .map_err(|e| format!("key {}: not an Ed25519 PKCS#8 PEM key ({e})", self.kid))?;
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| format!("key {}: {e}", self.kid))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let public = Jwk {
            common: CommonParameters {
                key_id: Some(self.kid.clone()),
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..CommonParameters::default()
            },
            // RFC 8037 §2: an Ed25519 public key is its 32 bytes, base64url.
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
            }),
        };
        Ok(LoadedKey {
            kid: self.kid.clone(),
            encoding,
            public,
            retired: self.retired,
        })
    }
}

impl KeyFile {
    /// A file with one new signing key.
    pub fn new(now: u64) -> Result<KeyFile, String> {
        Ok(KeyFile {
            keys: vec![StoredKey::generate(now)?],
        })
    }

    /// The key to sign with: the newest one not retired.
    pub fn signing(&self) -> Option<&StoredKey> {
        self.keys.iter().rev().find(|k| k.retired.is_none())
    }

    /// Retires every signing key, adds a new one, and drops keys no
    /// assertion can still need ([`KeyFile::prune`]). The new key's ID.
    pub fn rotate(&mut self, now: u64, ttl_secs: u64) -> Result<String, String> {
        let new = StoredKey::generate(now)?;
        let kid = new.kid.clone();
        for k in &mut self.keys {
            k.retired.get_or_insert(now);
        }
        self.keys.push(new);
        self.prune(now, ttl_secs);
        Ok(kid)
    }

    /// Drops retired keys whose every assertion has expired (with
    /// [`RETIRED_KEY_GRACE_SECS`] to spare).
    pub fn prune(&mut self, now: u64, ttl_secs: u64) {
        self.keys
            .retain(|k| still_published(k.retired, now, ttl_secs));
    }

    /// Checks what a reader needs: one signing key, every key loadable, and
    /// each `kid` the key's own thumbprint (so a hand edit cannot make one
    /// key pass for another).
    pub fn check(&self) -> Result<Vec<LoadedKey>, String> {
        if self.signing().is_none() {
            return Err("it holds no key that is not retired".into());
        }
        self.keys
            .iter()
            .map(|k| {
                let loaded = k.load()?;
                let thumbprint = loaded
                    .public
                    .thumbprint(ThumbprintHash::SHA256)
                    .map_err(|e| e.to_string())?;
                if thumbprint != k.kid {
                    return Err(format!("key {}: its kid is not its thumbprint", k.kid));
                }
                Ok(loaded)
            })
            .collect()
    }

    /// Reads the file; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<KeyFile>, KeyringError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, e)),
        };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| KeyringError::Invalid {
            path: path.display().to_string(),
            reason: format!("not a key file ({e})"),
        })?;
        Ok(Some(file))
    }

    /// Replaces the file with this one, durably: a temporary file of mode
    /// 0600 beside it, synced, renamed over it, and the directory synced.
    pub fn write(&self, path: &Path) -> Result<(), KeyringError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| KeyringError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let written = (|| {
            let mut f = private_file(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(path, e));
        }
        Ok(())
    }
}

/// Whether a key retired at `retired` (or not retired) must still be
/// published at `now`.
pub fn still_published(retired: Option<u64>, now: u64, ttl_secs: u64) -> bool {
    match retired {
        None => true,
        Some(at) => now < at.saturating_add(ttl_secs + RETIRED_KEY_GRACE_SECS),
    }
}

/// Opens `path` for writing, new and readable by its owner only.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Private keys readable by other users are worth a warning, not a refusal:
/// secret mounts (Kubernetes' among them) often give files mode 0644. Said
/// when a gate starts and when a command rotates, not at each re-read.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                log::warn!(
                    "identity.key_file {} has mode {mode:o}: other users can read the signing keys; chmod 600 it",
                    path.display()
                );
            }
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> KeyringError {
    KeyringError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_has_one_signing_key_named_by_its_thumbprint() {
        let f = KeyFile::new(100).unwrap();
        assert_eq!(f.keys.len(), 1);
        let loaded = f.check().unwrap();
        assert_eq!(loaded[0].kid, f.keys[0].kid);
        assert_eq!(f.signing().unwrap().kid, f.keys[0].kid);
        assert!(f.keys[0]
            .private_key
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        // PKCS#8 v1: 48 bytes of DER, no public key inside.
        assert_eq!(pem_der(&f.keys[0].private_key).len(), 48);
        assert!(
            !format!("{f:?}").contains("PRIVATE"),
            "no key in debug output"
        );
        // Two keys are never the same.
        assert_ne!(KeyFile::new(100).unwrap().keys[0].kid, f.keys[0].kid);
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    #[test]
    fn a_key_openssl_made_is_read() {
        // `openssl genpkey -algorithm ed25519`, and its public half from
        // `openssl pkey -pubout`: the same key as ours must sign and publish.
        let key = StoredKey {
            kid: String::new(),
            private_key: "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIIaYawRM2BiPOmps/Ln5h9dNX4oZpM5h64zwcIrT1O9c\n-----END PRIVATE KEY-----\n".into(),
            created: 0,
            retired: None,
        };
        let loaded = key.load().unwrap();
        let jwk = serde_json::to_value(&loaded.public).unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["x"], "4bOzNaQYmiZWpaeP4eqURa9FFNeENrV91UL0-CBxJLA");
    }

    #[test]
    fn rotation_keeps_the_old_key_until_its_assertions_expire() {
        let ttl = 60;
        let mut f = KeyFile::new(100).unwrap();
        let old = f.keys[0].kid.clone();
        let new = f.rotate(1000, ttl).unwrap();
        assert_ne!(new, old);
        assert_eq!(f.signing().unwrap().kid, new);
        assert_eq!(f.keys.len(), 2);
        assert_eq!(f.keys[0].retired, Some(1000));
        // Just before the last assertion of the old key expires (plus the
        // grace), it is still published; from then on it is not.
        let last = 1000 + ttl + RETIRED_KEY_GRACE_SECS;
        f.prune(last - 1, ttl);
        assert_eq!(f.keys.len(), 2);
        f.prune(last, ttl);
        assert_eq!(f.keys.len(), 1);
        assert_eq!(f.keys[0].kid, new);
        f.check().unwrap();
    }

    #[test]
    fn a_hand_edited_kid_or_key_is_refused() {
        let mut f = KeyFile::new(1).unwrap();
        f.keys[0].kid = "someone-else".into();
        assert!(f.check().unwrap_err().contains("thumbprint"));
        let mut f = KeyFile::new(1).unwrap();
        f.keys[0].private_key =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(f.check().unwrap_err().contains("PKCS#8"));
        let mut f = KeyFile::new(1).unwrap();
        f.keys[0].retired = Some(1);
        assert!(f.check().unwrap_err().contains("not retired"));
    }

    #[test]
    fn the_file_is_written_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keys.json");
        assert!(KeyFile::read(&path).unwrap().is_none());
        let f = KeyFile::new(5).unwrap();
        f.write(&path).unwrap();
        assert_eq!(KeyFile::read(&path).unwrap().unwrap(), f);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::write(&path, "{not json").unwrap();
        let e = KeyFile::read(&path).unwrap_err().to_string();
        assert!(e.starts_with("identity.key_file "), "{e}");
    }
}
