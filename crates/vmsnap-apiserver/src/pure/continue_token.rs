//! The `continue` token of a paged list: the revision of its first page and the key of the last
//! object sent, opaque to clients (URL-safe base64 of a small JSON object).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Where the next page of a list starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    /// The revision every page of the list is read at.
    #[serde(rename = "rv")]
    pub revision: u64,
    /// The namespace of the last object sent (empty for cluster-scoped kinds).
    #[serde(rename = "ns")]
    pub namespace: String,
    /// The name of the last object sent.
    pub name: String,
}

impl ContinueToken {
    /// The token as sent in `metadata.continue`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a token serializes"))
    }

    /// Reads a `continue` query parameter; a 400 naming the problem when it is not one of ours.
    pub fn decode(token: &str) -> Result<ContinueToken, ApiError> {
        let invalid = |why: String| ApiError::bad_request(format!("continue key is not valid: {why}"));
        let bytes =
            URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|e| invalid(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_a_foreign_one_is_a_bad_request() {
        let token = ContinueToken { revision: 42, namespace: "default".into(), name: "a/b".into() };
        let text = token.encode();
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{text}");
        assert_eq!(ContinueToken::decode(&text).unwrap(), token);
        for bad in ["", "!!", "eyJydiI6MX0"] {
            let error = ContinueToken::decode(bad).unwrap_err();
            assert_eq!(error.code, 400, "{bad}");
            assert!(error.message.starts_with("continue key is not valid"), "{}", error.message);
        }
    }
}
