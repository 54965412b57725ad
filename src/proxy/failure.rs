//! What a client is told when forwarding fails: the one mapping from
//! Pingora's error (its type and which side it came from) to an answer.

use pingora::{ErrorSource, ErrorType};

use crate::http::body::BodyError;
use crate::http::reply::Reply;

/// The answer for a proxying error, or `None` when the client itself went
/// away (nobody is left to answer).
pub fn reply_for(etype: &ErrorType, source: &ErrorSource) -> Option<Reply> {
    match (etype, source) {
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
        let status = |t: ErrorType, s: ErrorSource| reply_for(&t, &s).map(|r| r.status);
        assert_eq!(
            status(ErrorType::HTTPStatus(413), ErrorSource::Downstream),
            Some(413)
        );
        assert_eq!(
            status(ErrorType::ReadTimedout, ErrorSource::Upstream),
            Some(504)
        );
        assert_eq!(
            status(ErrorType::ReadTimedout, ErrorSource::Downstream),
            Some(408)
        );
        assert_eq!(
            status(ErrorType::ConnectionClosed, ErrorSource::Downstream),
            None
        );
        assert_eq!(
            status(ErrorType::InvalidHTTPHeader, ErrorSource::Downstream),
            Some(400)
        );
        assert_eq!(
            status(ErrorType::ConnectRefused, ErrorSource::Upstream),
            Some(502)
        );
    }
}
