//! The control-socket request parser's fuzz body (SPEC §11): shared by the cargo-fuzz target
//! `control` and its stable replay, like the parsers of [`super`]. Errors name what was wrong (serde's include `at line L column C`).

use zmaster::control::{self, MAX_REQUEST, Reply};

/// [`control::parse_request`] on any bytes: an error is one line that says what was wrong
/// (and the `{"ok":false,...}` reply carrying it is one JSON line); an accepted request
/// serializes back to a line that parses to the same request.
pub fn control_target(data: &[u8]) {
    match control::parse_request(data) {
        Ok(req) => {
            assert!(data.len() <= MAX_REQUEST, "accepted {} bytes", data.len());
            let line = serde_json::to_string(&req).expect("a request serializes");
            let again = control::parse_request(line.as_bytes())
                .unwrap_or_else(|e| panic!("{req:?} serializes as {line:?}, which fails: {e}"));
            assert_eq!(again, req, "{line}");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty(), "empty error");
            assert!(
                !shown.contains(['\n', '\r']),
                "error is not one line: {shown:?}"
            );
            let known = [
                "request longer than",
                "request is not UTF-8",
                "empty request",
                "bad request: ",
            ];
            assert!(known.iter().any(|k| shown.starts_with(k)), "{shown}");
            let reply = Reply::error(shown.clone()).to_line();
            assert_eq!(reply.matches('\n').count(), 1, "{reply:?}");
            assert!(reply.ends_with('\n'), "{reply:?}");
            let back: Reply = serde_json::from_str(&reply).expect("the reply is JSON");
            assert!(
                !back.ok && back.error.as_deref() == Some(shown.as_str()),
                "{reply}"
            );
        }
    }
}
