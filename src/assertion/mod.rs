//! The signed identity assertion (`[identity] mode = "jwt"`): a short-lived
//! JWT, signed with Ed25519, that tells the upstream who a keyed caller is
//! in a form it can verify against the gate's published keys, rather than
//! trusting the network between the two (docs/http-api.md, "The signed
//! identity assertion").
//!
//! Signing must not cost the request path, so an assertion is kept with the
//! key's record in memory ([`crate::store::Memo`]) and signed again only
//! once it has lived half its life, or when the signing key has changed.
//! A revoked key's record is forgotten by the store, and its assertion with
//! it.

pub mod keyring;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{IdentityConfig, IdentityMode};
use crate::store::{random_hex, KeyRecord, Memoized};
use keyring::{still_published, KeyFile, KeyringError, LoadedKey};

/// The claims of an assertion. `sub` is the user ID, as JWT subjects are
/// strings; the rest name the key the request was made with.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
    permissions: &'a [String],
    identifier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    token_id: &'a str,
}

/// The keys as last read from the key file.
struct Keyring {
    /// Told apart from every earlier keyring, so an assertion signed with
    /// a key since rotated away is signed again.
    generation: u64,
    kid: String,
    signing: EncodingKey,
    /// Every published key's public JWK and when it was retired.
    public: Vec<(Value, Option<u64>)>,
    /// The key file as it was read, to tell when it changes.
    read_as: KeyFile,
}

/// Why an assertion could not be made (a broken key: never the caller's doing).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign an identity assertion: {0}")]
pub struct SignError(String);

/// Signs assertions and publishes the keys that verify them.
pub struct Assertions {
    issuer: String,
    audience: String,
    ttl: Duration,
    path: PathBuf,
    keyring: ArcSwap<Keyring>,
    generations: AtomicU64,
    /// Held while the key file is read and replaced (a rotation, a
    /// re-read), so that two rotations cannot write over each other and a
    /// re-read cannot put back the file a rotation has just replaced.
    file_lock: Mutex<()>,
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Assertions {
    /// The signer for `config`, reading the key file or making it; `None`
    /// when the gate sends no assertion (`mode = "headers"`).
    pub fn open(
        config: &IdentityConfig,
        issuer: Option<&str>,
    ) -> Result<Option<Assertions>, String> {
        if config.mode != IdentityMode::Jwt {
            return Ok(None);
        }
        let issuer = issuer
            .ok_or("identity.mode = \"jwt\" needs server.public_url")?
            .to_string();
        let path = config.key_file.clone();
        let file = match KeyFile::read(&path).map_err(|e| e.to_string())? {
            Some(f) => {
                keyring::warn_if_readable_by_others(&path);
                f
            }
            None => {
                let f = KeyFile::new(unix_now())?;
                f.write(&path).map_err(|e| e.to_string())?;
                log::info!("made a new identity signing key in {}", path.display());
                f
            }
        };
        let generations = AtomicU64::new(0);
        let keyring = build(&path, file, generations.fetch_add(1, Ordering::Relaxed))?;
        Ok(Some(Assertions {
            issuer,
            audience: config.audience.clone(),
            ttl: config.ttl,
            path,
            keyring: ArcSwap::from_pointee(keyring),
            generations,
            file_lock: Mutex::new(()),
        }))
    }

    /// The assertion for a request made with this key: the one kept with
    /// the record while it is younger than half its life and signed with
    /// the current key, else a new one, kept in its place.
    pub fn for_key(&self, record: &KeyRecord) -> Result<HeaderValue, SignError> {
        let ring = self.keyring.load();
        let now = Instant::now();
        if let Some(kept) = &*record.memo.assertion() {
            if kept.generation == ring.generation && now.duration_since(kept.made) < self.ttl / 2 {
                return Ok(kept.value.clone());
            }
        }
        let value = self.sign(record, &ring, unix_now())?;
        record.memo.set_assertion(Memoized {
            made: now,
            generation: ring.generation,
            value: value.clone(),
        });
        Ok(value)
    }

    fn sign(&self, record: &KeyRecord, ring: &Keyring, now: u64) -> Result<HeaderValue, SignError> {
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: record.user_id.to_string(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            jti: random_hex(16),
            permissions: &record.permissions,
            identifier: &record.identifier,
            client_id: record.from_client.as_deref(),
            token_id: &record.token_id,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &ring.signing)
            .map_err(|e| SignError(e.to_string()))?;
        HeaderValue::from_str(&jwt).map_err(|e| SignError(e.to_string()))
    }

    /// The published keys as a JWK Set (RFC 7517): the signing key and
    /// every retired one whose assertions may still be valid.
    pub fn jwks(&self) -> Value {
        jwk_set(&self.keyring.load().public, unix_now(), self.ttl.as_secs())
    }

    /// The ID of the key the gate signs with.
    pub fn signing_kid(&self) -> String {
        self.keyring.load().kid.clone()
    }

    /// Retires the signing key for a new one, in the key file first (so
    /// that a restart keeps it), then here. The new key's ID.
    pub fn rotate(&self) -> Result<String, String> {
        let _held = self.file_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = match KeyFile::read(&self.path).map_err(|e| e.to_string())? {
            Some(f) => f,
            None => self.keyring.load().read_as.clone(),
        };
        let kid = file.rotate(unix_now(), self.ttl.as_secs())?;
        file.write(&self.path).map_err(|e| e.to_string())?;
        self.install(file)?;
        Ok(kid)
    }

    /// Reads the key file again if another process (an operator's
    /// `identity rotate`, another gate sharing the file) has changed it.
    /// Whether it had.
    pub fn reload(&self) -> Result<bool, String> {
        let _held = self.file_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(file) = KeyFile::read(&self.path).map_err(|e| e.to_string())? else {
            return Err(format!(
                "identity.key_file {}: it has gone; signing with the keys read before",
                self.path.display()
            ));
        };
        if file == self.keyring.load().read_as {
            return Ok(false);
        }
        self.install(file)?;
        Ok(true)
    }

    fn install(&self, file: KeyFile) -> Result<(), String> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        self.keyring
            .store(Arc::new(build(&self.path, file, generation)?));
        Ok(())
    }
}

