//! `[[gate.policy]]`: which requests need which permissions. First match wins.

use crate::config::Policy;
use crate::http::path::starts_with_ignore_case;

/// The first policy that applies to this method and canonical path
/// ([`super::path::canonical`]); prefixes match regardless of case, as
/// Tachi's router does.
pub fn first_match<'a>(policies: &'a [Policy], method: &str, path: &str) -> Option<&'a Policy> {
    policies.iter().find(|p| {
        starts_with_ignore_case(path, &p.path_prefix)
            && (p.methods.is_empty() || p.methods.iter().any(|m| m == method))
    })
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
    fn missing_lists_what_is_not_held() {
        let required = vec!["a".to_string(), "b".to_string()];
        assert_eq!(missing(&required, &["b".to_string()]), vec!["a"]);
        assert!(missing(&required, &["a".to_string(), "b".to_string()]).is_empty());
    }
}
