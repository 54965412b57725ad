//! What the store keeps for each client, code and key (JSON-encoded in sled).

use serde::{Deserialize, Serialize};

/// An API client. Field names follow Tachi's `api-clients` documents, except
/// that the secret is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    /// Hex SHA-256 of the client secret.
    pub secret_hash: String,
    pub name: String,
    pub author: u64,
    pub requested_permissions: Vec<String>,
    pub redirect_uri: Option<String>,
    pub webhook_uri: Option<String>,
    pub api_key_template: Option<String>,
    pub api_key_filename: Option<String>,
    pub created_on: u64,
    /// A public client (a native app or score hook, RFC 8252): it has no
    /// secret, authenticates at the token endpoint by its ID alone, and must
    /// use PKCE with S256. Not in Tachi's documents.
    #[serde(default)]
    pub public: bool,
}

/// How a PKCE challenge was derived from its verifier (RFC 7636 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PkceMethod {
    S256,
    #[serde(rename = "plain")]
    Plain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub method: PkceMethod,
    pub value: String,
}

/// Set once a code has been exchanged; kept so a replay can be recognised and
/// the key it produced revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    /// Hex SHA-256 of the key minted from the code.
    pub key_hash: String,
    pub client_id: String,
    pub at: u64,
}

/// An intermediate authorisation code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub user_id: u64,
    pub created_on: u64,
    /// After this instant (Unix ms) the code can no longer be exchanged.
    pub expires_at: u64,
    /// When set, only this client may exchange the code.
    pub client_id: Option<String>,
    pub challenge: Option<Challenge>,
    pub redeemed: Option<Redemption>,
    /// Set for a code from the standard authorization endpoint: what its
    /// request asked for and the user granted.
    #[serde(default)]
    pub authorization: Option<Authorization>,
}

/// What a standard authorization request (RFC 6749 §4.1.1) carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// The `redirect_uri` the request sent, if it sent one: the token
    /// request must then send the same (§4.1.3).
    pub redirect_uri: Option<String>,
    /// The permissions granted: a subset of the client's.
    pub scope: Vec<String>,
}

impl CodeRecord {
    /// Whether the code can still be exchanged at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.redeemed.is_none() && now_ms < self.expires_at
    }
}

/// An API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Stable and not secret: names the key in headers and listings.
    pub token_id: String,
    pub user_id: u64,
    pub identifier: String,
    /// Sorted and de-duplicated.
    pub permissions: Vec<String>,
    pub from_client: Option<String>,
    pub created_on: u64,
    /// What the layers above derive from this record and keep with it
    /// (the signed identity assertion): never stored.
    #[serde(skip)]
    pub memo: Memo,
}

/// What is derived from a key's record, kept beside the record in memory:
/// the identity headers forwarded with each of its requests, and the
/// signed identity assertion.
///
/// It lives exactly as long as the record the store remembers: when a
/// revocation makes the store forget the record, the memo goes with it, so
/// nothing derived from a revoked key outlives the revocation. It is not
/// stored, it never makes two records differ, and a copy of a record
/// starts without one. Reading it takes no lock that other readers share
/// (`OnceLock`, `ArcSwap`), since every request with the key reads it.
#[derive(Default)]
pub struct Memo {
    headers: std::sync::OnceLock<Vec<(http::HeaderName, http::HeaderValue)>>,
    assertion: arc_swap::ArcSwapOption<Memoized>,
}

/// A signed assertion, with when and by what it was made.
#[derive(Debug)]
pub struct Memoized {
    /// When it was made.
    pub made: std::time::Instant,
    /// Which generation of the deriving state made it (a signing key, say):
    /// a memo of an older one is stale.
    pub generation: u64,
    pub value: http::HeaderValue,
}

impl Memo {
    /// The headers made by `make` the first time they are asked for; a
    /// record's fields never change, so neither do they.
    pub fn headers<E>(
        &self,
        make: impl FnOnce() -> Result<Vec<(http::HeaderName, http::HeaderValue)>, E>,
    ) -> Result<&[(http::HeaderName, http::HeaderValue)], E> {
        if let Some(made) = self.headers.get() {
            return Ok(made);
        }
        let made = make()?;
        Ok(self.headers.get_or_init(|| made))
    }

    /// The assertion, if one was set; a guard, so no reference count is touched.
    pub fn assertion(&self) -> arc_swap::Guard<Option<std::sync::Arc<Memoized>>> {
        self.assertion.load()
    }

    pub fn set_assertion(&self, memo: Memoized) {
        self.assertion.store(Some(std::sync::Arc::new(memo)));
    }
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Eq for Memo {}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

/// A freshly made key: the secret (shown once), its digest, and its record.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub key: String,
    pub digest: super::Digest,
    pub record: KeyRecord,
}

impl KeyRecord {
    /// What the audit log says of this key.
    pub fn audited(&self) -> crate::telemetry::IssuedKey<'_> {
        crate::telemetry::IssuedKey {
            token_id: &self.token_id,
            user: self.user_id,
            client: self.from_client.as_deref(),
            permissions: &self.permissions,
        }
    }

    /// Makes a new key: 160 random bits, a random non-secret token ID, and the
    /// permissions sorted and de-duplicated.
    pub fn mint(
        user_id: u64,
        identifier: String,
        permissions: &[String],
        from_client: Option<String>,
        now_ms: u64,
    ) -> MintedKey {
        let key = super::random_hex(20);
        let mut permissions = permissions.to_vec();
        permissions.sort();
        permissions.dedup();
        MintedKey {
            digest: super::digest(&key),
            key,
            record: KeyRecord {
                token_id: super::random_hex(12),
                user_id,
                identifier,
                permissions,
                from_client,
                created_on: now_ms,
                memo: Default::default(),
            },
        }
    }

    /// A key for `user_id` issued through `client`: named after the client
    /// and holding the permissions it asks for, as Tachi names them.
    pub fn mint_for_client(
        user_id: u64,
        client: &ClientRecord,
        identifier: String,
        now_ms: u64,
    ) -> MintedKey {
        KeyRecord::mint(
            user_id,
            identifier,
            &client.requested_permissions,
            Some(client.client_id.clone()),
            now_ms,
        )
    }
}

#[cfg(test)]
impl KeyRecord {
    /// A key record for unit tests: user 5, permissions `a` and `b`, token ID `t1`.
    pub(crate) fn sample() -> KeyRecord {
        KeyRecord {
            token_id: "t1".into(),
            user_id: 5,
            identifier: "x".into(),
            permissions: vec!["a".into(), "b".into()],
            from_client: None,
            created_on: 0,
            memo: Default::default(),
        }
    }
}
