//! PKCE (RFC 7636): checking challenges at create-code and verifiers at token.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Challenge, PkceMethod};

/// RFC 7636 §4.1: 43–128 characters of `[A-Z a-z 0-9 - . _ ~]`. Challenges
/// follow the same rule (an S256 challenge is 43 base64url characters).
pub fn well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Validates the create-code parameters. An absent method means `plain`;
/// a method without a challenge is an error.
pub fn challenge(value: Option<&str>, method: Option<&str>) -> Result<Option<Challenge>, String> {
    let method = match method {
        None => None,
        Some("S256") => Some(PkceMethod::S256),
        Some("plain") => Some(PkceMethod::Plain),
        Some(other) => {
            return Err(format!(
                "Unsupported code_challenge_method '{}': use S256 or plain.",
                other.chars().take(40).collect::<String>()
            ))
        }
    };
    match value {
        None if method.is_some() => Err("code_challenge_method was given without a code_challenge.".into()),
        None => Ok(None),
        Some(v) if !well_formed(v) => Err(
            "Invalid code_challenge: it must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' or '~'.".into(),
        ),
        Some(v) => Ok(Some(Challenge {
            method: method.unwrap_or(PkceMethod::Plain),
            value: v.to_string(),
        })),
    }
}

/// Whether `verifier` answers `challenge`, compared in constant time.
pub fn verifies(challenge: &Challenge, verifier: &str) -> bool {
    let expected = match challenge.method {
        PkceMethod::Plain => verifier.to_string(),
        PkceMethod::S256 => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
    };
    expected.as_bytes().ct_eq(challenge.value.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_matches_the_rfc_example() {
        let c = challenge(Some(CHALLENGE), Some("S256")).unwrap().unwrap();
        assert!(verifies(&c, VERIFIER));
        assert!(!verifies(&c, &VERIFIER.replace('d', "e")));
    }

    #[test]
    fn plain_is_the_default_method() {
        let c = challenge(Some(VERIFIER), None).unwrap().unwrap();
        assert_eq!(c.method, PkceMethod::Plain);
        assert!(verifies(&c, VERIFIER));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(challenge(Some(CHALLENGE), Some("S512")).is_err());
        assert!(challenge(None, Some("S256")).is_err());
        assert!(challenge(Some("short"), Some("S256")).is_err());
        assert_eq!(challenge(None, None), Ok(None));
        assert!(!well_formed(&"a".repeat(129)));
        assert!(!well_formed(&format!("{}!", "a".repeat(43))));
    }
}