/// Rotates the key file at `config.key_file` without a running gate (or
/// beside running gates, which read the change within a second): the new
/// key's ID and the keys published now, as a JWK Set.
pub fn rotate_file(config: &IdentityConfig) -> Result<(String, Value), String> {
    let path = &config.key_file;
    let mut file = KeyFile::read(path)
        .map_err(|e| e.to_string())?
        .map(Ok)
        .unwrap_or_else(|| KeyFile::new(unix_now()))?;
    keyring::warn_if_readable_by_others(path);
    let kid = file.rotate(unix_now(), config.ttl.as_secs())?;
    let ring = build(path, file, 0)?;
    ring.read_as.write(path).map_err(|e| e.to_string())?;
    Ok((kid, jwk_set(&ring.public, unix_now(), config.ttl.as_secs())))
}

/// A JWK Set of the keys still published at `now`.
fn jwk_set(public: &[(Value, Option<u64>)], now: u64, ttl_secs: u64) -> Value {
    let keys: Vec<&Value> = public
        .iter()
        .filter(|(_, retired)| still_published(*retired, now, ttl_secs))
        .map(|(jwk, _)| jwk)
        .collect();
    json!({ "keys": keys })
}

fn build(path: &std::path::Path, file: KeyFile, generation: u64) -> Result<Keyring, String> {
    let invalid = |reason: String| {
        KeyringError::Invalid {
            path: path.display().to_string(),
            reason,
        }
        .to_string()
    };
    // `check` has made sure there is a signing key, and that each loads.
    let loaded = file.check().map_err(invalid)?;
    let signing_kid = file.signing().map(|k| k.kid.clone()).unwrap_or_default();
    let mut signing = None;
    let mut public = Vec::with_capacity(loaded.len());
    for LoadedKey {
        kid,
        encoding,
        public: jwk,
        retired,
    } in loaded
    {
        let jwk = serde_json::to_value(&jwk).map_err(|e| invalid(e.to_string()))?;
        public.push((jwk, retired));
        if kid == signing_kid {
            signing = Some(encoding);
        }
    }
    let signing = signing.ok_or_else(|| invalid("it holds no signing key".into()))?;
    Ok(Keyring {
        generation,
        kid: signing_kid,
        signing,
        public,
        read_as: file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    fn config(dir: &std::path::Path, ttl: u64) -> IdentityConfig {
        IdentityConfig {
            mode: IdentityMode::Jwt,
            header: http::HeaderName::from_static("x-tachi-identity"),
            audience: "tachi".into(),
            ttl: Duration::from_secs(ttl),
            key_file: dir.join("identity-keys.json"),
        }
    }

    fn record() -> KeyRecord {
        KeyRecord {
            from_client: Some("CI1".into()),
            ..KeyRecord::sample()
        }
    }

    /// Verifies `jwt` against the published keys, as an upstream would.
    fn verify(a: &Assertions, jwt: &HeaderValue) -> Value {
        let set: JwkSet = serde_json::from_value(a.jwks()).unwrap();
        let header = jsonwebtoken::decode_header(jwt.to_str().unwrap()).unwrap();
        let jwk = set
            .find(header.kid.as_deref().unwrap())
            .expect("kid published");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["tachi"]);
        v.set_issuer(&["https://gate.example"]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(
            jwt.to_str().unwrap(),
            &DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn headers_mode_signs_nothing_and_makes_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), 60);
        c.mode = IdentityMode::Headers;
        assert!(Assertions::open(&c, Some("https://gate.example"))
            .unwrap()
            .is_none());
        assert!(!c.key_file.exists());
    }

    #[test]
    fn an_assertion_carries_the_key_and_verifies_against_the_jwks() {
        let dir = tempfile::tempdir().unwrap();
        let a = Assertions::open(&config(dir.path(), 60), Some("https://gate.example"))
            .unwrap()
            .unwrap();
        let jwt = a.for_key(&record()).unwrap();
        let header = jsonwebtoken::decode_header(jwt.to_str().unwrap()).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(a.signing_kid().as_str()));
        let claims = verify(&a, &jwt);
        assert_eq!(claims["iss"], "https://gate.example");
        assert_eq!(claims["aud"], "tachi");
        assert_eq!(claims["sub"], "5");
        assert_eq!(claims["permissions"], json!(["a", "b"]));
        assert_eq!(claims["identifier"], "x");
        assert_eq!(claims["client_id"], "CI1");
        assert_eq!(claims["token_id"], "t1");
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60);
        assert!(iat.abs_diff(unix_now()) <= 2);
        // A key from no client has no client_id claim at all.
        let no_client = verify(&a, &a.for_key(&KeyRecord::sample()).unwrap());
        assert!(no_client.get("client_id").is_none());
        // The key file was made, readable by its owner only.
        assert!(dir.path().join("identity-keys.json").exists());
    }

    #[test]
    fn the_assertion_is_kept_until_half_its_life_and_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Assertions::open(&config(dir.path(), 2), Some("https://gate.example"))
            .unwrap()
            .unwrap();
        let (k1, k2) = (record(), KeyRecord::sample());
        let first = a.for_key(&k1).unwrap();
        assert_eq!(a.for_key(&k1).unwrap(), first);
        assert_ne!(a.for_key(&k2).unwrap(), first);
        // A copy of the record (as a fresh read from the store would be)
        // keeps nothing of it.
        assert_ne!(a.for_key(&k1.clone()).unwrap(), first);
        std::thread::sleep(Duration::from_millis(1100));
        let again = a.for_key(&k1).unwrap();
        assert_ne!(again, first, "re-signed after half of its 2 s");
        assert_eq!(a.for_key(&k1).unwrap(), again);
    }

    #[test]
    fn rotation_signs_with_the_new_key_and_keeps_the_old_published() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), 60);
        let a = Assertions::open(&c, Some("https://gate.example"))
            .unwrap()
            .unwrap();
        let k = record();
        let before = a.for_key(&k).unwrap();
        let old = a.signing_kid();
        let new = a.rotate().unwrap();
        assert_ne!(new, old);
        assert_eq!(a.signing_kid(), new);
        let after = a.for_key(&k).unwrap();
        assert_ne!(after, before, "the kept assertion was of the old key");
        let kid = |jwt: &HeaderValue| {
            jsonwebtoken::decode_header(jwt.to_str().unwrap())
                .unwrap()
                .kid
                .unwrap()
        };
        assert_eq!(kid(&after), new);
        // Both verify: the old key stays published while its assertions live.
        verify(&a, &before);
        verify(&a, &after);
        assert_eq!(a.jwks()["keys"].as_array().unwrap().len(), 2);
        // A second gate reading the same file signs with the new key too.
        let b = Assertions::open(&c, Some("https://gate.example"))
            .unwrap()
            .unwrap();
        assert_eq!(b.signing_kid(), new);
    }

    #[test]
    fn a_rotation_by_another_process_is_read_by_reload() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), 60);
        let a = Assertions::open(&c, Some("https://gate.example"))
            .unwrap()
            .unwrap();
        assert!(!a.reload().unwrap());
        let (new, _) = rotate_file(&c).unwrap();
        assert!(a.reload().unwrap());
        assert_eq!(a.signing_kid(), new);
        assert!(!a.reload().unwrap());
        // A broken file keeps the keys read before.
        std::fs::write(&c.key_file, "[]").unwrap();
        assert!(a.reload().is_err());
        assert_eq!(a.signing_kid(), new);
    }
}
