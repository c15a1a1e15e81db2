use ward_proto::DeviceId;

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Storage failures. Expected outcomes (not found, conflicts) are variants; anything from
/// the database driver is `Backend`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The named record does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique constraint would be violated (`what` already exists).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A one-time secret (enrollment code) was already consumed by a concurrent request.
    #[error("already consumed")]
    AlreadyConsumed,
    /// The database failed. The message is the driver's and may name tables, never content.
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded: a bug or a tampered database.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wrap a driver error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// Why an envelope was not appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Unknown conversation.
    #[error("conversation not found")]
    NotFound,
    /// The sending device is not in the conversation (or its user is not a member).
    #[error("sender is not a member of the conversation")]
    NotMember,
    /// The message's epoch is not the conversation's current epoch.
    #[error("epoch conflict: conversation is at epoch {current_epoch}")]
    EpochConflict {
        /// The conversation's epoch now.
        current_epoch: u64,
    },
    /// A Welcome names a device that is not an active device of a member after the commit.
    #[error("welcome names device {0} that is not an active device of a member")]
    InvalidWelcomeDevice(DeviceId),
    /// A membership change names a user that does not exist or is not active.
    #[error("membership change names an unknown or inactive user")]
    InvalidMember,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
