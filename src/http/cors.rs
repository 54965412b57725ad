//! CORS on the answers the gate gives itself, as Tachi gives it on all of
//! its answers (`server/src/server/server.ts`): any origin may read them,
//! without credentials, and every `OPTIONS` request is a preflight answered
//! 200 with no content. `server.cors_origins` narrows the origins; an empty
//! list turns CORS off.
//!
//! `Access-Control-Allow-Credentials: false`: a page on another origin may
//! call the API with a key, never with the user's cookie.

/// The headers Tachi sends besides the origin.
const ALLOW_HEADERS: &str = "Content-Type, X-User-Intent, Authorization";
const ALLOW_METHODS: &str = "GET,POST,PATCH,PUT,DELETE,OPTIONS";

/// The allowed origins, as configured.
#[derive(Debug, Clone, Copy)]
pub struct Cors<'a> {
    pub origins: &'a [String],
}

impl Cors<'_> {
    /// Whether CORS is on at all.
    pub fn enabled(self) -> bool {
        !self.origins.is_empty()
    }

    /// Whether the origins are Tachi's own answer, any origin at all.
    pub fn is_any_origin(self) -> bool {
        self.origins.iter().any(|o| o == "*")
    }

    /// The CORS headers for an answer to a request from `origin`: none when
    /// CORS is off, or when the origins are a list and `origin` is not in it.
    pub fn headers(self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let allowed = if self.is_any_origin() {
            "*".to_string()
        } else {
            match origin.filter(|o| self.origins.iter().any(|a| a == o)) {
                Some(o) => o.to_string(),
                None => return Vec::new(),
            }
        };
        let mut headers = vec![
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Allow-Headers", ALLOW_HEADERS.to_string()),
            ("Access-Control-Allow-Credentials", "false".to_string()),
            ("Access-Control-Allow-Methods", ALLOW_METHODS.to_string()),
        ];
        if !self.is_any_origin() {
            headers.push(("Vary", "Origin".to_string()));
        }
        headers
    }
}

/// The names of the headers [`Cors::headers`] sets, to replace an
/// upstream's own when the origins are narrowed.
pub const HEADER_NAMES: [&str; 4] = [
    "access-control-allow-origin",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-allow-methods",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_origin_is_tachis_answer() {
        let any = ["*".to_string()];
        let h = Cors { origins: &any }.headers(Some("https://x.example"));
        assert_eq!(h[0], ("Access-Control-Allow-Origin", "*".to_string()));
        assert_eq!(
            h[2],
            ("Access-Control-Allow-Credentials", "false".to_string())
        );
        assert_eq!(h.len(), 4);
        assert_eq!(Cors { origins: &any }.headers(None).len(), 4);
    }

    #[test]
    fn a_list_echoes_only_its_origins() {
        let list = ["https://tachi.example".to_string()];
        let cors = Cors { origins: &list };
        let h = cors.headers(Some("https://tachi.example"));
        assert_eq!(h[0].1, "https://tachi.example");
        assert!(h.contains(&("Vary", "Origin".to_string())));
        assert!(cors.headers(Some("https://evil.example")).is_empty());
        assert!(cors.headers(None).is_empty());
        assert!(!Cors { origins: &[] }.enabled());
    }
}
