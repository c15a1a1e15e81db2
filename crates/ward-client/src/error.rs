//! The SDK's error type. Messages are meant for the person at the keyboard; they carry no
//! message content, keys or tokens.

use ward_core::CoreError;
use ward_proto::ErrorCode;

/// Errors of the SDK. Messages are meant for the person at the keyboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WardError {
    /// The server refused the request.
    #[error("{message}")]
    Api {
        /// Server error code.
        code: ErrorCode,
        /// Server message.
        message: String,
        /// For epoch conflicts.
        current_epoch: Option<u64>,
    },
    /// No valid session: log in again.
    #[error("not logged in or session expired ({0}); run `ward login`")]
    SessionExpired(String),
    /// Network failure; queued writes are retried on the next sync.
    #[error("could not reach the server: {0}")]
    Transport(String),
    /// The server's certificate was not accepted.
    #[error("{0}")]
    Tls(String),
    /// The profile passphrase is wrong, or the profile file was altered.
    #[error("wrong passphrase, or the profile file is corrupted")]
    WrongPassphrase,
    /// The journal key file's passphrase is wrong, or the file was altered.
    #[error("wrong journal key passphrase, or the journal key file is corrupted")]
    WrongJournalPassphrase,
    /// The profile could not be read or written.
    #[error("profile: {0}")]
    Profile(String),
    /// The input is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// The organisation's DLP policy blocks this message (it appears to contain PHI).
    #[error("not sent: the organisation's policy blocks messages containing {}", .labels.join(", "))]
    PhiBlocked {
        /// Detectors that fired.
        labels: Vec<String>,
    },
    /// The message appears to contain PHI; send again with confirmation (`--confirm-phi`).
    #[error("not sent: the message appears to contain {}; check it and send with --confirm-phi to proceed", .labels.join(", "))]
    PhiNeedsConfirmation {
        /// Detectors that fired.
        labels: Vec<String>,
    },
    /// The MLS core refused something.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An attachment was refused before sending (policy, type, size, unreadable file) or
    /// could not be saved after download (authentication, hash, truncation, I/O); nothing
    /// partial was left behind.
    #[error(transparent)]
    Attachment(#[from] crate::attachments::AttachmentFileError),
    /// An attachment upload stopped part-way (the network failed repeatedly). The server
    /// keeps what it received: [`WardClient::resume_upload`](crate::WardClient::resume_upload)
    /// continues from `received` instead of starting again.
    #[error(
        "the upload of attachment blob {blob_id} stopped at {received} of {size} bytes ({reason}); \
         it can be resumed"
    )]
    UploadInterrupted {
        /// The blob being uploaded.
        blob_id: uuid::Uuid,
        /// Bytes the server had when last asked.
        received: u64,
        /// Bytes announced.
        size: u64,
        /// The last network error.
        reason: String,
    },
    /// The server says this device was wiped and sent a signed instruction. `sync`, `login`,
    /// `send_message` and `follow` act on it (they answer [`WardError::Wiped`] after erasing,
    /// or [`CoreError::InvalidWipeInstruction`] for a forged instruction); other operations
    /// return it as is, and the next sync obeys it.
    #[error("the server ordered this device to be wiped")]
    WipeOrdered(Box<ward_proto::WipeInstruction>),
    /// This device was wiped by the organisation: its profile has been erased and it can no
    /// longer log in. Enroll again as a new device if an administrator allows it.
    #[error(
        "this device was wiped by your organisation: its local data has been erased{}",
        if *.confirmed { "" } else { " (the confirmation could not be sent)" }
    )]
    Wiped {
        /// Whether the server accepted the confirmation.
        confirmed: bool,
    },
}

impl WardError {
    pub(crate) fn is(&self, code: ErrorCode) -> bool {
        matches!(self, WardError::Api { code: c, .. } if *c == code)
    }
}
