//! The error type of [`Client`](crate::Client) and [`Identity`](crate::Identity) operations.
//!
//! Variants fall into the four kinds of STYLE.md §4: API misuse (`UnknownConversation`,
//! `ConversationExists`, `NoPendingCommit`, `UnsupportedCiphersuite`), invalid peer input
//! (`InvalidInput`, `InvalidCredential`, `RevokedDevice`, `WrongGroup`, `OwnMessage`, `Content`),
//! dependency failure (`Mls`, `Storage`) and internal bugs (`Internal`). No message carries key
//! material or message content.

use ward_proto::DeviceId;

use crate::content::ContentError;

/// Why a [`Client`](crate::Client) operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Bytes from the server or a peer could not be decoded (not a TLS-serialised MLS message
    /// of the expected kind, truncated state, wrong format version).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A credential in a KeyPackage, commit, Welcome or message is not a valid Ward device
    /// credential: not signed by the organisation CA, not parseable, or bound to another key
    /// or device.
    #[error("invalid device credential: {reason}")]
    InvalidCredential {
        /// What exactly failed, e.g. "not signed by the organisation CA".
        reason: String,
    },

    /// The device is on the revocation list given to [`Client::set_revoked`](crate::Client::set_revoked).
    #[error("device {0} is revoked")]
    RevokedDevice(DeviceId),

    /// No local MLS group exists for this conversation (never created or joined, or its state
    /// was deleted with [`Client::leave_group_state`](crate::Client::leave_group_state)).
    #[error("unknown conversation: this device has no MLS group for it")]
    UnknownConversation,

    /// A local MLS group already exists for this conversation.
    #[error("this device already has an MLS group for the conversation")]
    ConversationExists,

    /// The Welcome or message belongs to another MLS group than the conversation it was
    /// delivered for.
    #[error("the MLS group id does not match the conversation")]
    WrongGroup,

    /// [`merge_pending_commit`](crate::Client::merge_pending_commit) or
    /// [`clear_pending_commit`](crate::Client::clear_pending_commit) was called without a
    /// pending commit.
    #[error("there is no pending commit in this conversation")]
    NoPendingCommit,

    /// The ciphersuite is not allowed by Ward's policy (0x004D and 0x0001 are).
    #[error("ciphersuite 0x{0:04X} is not supported (use 0x004D or 0x0001)")]
    UnsupportedCiphersuite(u16),

    /// The message was sent by this very device (the server echoed it back); it cannot be
    /// decrypted by its sender and should be skipped. An own commit is applied with
    /// [`merge_pending_commit`](crate::Client::merge_pending_commit) instead.
    #[error("the message was sent by this device")]
    OwnMessage,

    /// The decrypted application message is not valid Ward message content.
    #[error("invalid message content: {0}")]
    Content(#[from] ContentError),

    /// The compliance journal copy delivered with an application message does not match the
    /// message (or is missing, or names an unknown key): the message must not be shown, and
    /// the refusal should be reported to the server.
    #[error("compliance journal check failed: {0}")]
    JournalMismatch(#[source] crate::journal::JournalError),

    /// openmls refused the operation or the message (bad signature, wrong epoch, replayed
    /// generation, pending commit, no matching KeyPackage, …). The text is openmls' error
    /// message, which carries no key material.
    #[error("MLS error: {0}")]
    Mls(String),

    /// The in-memory MLS storage failed (a poisoned lock or an inconsistent entry).
    #[error("MLS storage error: {0}")]
    Storage(String),

    /// A wipe instruction was refused: not signed by the organisation CA this device trusts,
    /// or for another device. Nothing was erased.
    #[error("wipe instruction refused: {0}")]
    InvalidWipeInstruction(&'static str),

    /// A deletion order was refused: not signed by the organisation CA this device trusts,
    /// or out of bounds. Nothing was deleted.
    #[error("deletion order refused: {0}")]
    InvalidDeletionOrder(&'static str),

    /// A bug in ward-core: an invariant that should hold did not.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Wraps an openmls error, keeping only its message.
    pub(crate) fn mls(error: impl std::fmt::Display) -> Self {
        CoreError::Mls(error.to_string())
    }

    /// An [`CoreError::InvalidCredential`] with the given reason.
    pub(crate) fn credential(reason: impl Into<String>) -> Self {
        CoreError::InvalidCredential {
            reason: reason.into(),
        }
    }
}
