//! Errors of the wire codecs.

use std::fmt;

/// A payload that could not be decoded, with the reason (the path of the bad field when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    reason: String,
}

impl WireError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        WireError {
            reason: reason.into(),
        }
    }

    /// The reason, suitable for a 400 response body.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for WireError {}
