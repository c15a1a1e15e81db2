//! Patient index and message templates (ADR 0019).
//!
//! The patient index stores, per conversation, tags a member's client sealed to the
//! organisation's journal key: the server cannot read them, and reading them is a
//! compliance-officer action that is audited. Templates are organisation configuration; the
//! sender's client renders them and sends the text through the normal DLP check and MLS.

use ward_proto::{
    ConversationId, CreateTemplateRequest, ErrorCode, MAX_PATIENT_INDEX_PAGE,
    MAX_PATIENT_TAG_BYTES, MAX_PATIENT_TAGS_PER_CONVERSATION, MAX_TEMPLATES, PatientIndexEntry,
    PatientIndexPage, PatientTagRequest, Role, TemplateInfo, TemplateName, template_variables,
};
use ward_store::{MessageTemplate, PatientTag, StoreError};

use super::{Actor, AuthSession, Services, require_role};
use crate::error::{ApiError, ApiResult};

/// The X-Wing encapsulation plus the AEAD tag: no tag is shorter.
const MIN_PATIENT_TAG_BYTES: usize = 1120 + 16;

/// Account roles that may read templates (everyone but patients).
const STAFF: &[Role] = &[
    Role::Admin,
    Role::Physician,
    Role::Nurse,
    Role::Pharmacist,
    Role::Compliance,
    Role::Service,
];

fn template_info(t: &MessageTemplate) -> TemplateInfo {
    TemplateInfo {
        name: t.name.clone(),
        text: t.text.clone(),
        priority: t.priority,
        variables: template_variables(&t.text).unwrap_or_default(),
        created_at: t.created_at,
    }
}

impl Services {
    /// Store a patient tag for a conversation the caller (staff) is a member of. The tag must be
    /// sealed to a known journal key. Audited `patient_index.tag` (conversation and key id;
    /// the tag itself is not copied into the audit log).
    pub async fn add_patient_tag(
        &self,
        s: &AuthSession,
        conversation: ConversationId,
        req: PatientTagRequest,
    ) -> ApiResult<u64> {
        require_role(&s.actor(), STAFF)?;
        self.member_conversation(s, conversation).await?;
        let len = req.tag.as_slice().len();
        if !(MIN_PATIENT_TAG_BYTES..=MAX_PATIENT_TAG_BYTES).contains(&len) {
            return Err(ApiError::invalid(format!(
                "a patient tag is {MIN_PATIENT_TAG_BYTES} to {MAX_PATIENT_TAG_BYTES} bytes, not {len}"
            )));
        }
        let seq = self
            .store
            .add_patient_tag(
                &PatientTag {
                    index_seq: 0,
                    conversation_id: conversation,
                    key_id: req.key_id.clone(),
                    tag: req.tag.0,
                    created_at: self.now(),
                },
                MAX_PATIENT_TAGS_PER_CONVERSATION,
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound("journal key") => ApiError::invalid(format!(
                    "journal key {} is not installed; fetch /v1/journal-keys again",
                    req.key_id.chars().take(64).collect::<String>()
                )),
                StoreError::Conflict(_) => ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "conversation {conversation} already has \
                         {MAX_PATIENT_TAGS_PER_CONVERSATION} patient tags"
                    ),
                ),
                other => other.into(),
            })?;
        self.audit
            .record(
                &s.actor(),
                "patient_index.tag",
                Some(conversation.to_string()),
                serde_json::json!({ "conversation": conversation, "key_id": req.key_id,
                                    "index_seq": seq }),
            )
            .await?;
        Ok(seq)
    }

    /// A page of the patient index for a compliance officer, who opens the tags offline
    /// (`ward compliance patient-search`). Audited `patient_index.read` (range and count).
    pub async fn patient_index(
        &self,
        actor: &Actor,
        after: u64,
        limit: usize,
    ) -> ApiResult<PatientIndexPage> {
        require_role(actor, &[Role::Compliance])?;
        if !(1..=MAX_PATIENT_INDEX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to {MAX_PATIENT_INDEX_PAGE}"
            )));
        }
        let mut rows = self.store.patient_tags(after, limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        self.audit
            .record(
                actor,
                "patient_index.read",
                None,
                serde_json::json!({
                    "after": after, "limit": limit, "count": rows.len(),
                    "last": rows.last().map(|r| r.index_seq),
                }),
            )
            .await?;
        Ok(PatientIndexPage {
            entries: rows
                .into_iter()
                .map(|r| PatientIndexEntry {
                    index_seq: r.index_seq,
                    conversation_id: r.conversation_id,
                    key_id: r.key_id,
                    tag: r.tag.into(),
                    created_at: r.created_at,
                })
                .collect(),
            more,
        })
    }

    /// Define a template (admin). The text is checked (placeholders well formed, length, no
    /// control characters). Audited `template.create`.
    pub async fn create_template(
        &self,
        actor: &Actor,
        req: CreateTemplateRequest,
    ) -> ApiResult<TemplateInfo> {
        require_role(actor, &[Role::Admin])?;
        template_variables(&req.text).map_err(|e| ApiError::invalid(e.to_string()))?;
        if self.store.templates().await?.len() >= MAX_TEMPLATES {
            return Err(ApiError::invalid(format!(
                "the organisation already has {MAX_TEMPLATES} templates; delete one first"
            )));
        }
        let t = MessageTemplate {
            name: req.name,
            text: req.text,
            priority: req.priority,
            created_at: self.now(),
        };
        self.store.create_template(&t).await.map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::new(
                ErrorCode::Conflict,
                format!("template {} already exists; delete it first", t.name),
            ),
            other => other.into(),
        })?;
        self.audit
            .record(
                actor,
                "template.create",
                Some(t.name.to_string()),
                serde_json::json!({ "template": t.name, "priority": t.priority.as_str() }),
            )
            .await?;
        Ok(template_info(&t))
    }

    /// Every template (staff).
    pub async fn templates(&self, actor: &Actor) -> ApiResult<Vec<TemplateInfo>> {
        require_role(actor, STAFF)?;
        Ok(self
            .store
            .templates()
            .await?
            .iter()
            .map(template_info)
            .collect())
    }

    /// One template (staff). 404 "template X does not exist".
    pub async fn template(&self, actor: &Actor, name: &TemplateName) -> ApiResult<TemplateInfo> {
        require_role(actor, STAFF)?;
        self.store
            .template(name)
            .await?
            .map(|t| template_info(&t))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("template {name} does not exist"),
                )
            })
    }

    /// Delete a template (admin). Audited `template.delete`.
    pub async fn delete_template(&self, actor: &Actor, name: &TemplateName) -> ApiResult<()> {
        require_role(actor, &[Role::Admin])?;
        if !self.store.delete_template(name).await? {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("template {name} does not exist"),
            ));
        }
        self.audit
            .record(
                actor,
                "template.delete",
                Some(name.to_string()),
                serde_json::json!({ "template": name }),
            )
            .await
    }
}
