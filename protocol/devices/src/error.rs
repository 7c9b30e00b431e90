//! The one error type of this crate.

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a value of the characteristic: a field its flags promise is missing,
    /// bytes follow the last field, or a field holds a value its definition rules out. The
    /// reason is one line naming the field.
    #[error("malformed: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The one-line reason, without the `malformed: ` prefix.
    pub fn reason(&self) -> &str {
        match self {
            DecodeError::Malformed(reason) => reason,
        }
    }
}

/// A `Malformed` error with this reason.
pub(crate) fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(reason.into())
}
