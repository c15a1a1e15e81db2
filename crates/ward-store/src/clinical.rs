//! Patient index, message templates and do-not-disturb coverage (ADR 0019).
//!
//! The patient index holds only opaque tags (HPKE ciphertexts to the organisation's journal
//! key); templates are organisation configuration, not PHI; a do-not-disturb entry names the
//! covering colleague and an optional end. Rules (who may read, covering loops, expiry on the
//! server's clock) are the server's.

use async_trait::async_trait;
use time::OffsetDateTime;
use ward_proto::{ConversationId, TemplateName, TemplatePriority, UserId};

use crate::StoreResult;

/// One sealed patient tag of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientTag {
    /// Position in the index, assigned by the store (ignored on insert).
    pub index_seq: u64,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The journal key it is sealed to.
    pub key_id: String,
    /// `enc ‖ ciphertext`.
    pub tag: Vec<u8>,
    /// When it was stored.
    pub created_at: OffsetDateTime,
}

/// An organisation message template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageTemplate {
    /// Unique name.
    pub name: TemplateName,
    /// Text with `{name}` placeholders.
    pub text: String,
    /// Priority of messages sent with it.
    pub priority: TemplatePriority,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A user's do-not-disturb with the colleague who covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoNotDisturb {
    /// The user who is away.
    pub user_id: UserId,
    /// Who covers.
    pub cover_user_id: UserId,
    /// When it ends by itself (exclusive); `None`: until turned off.
    pub until: Option<OffsetDateTime>,
    /// When it was turned on.
    pub since: OffsetDateTime,
}

/// Patient tags, templates and do-not-disturb.
#[async_trait]
pub trait ClinicalContextStore {
    /// Store a tag unless its conversation already has `max_per_conversation` tags
    /// (`Conflict("patient tag")`). `NotFound("journal key")` for an unknown key,
    /// `NotFound("conversation")` for an unknown conversation. Returns its `index_seq`.
    async fn add_patient_tag(
        &self,
        tag: &PatientTag,
        max_per_conversation: usize,
    ) -> StoreResult<u64>;
    /// Tags with `index_seq > after`, ascending, at most `limit`.
    async fn patient_tags(&self, after: u64, limit: usize) -> StoreResult<Vec<PatientTag>>;

    /// Create a template. `Conflict("template")` if the name is taken.
    async fn create_template(&self, t: &MessageTemplate) -> StoreResult<()>;
    /// One template.
    async fn template(&self, name: &TemplateName) -> StoreResult<Option<MessageTemplate>>;
    /// Every template, by name.
    async fn templates(&self) -> StoreResult<Vec<MessageTemplate>>;
    /// Delete a template; false if there was none.
    async fn delete_template(&self, name: &TemplateName) -> StoreResult<bool>;

    /// Turn do-not-disturb on (or replace the user's entry). `NotFound("user")` when either
    /// user does not exist.
    async fn set_dnd(&self, d: &DoNotDisturb) -> StoreResult<()>;
    /// Turn it off; returns the entry that was removed.
    async fn clear_dnd(&self, user: UserId) -> StoreResult<Option<DoNotDisturb>>;
    /// Every stored entry (expired ones included until removed), by user id.
    async fn dnds(&self) -> StoreResult<Vec<DoNotDisturb>>;
}
