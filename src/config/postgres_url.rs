//! `store.url`, a libpq-style PostgreSQL URL: checked when the
//! configuration is validated, and parsed for the store's connections, in
//! one place. libpq's verifying `sslmode`s (which tokio-postgres does not
//! know) are taken out and become a [`Verify`] policy.

/// How the database's certificate is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, but accept any certificate (libpq's `prefer` and `require`).
    Nothing,
    /// Check the chain and the host name against these roots (a PEM file),
    /// or the Web PKI's when `None`.
    Chain(Option<String>),
}

/// Parses a URL into tokio-postgres' settings and the TLS policy; the
/// reason for a refusal never repeats the URL, which may hold a password.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Verify), String> {
    let (url, verify) = split_ssl_mode(url)?;
    let pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("not a usable PostgreSQL URL ({e})"))?;
    if pg.get_hosts().is_empty() {
        return Err("the URL names no host".into());
    }
    Ok((pg, verify))
}

/// Checks a URL as the configuration is validated.
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(|_| ())
}

/// Takes libpq's verifying `sslmode`s and `sslrootcert` out of a URL (for
/// tokio-postgres, they become `sslmode=require`); what remains is passed on.
/// A key-value connection string (`host=… user=…`) is passed on as it is.
pub(super) fn split_ssl_mode(url: &str) -> Result<(String, Verify), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok((url.to_string(), Verify::Nothing));
    }
    let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let mut verify = Verify::Nothing;
    let mut root = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("sslmode", "verify-ca" | "verify-full") => {
                verify = Verify::Chain(None);
                kept.push(("sslmode".into(), "require".into()));
            }
            ("sslrootcert", path) => root = Some(path.to_string()),
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    match verify {
        Verify::Chain(_) => verify = Verify::Chain(root),
        Verify::Nothing if root.is_some() => {
            return Err("sslrootcert needs sslmode=verify-ca or verify-full".into())
        }
        // Nothing to take out: passed on exactly as written.
        Verify::Nothing => return Ok((url.to_string(), verify)),
    }
    // Spaces as %20, not `+`: tokio-postgres only percent-decodes.
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let query: Vec<String> = kept
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    parsed.set_query(Some(&query.join("&")));
    Ok((parsed.to_string(), verify))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_become_require_with_a_check() {
        let (url, v) =
            split_ssl_mode("postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(v, Verify::Chain(Some("/ca.pem".into())));
        assert_eq!(url, "postgres://u:p@db:5432/x?sslmode=require");
        let (url, v) = split_ssl_mode("postgresql://db/x?sslmode=disable").unwrap();
        assert_eq!(v, Verify::Nothing);
        assert!(url.ends_with("sslmode=disable"));
        let (_, v) = split_ssl_mode("postgres://db/x?sslmode=verify-ca").unwrap();
        assert_eq!(v, Verify::Chain(None));
        assert!(split_ssl_mode("postgres://db/x?sslrootcert=/ca.pem").is_err());
        let (kv, v) = split_ssl_mode("host=db user=u").unwrap();
        assert_eq!((kv.as_str(), v), ("host=db user=u", Verify::Nothing));
    }

    #[test]
    fn errors_never_repeat_the_url() {
        let e = check_url("postgres://user:hunter2@db:notaport/x").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(check_url("postgres://user:hunter2@db/x?sslmode=bogus").is_err());
        assert!(check_url("postgres://postgres@127.0.0.1:5432/test").is_ok());
    }
}
