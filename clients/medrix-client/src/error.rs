//! The client library's one error type. Every message is one sentence a patient or a clinician
//! can act on; what the server said is kept, with its Matrix errcode.

use std::path::PathBuf;

/// What went wrong in a client operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The profile holds no session: nobody logged in with it.
    #[error("not logged in: register or log in first (no session in {0})")]
    NotLoggedIn(PathBuf),
    /// A login or registration into a profile that already holds a session.
    #[error("this profile is already logged in as {0}: log out first or use another profile")]
    AlreadyLoggedIn(String),
    /// A homeserver URL that is not one.
    #[error("`{0}` is not a homeserver URL (e.g. https://matrix.example.org)")]
    BadHomeserver(String),
    /// A user ID or localpart that is not one.
    #[error("`{0}` is not a Matrix user ID (@name:server) or user name")]
    BadUser(String),
    /// The profile directory or a file could not be read or written.
    #[error("{path}: {error}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The session file is not one this library wrote.
    #[error("{0} is damaged ({1}): log in again with a fresh profile")]
    BadSession(PathBuf, String),
    /// Registration needs something this client cannot give.
    #[error("{0}")]
    Registration(String),
    /// The homeserver could not be reached.
    #[error("cannot reach the homeserver: {0}")]
    Unreachable(String),
    /// The homeserver answered with a Matrix error.
    #[error("the homeserver refused: {message} ({errcode})")]
    Refused {
        /// The Matrix errcode, e.g. `M_FORBIDDEN`.
        errcode: String,
        /// The server's message.
        message: String,
    },
    /// The caller has no record.
    #[error("you have no record yet: create one first")]
    NoRecord,
    /// No record of that patient is shared with the caller.
    #[error("{0} has not shared a record with you (no invitation or membership found)")]
    NotShared(String),
    /// The caller was removed from the patient's record (revoked or expired).
    #[error("your access to {0}'s record has ended (the contract was revoked or expired)")]
    AccessEnded(String),
    /// The user holds no contract in the record.
    #[error("{0} holds no contract in this record")]
    NoContract(String),
    /// No knock of that user is pending on the record.
    #[error("{0} has no pending request on your record")]
    NoRequest(String),
    /// A knock without Medrix terms: nothing to approve as asked.
    #[error("{0} knocked without asking for terms (a plain knock): use `grant` to choose them")]
    PlainKnock(String),
    /// The patient's server refused a break-glass.
    #[error("{0}")]
    BreakGlassRefused(String),
    /// The patient's server did not answer a break-glass in time.
    #[error("{0}'s server did not answer the break-glass in time: try again")]
    BreakGlassTimeout(String),
    /// Only the patient may do this to their record.
    #[error("only the patient, {0}, can do this")]
    NotPatient(String),
    /// The caller is not a member of a class room it needs.
    #[error("you have no access to the {class} entries of {patient}'s record")]
    NoClassAccess {
        /// The class.
        class: medrix_records::DataClass,
        /// The record's patient.
        patient: String,
    },
    /// No such entry in the record.
    #[error("the record has no entry {0} you can read")]
    NoEntry(String),
    /// A correction of someone else's entry.
    #[error("entry {0} was added by someone else: only its author can correct it")]
    NotYours(String),
    /// A correction into another class.
    #[error("a correction keeps the entry's class: the original is {from}, the correction {to}")]
    ClassChange {
        /// The original's class.
        from: medrix_records::DataClass,
        /// The correction's.
        to: medrix_records::DataClass,
    },
    /// A resource of a file that cannot be an entry.
    #[error("resource {position} ({what}): {error}")]
    Resource {
        /// Its position in the file, from 1.
        position: usize,
        /// Its type and ID.
        what: String,
        /// What is wrong.
        error: medrix_records::Error,
    },
    /// Terms that do not make a valid contract.
    #[error("{0}")]
    Terms(String),
    /// A record event, a FHIR resource or a contract that `medrix-records` refused.
    #[error(transparent)]
    Records(#[from] medrix_records::Error),
    /// A room's read log that does not hold: an entry unreadable, the chain broken, or the
    /// head the server stated not on it.
    #[error("the read log of room {room} does not verify: {what}")]
    BrokenReadLog {
        /// The room.
        room: String,
        /// What is wrong, and at which entry.
        what: String,
    },
    /// Something in the Matrix client itself (its store, its crypto).
    #[error("the Matrix client failed: {0}")]
    Sdk(String),
}

/// The result of a client operation.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// The errcode of a server refusal, if this is one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Refused { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, error: std::io::Error) -> ClientError {
        ClientError::File { path: path.into(), error }
    }
}

impl From<matrix_sdk::Error> for ClientError {
    fn from(error: matrix_sdk::Error) -> ClientError {
        if let Some(api) = error.as_client_api_error() {
            return refused(api);
        }
        match error {
            matrix_sdk::Error::Http(http) => ClientError::from(*http),
            other => ClientError::Sdk(other.to_string()),
        }
    }
}

impl From<matrix_sdk::HttpError> for ClientError {
    fn from(error: matrix_sdk::HttpError) -> ClientError {
        if let Some(api) = error.as_client_api_error() {
            return refused(api);
        }
        match &error {
            matrix_sdk::HttpError::Reqwest(reqwest) => {
                // reqwest's own message is "error sending request for url (...)"; the cause
                // (connection refused, DNS) is what helps.
                let mut cause: &dyn std::error::Error = reqwest;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                ClientError::Unreachable(cause.to_string())
            }
            _ => ClientError::Sdk(error.to_string()),
        }
    }
}

impl From<matrix_sdk::ClientBuildError> for ClientError {
    fn from(error: matrix_sdk::ClientBuildError) -> ClientError {
        match error {
            matrix_sdk::ClientBuildError::Http(http) => ClientError::from(http),
            other => ClientError::Sdk(other.to_string()),
        }
    }
}

impl From<matrix_sdk::StoreError> for ClientError {
    fn from(error: matrix_sdk::StoreError) -> ClientError {
        ClientError::Sdk(error.to_string())
    }
}

fn refused(api: &matrix_sdk::ruma::api::error::Error) -> ClientError {
    use matrix_sdk::ruma::api::error::ErrorBody;
    match &api.body {
        ErrorBody::Standard(body) => ClientError::Refused {
            errcode: body.kind.errcode().to_string(),
            message: body.message.trim_end_matches('.').to_owned(),
        },
        _ => ClientError::Refused {
            errcode: format!("HTTP {}", api.status_code.as_u16()),
            message: "an answer that is not a Matrix error".to_owned(),
        },
    }
}
