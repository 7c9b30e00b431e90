//! The one error type of this crate. Each variant says what the server answers with, so the
//! Matrix edge maps it in one place.

/// Why input was refused. The message is one sentence naming the field or element at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The JSON does not have the shape: a field is missing or has the wrong JSON type. The
    /// server answers `M_BAD_JSON`.
    #[error("`{field}` {problem}")]
    Shape { field: String, problem: String },
    /// Every field has its type but a value breaks a rule (an end before its start, an unknown
    /// class or purpose, a grantee that is not the state key). The server answers
    /// `M_INVALID_PARAM`.
    #[error("`{field}` {problem}")]
    Value { field: String, problem: String },
    /// A FHIR resource that Medrix cannot file into a data class.
    #[error("{resource_type} cannot be filed into a record class: {reason}")]
    NotRoutable { resource_type: String, reason: String },
    /// FHIR input that is not what FHIR R4 allows (a malformed date, a resource that is not an
    /// object, an NDJSON line that is not JSON).
    #[error("{location}: {problem}")]
    Fhir { location: String, problem: String },
}

impl Error {
    /// The Matrix error code the server answers with when this error comes from a client's
    /// event content.
    pub fn matrix_errcode(&self) -> &'static str {
        match self {
            Error::Shape { .. } => "M_BAD_JSON",
            Error::Value { .. } | Error::NotRoutable { .. } | Error::Fhir { .. } => {
                "M_INVALID_PARAM"
            }
        }
    }

    /// A short name of the kind of error, as test vectors write it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Shape { .. } => "shape",
            Error::Value { .. } => "value",
            Error::NotRoutable { .. } => "not_routable",
            Error::Fhir { .. } => "fhir",
        }
    }

    pub(crate) fn shape(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Shape { field: field.into(), problem: problem.into() }
    }

    pub(crate) fn value(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Value { field: field.into(), problem: problem.into() }
    }

    pub(crate) fn fhir(location: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Fhir { location: location.into(), problem: problem.into() }
    }
}
