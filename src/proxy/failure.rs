//! What a client is told when forwarding fails: the one mapping from
//! Pingora's error (its type and which side it came from) to an answer.

use pingora::{ErrorSource, ErrorType};

use crate::http::body::BodyError;
use crate::http::reply::Reply;

/// The answer for a proxying error, or `None` when the client itself went
/// away (nobody is left to answer). `body_done`: whether the client had sent
/// its whole body; an upstream that timed out waiting for the rest of it was
/// kept waiting by the client, which is told so (408), not blamed on the
/// upstream.
pub fn reply_for(etype: &ErrorType, source: &ErrorSource, body_done: bool) -> Option<Reply> {
    match (etype, source) {
        (ErrorType::ReadTimedout, ErrorSource::Upstream) if !body_done => {
            Some(BodyError::Timeout.reply())
        }
        (ErrorType::HTTPStatus(code), _) if *code >= 400 => {
            Some(Reply::failure(*code, "The request failed."))
        }
        (ErrorType::ReadTimedout, ErrorSource::Upstream) => Some(Reply::failure(
            504,
            "The Tachi server did not answer in time.",
        )),
        (
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => None,
        (ErrorType::ReadTimedout, ErrorSource::Downstream) => Some(BodyError::Timeout.reply()),
        (_, ErrorSource::Downstream) => Some(Reply::failure(400, "Bad request.")),
        // The upstream failed, or none could be reached.
        _ => Some(Reply::upstream_unavailable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_answers() {
        use ErrorSource::{Downstream, Upstream};
        let cases = [
            (ErrorType::HTTPStatus(413), Downstream, Some(413)),
            (ErrorType::ReadTimedout, Upstream, Some(504)),
            (ErrorType::ReadTimedout, Downstream, Some(408)),
            (ErrorType::ConnectionClosed, Downstream, None),
            (ErrorType::InvalidHTTPHeader, Downstream, Some(400)),
            (ErrorType::ConnectRefused, Upstream, Some(502)),
        ];
        for (etype, source, status) in cases {
            let got = reply_for(&etype, &source, true).map(|r| r.status);
            assert_eq!(got, status, "{etype:?} from {source:?}");
        }
        // The upstream waited for a body the client never finished.
        let got = reply_for(&ErrorType::ReadTimedout, &Upstream, false).map(|r| r.status);
        assert_eq!(got, Some(408));
    }
}
