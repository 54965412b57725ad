//! `[[auth.policy]]`: which requests need which permissions. First match wins.
//!
//! A policy must not be sidestepped by spelling: paths and methods compare
//! regardless of case (Tachi's router matches paths so, and an upstream may
//! upper-case methods), prefixes match whole path segments, and HEAD is
//! covered wherever GET is, since servers answer HEAD with their GET handler.

use crate::config::Policy;
use crate::http::path::covers;

/// The first policy that applies to this method and canonical path
/// ([`crate::http::path::canonical`]).
pub fn first_match<'a>(policies: &'a [Policy], method: &str, path: &str) -> Option<&'a Policy> {
    policies
        .iter()
        .find(|p| covers(&p.path_prefix, path) && covers_method(&p.methods, method))
}

/// Whether a policy's methods (empty: all) cover `method`.
fn covers_method(methods: &[String], method: &str) -> bool {
    let is = |m: &str| methods.iter().any(|held| held.eq_ignore_ascii_case(m));
    methods.is_empty() || is(method) || (method.eq_ignore_ascii_case("HEAD") && is("GET"))
}

/// The permissions in `required` that `held` lacks, in `required`'s (sorted) order.
pub fn missing<'a>(required: &'a [String], held: &[String]) -> Vec<&'a str> {
    required
        .iter()
        .filter(|r| !held.contains(r))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(methods: &[&str], prefix: &str, require: &[&str]) -> Policy {
        Policy {
            methods: methods.iter().map(|s| s.to_string()).collect(),
            path_prefix: prefix.into(),
            require: require.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn first_matching_policy_wins() {
        let ps = vec![
            policy(&["POST"], "/ir/", &["submit_score"]),
            policy(&[], "/ir/", &[]),
        ];
        assert_eq!(
            first_match(&ps, "POST", "/ir/direct-manual")
                .unwrap()
                .require
                .len(),
            1
        );
        assert!(first_match(&ps, "GET", "/ir/x").unwrap().require.is_empty());
        assert!(first_match(&ps, "GET", "/api/v1/users").is_none());
        assert!(first_match(&ps, "POST", "/IR/direct-manual").is_some());
    }

    #[test]
    fn prefixes_match_whole_segments() {
        for prefix in ["/ir/", "/ir", "/IR"] {
            let ps = vec![policy(&[], prefix, &[])];
            for covered in ["/ir", "/ir/", "/ir/direct-manual", "/Ir/x/y"] {
                assert!(
                    first_match(&ps, "POST", covered).is_some(),
                    "{prefix} {covered}"
                );
            }
            for other in ["/irx", "/i", "/", "/api/ir"] {
                assert!(
                    first_match(&ps, "POST", other).is_none(),
                    "{prefix} {other}"
                );
            }
        }
        let everything = vec![policy(&[], "/", &[])];
        assert!(first_match(&everything, "GET", "/").is_some());
        assert!(first_match(&everything, "GET", "/anything").is_some());
    }

    #[test]
    fn methods_match_in_any_case_and_head_goes_with_get() {
        let ps = vec![policy(&["GET", "POST"], "/private", &[])];
        for method in ["GET", "get", "HEAD", "head", "post", "Post"] {
            assert!(first_match(&ps, method, "/private/x").is_some(), "{method}");
        }
        for method in ["PUT", "DELETE", "OPTIONS"] {
            assert!(first_match(&ps, method, "/private/x").is_none(), "{method}");
        }
        let head_only = vec![policy(&["HEAD"], "/", &[])];
        assert!(first_match(&head_only, "GET", "/x").is_none());
    }

    #[test]
    fn missing_lists_what_is_not_held() {
        let required = vec!["a".to_string(), "b".to_string()];
        assert_eq!(missing(&required, &["b".to_string()]), vec!["a"]);
        assert!(missing(&required, &["a".to_string(), "b".to_string()]).is_empty());
    }
}
