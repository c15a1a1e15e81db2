//! Ward wire types: the JSON bodies of the HTTP API under `/v1`, the WebSocket frames, the
//! identifiers and the one error shape.
//!
//! This crate does no I/O and holds no logic beyond parsing and validating its own types, so
//! the server, the client SDK and the CLI agree on one definition. Binary fields (MLS
//! messages, keys, signatures) travel as standard base64 strings, see [`Bytes`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod blobs;
mod breakglass;
mod bytes;
mod clinical;
mod error;
mod escalation;
mod ids;
mod journal;
mod names;
mod password;
mod retention;
mod wipe;
mod workflow;
mod ws;

pub use api::*;
pub use blobs::{
    AttachmentPolicyInfo, BlobUpload, BlobUploadState, CompleteBlobRequest, CreateBlobRequest,
    DEFAULT_DENIED_EXTENSIONS, DEFAULT_DENIED_MEDIA_TYPES, MAX_BLOBS_PER_MESSAGE,
    MAX_DENIED_ENTRIES, check_denied_extensions, check_denied_media_types, check_sha256_hex,
};
pub use breakglass::{
    BREAK_GLASS_DEFAULT_MINUTES, BREAK_GLASS_REASON_MAX_CHARS, BREAK_GLASS_REASON_MIN_CHARS,
    BreakGlassGrant, BreakGlassRequest,
};
pub use bytes::Bytes;
pub use clinical::{
    CreateTemplateRequest, DndInfo, DndRequest, MAX_DND_SECS, MAX_PATIENT_INDEX_PAGE,
    MAX_PATIENT_TAG_BYTES, MAX_PATIENT_TAGS_PER_CONVERSATION, MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_VAR_CHARS, MAX_TEMPLATES, PatientIndexEntry, PatientIndexPage, PatientTagRequest,
    TemplateError, TemplateInfo, TemplateList, TemplateName, TemplatePriority, render_template,
    template_variables,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use escalation::{
    AckMessageRequest, AckResponse, AlertKind, DeliveryState, DeliveryStateChange, DeviceDelivery,
    EscalationOutcome, EscalationStatus, MessageAlert, MessageDelivery, MessagePriority,
    RoleAddress, RoleSendOutcome,
};
pub use ids::{ConversationId, DeviceId, MessageId, UserId};
pub use journal::{
    JOURNAL_KEY_ID_LEN, JournalArchiveEntry, JournalArchivePage, JournalCopy, JournalKeyList,
    JournalMismatchReport, MAX_JOURNAL_COPY_BYTES, SignedJournalKey,
};
pub use names::{NameError, Role, Username};
pub use password::{
    MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS_CEILING, MIN_PASSWORD_CHARS_FLOOR, PasswordError,
    SINGLE_FACTOR_MIN_PASSWORD_CHARS, check_password, min_password_chars,
};
pub use retention::{
    AddHoldRequest, DeletionOrder, DeletionOrderList, ErasureKept, ErasureReport,
    ErasureRequestBody, HoldInfo, HoldList, HoldTarget, MAX_DELETION_ORDER_IDS, MAX_RETENTION_SECS,
    PurgeReport, RetentionDuration, RetentionPolicyInfo, RetentionRulesInfo, SetRetentionRequest,
    YEAR_SECS,
};
pub use wipe::{WipeConfirmation, WipeInstruction, WipeOrderInfo};
pub use workflow::{
    AssignRoleRequest, ClinicalRoleInfo, ClinicalRoleList, ClinicalRoleName,
    CreateClinicalRoleRequest, EscalationPolicyInfo, EscalationPolicyRequest, EscalationTarget,
    EscalationTier, HoldingSource, MAX_ACK_WITHIN_SECS, MAX_ESCALATION_TIERS, MIN_ACK_WITHIN_SECS,
    OnCallRequest, RoleHolder, RoleHolders, ScheduleImportReport, ScheduleImportRequest,
};
pub use ws::{ClientFrame, ServerEvent};

/// Largest MLS message the delivery service accepts, in bytes (base64 excluded).
///
/// Post-quantum commits at 1,000 members exceed 1 MB (DESIGN.md §3), so this leaves room.
pub const MAX_MLS_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest KeyPackage accepted. X-Wing KeyPackages are about 1.3 KB.
pub const MAX_KEY_PACKAGE_BYTES: usize = 16 * 1024;
/// Most KeyPackages accepted in one upload.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 200;
/// Most members named when a conversation is created.
pub const MAX_CONVERSATION_MEMBERS: usize = 2_000;
/// Below this many one-time KeyPackages the server tells a device to upload more.
pub const KEY_PACKAGE_LOW_WATERMARK: u64 = 10;
