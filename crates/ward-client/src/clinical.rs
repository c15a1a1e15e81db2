//! Patient-context conversations, the patient index and message templates (ADR 0019).
//!
//! A conversation is bound to a patient by an application message whose content carries the
//! patient (`MessageContent::patient`) and the marker `conversation_patient: true`: the data
//! travels only inside MLS, and every member's client records the binding and shows it as a
//! banner. The binding device also stores a *patient tag* on the server: the identifier
//! sealed to the organisation's journal key (`ward_core::patient_index`), which only a
//! compliance officer holding the offline key can open.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use ward_core::journal::JournalKeyPair;
use ward_core::patient_index::{PatientIdentifier, PatientTagOpener, seal_patient_tag};
use ward_core::{MessageContent, PatientContext, Priority};
use ward_proto::{
    ConversationId, DirectoryEntry, DndInfo, DndRequest, PatientIndexEntry, PatientIndexPage,
    PatientTagRequest, TemplateInfo, TemplateList, TemplateName, TemplatePriority, Username,
    render_template,
};

use crate::{Sent, Target, WardClient, WardError, now_ms};

/// The content field that marks a message as binding its conversation to its patient.
pub const BIND_FIELD: &str = "conversation_patient";

/// What one patient search found: the conversations whose tag names the identifier, and how
/// many tags could not be opened with the given keys.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PatientSearch {
    /// Matching conversations, each once, in index order.
    pub conversations: Vec<ConversationId>,
    /// Tags examined.
    pub examined: usize,
    /// Tags sealed to a key not given.
    pub other_key: usize,
    /// Tags that did not open (altered, or moved from another conversation).
    pub unopened: usize,
}

impl WardClient {
    /// Create a group bound to `patient`: the group is created, the binding message sent and
    /// the patient tag stored. Refused before anything is created when the organisation has
    /// no journal key (a patient conversation must be findable by compliance).
    pub async fn create_patient_group(
        &mut self,
        name: &str,
        members: &[Username],
        patient: PatientContext,
    ) -> Result<ConversationId, WardError> {
        self.require_index_key().await?;
        let id = self.create_group(name, members).await?;
        self.bind_patient(id, patient).await?;
        Ok(id)
    }

    /// Bind a conversation this device is in (or the direct conversation with a user) to
    /// `patient`: send the binding message and store the tag. A later binding replaces the
    /// banner; every binding leaves its tag in the index.
    pub async fn bind_patient_to(
        &mut self,
        target: Target,
        patient: PatientContext,
    ) -> Result<ConversationId, WardError> {
        self.require_index_key().await?;
        self.flush_outbox().await?;
        let id = match target {
            Target::Conversation(id) => self.active_conversation(id)?,
            Target::User(u) => self.direct_conversation(&u).await?,
        };
        self.bind_patient(id, patient).await?;
        Ok(id)
    }

    /// The patient a conversation is bound to, as this device last learned it.
    pub fn conversation_patient(&self, id: ConversationId) -> Option<&PatientContext> {
        self.profile.data.patients.get(&id)
    }

    async fn bind_patient(
        &mut self,
        id: ConversationId,
        patient: PatientContext,
    ) -> Result<Sent, WardError> {
        let identifier = patient
            .identifier()
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let mut content = MessageContent::text(
            format!(
                "{} set the patient of this conversation",
                self.profile.data.username
            ),
            Priority::Routine,
            now_ms(),
        );
        content.patient = Some(patient);
        content.extra.insert(BIND_FIELD.into(), true.into());
        let sent = self
            .send_content(id, content, uuid::Uuid::new_v4(), Vec::new())
            .await?;
        self.store_patient_tag(id, &identifier).await?;
        Ok(sent)
    }

    async fn require_index_key(&mut self) -> Result<(), WardError> {
        self.refresh_journal_keys().await?;
        if self.journal.current_key().is_none() {
            return Err(WardError::InvalidInput(
                "the organisation has no compliance journal key, so a patient conversation \
                 could not be found by compliance; ask an administrator to install one \
                 (ward admin org set-journal-key)"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn store_patient_tag(
        &mut self,
        id: ConversationId,
        identifier: &PatientIdentifier,
    ) -> Result<(), WardError> {
        let key = self
            .journal
            .current_key()
            .cloned()
            .ok_or_else(|| WardError::InvalidInput("no current journal key".into()))?;
        let tag = seal_patient_tag(&key, id, identifier, &mut rand::rngs::OsRng)
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        self.api
            .post_empty(
                &format!("/v1/conversations/{id}/patient-tags"),
                &PatientTagRequest {
                    key_id: key.key_id().to_owned(),
                    tag: tag.into(),
                },
            )
            .await
    }

    /// Records a binding carried by received or sent content.
    pub(crate) fn note_patient(&mut self, id: ConversationId, content: &MessageContent) {
        if content.extra.get(BIND_FIELD).and_then(|v| v.as_bool()) == Some(true)
            && let Some(p) = &content.patient
        {
            self.profile.data.patients.insert(id, p.clone());
        }
    }

    /// A page of the patient index (compliance role; audited by the server).
    pub async fn patient_index(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<PatientIndexPage, WardError> {
        self.api
            .get(&format!(
                "/v1/compliance/patient-index?after={after}&limit={limit}"
            ))
            .await
    }

    /// Downloads the whole patient index and opens every tag with `keys` (offline keys of a
    /// compliance officer), keeping the conversations about `identifier`.
    pub async fn search_patient(
        &self,
        keys: &[JournalKeyPair],
        identifier: &PatientIdentifier,
    ) -> Result<PatientSearch, WardError> {
        let mut out = PatientSearch::default();
        let mut after = 0;
        loop {
            let page = self
                .patient_index(after, ward_proto::MAX_PATIENT_INDEX_PAGE)
                .await?;
            if let Some(last) = page.entries.last() {
                after = last.index_seq;
            }
            match_patient_tags(keys, identifier, &page.entries, &mut out);
            if !page.more || page.entries.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Every organisation template (staff).
    pub async fn templates(&self) -> Result<Vec<TemplateInfo>, WardError> {
        let list: TemplateList = self.api.get("/v1/templates").await?;
        Ok(list.templates)
    }

    /// Render template `name` with `vars` (every placeholder needs a value, every value a
    /// placeholder) and send the text like any message: DLP check, then MLS. The template's
    /// priority applies unless `priority` overrides it.
    pub async fn send_template(
        &mut self,
        target: Target,
        name: &str,
        vars: &BTreeMap<String, String>,
        priority: Option<Priority>,
        confirm_phi: bool,
    ) -> Result<Sent, WardError> {
        let name = TemplateName::parse(name).map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let t: TemplateInfo = self.api.get(&format!("/v1/templates/{name}")).await?;
        let text = render_template(&t.text, vars)
            .map_err(|e| WardError::InvalidInput(format!("template {name}: {e}")))?;
        let priority = priority.unwrap_or(match t.priority {
            TemplatePriority::Routine => Priority::Routine,
            TemplatePriority::Urgent => Priority::Urgent,
            TemplatePriority::Stat => Priority::Stat,
        });
        self.send_message(target, &text, priority, confirm_phi)
            .await
    }
}

/// A direct message and, when the recipient is on do-not-disturb, the copy that went to the
/// covering colleague.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoveredSend {
    /// The message to the recipient (its fields at the top level of the JSON, as for a plain
    /// send).
    #[serde(flatten)]
    pub sent: Sent,
    /// The recipient's do-not-disturb, if on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub do_not_disturb: Option<DndInfo>,
    /// The copy sent to the covering colleague (none when the sender is that colleague).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cover_sent: Option<Sent>,
}

impl WardClient {
    /// Turn do-not-disturb on: `cover` receives what is addressed to this user (role
    /// messages, and direct messages through the senders' clients) until `until` or
    /// [`WardClient::clear_dnd`].
    pub async fn set_dnd(
        &self,
        cover: &Username,
        until: Option<OffsetDateTime>,
    ) -> Result<DndInfo, WardError> {
        self.api
            .put(
                "/v1/me/dnd",
                &DndRequest {
                    cover: cover.clone(),
                    until,
                },
            )
            .await
    }

    /// Turn do-not-disturb off.
    pub async fn clear_dnd(&self) -> Result<(), WardError> {
        self.api.delete("/v1/me/dnd").await
    }

    /// A user's directory entry (with their do-not-disturb, if on).
    pub async fn directory_entry(&self, user: &Username) -> Result<DirectoryEntry, WardError> {
        self.api.get(&format!("/v1/users/{user}")).await
    }

    /// Send a direct message; when the recipient is on do-not-disturb, also send it, marked
    /// "covering for", to whoever covers, and say so in the result.
    pub async fn send_direct_covered(
        &mut self,
        to: &Username,
        text: &str,
        priority: Priority,
        confirm_phi: bool,
    ) -> Result<CoveredSend, WardError> {
        // Offline the message is still sent (queued); only the cover's copy needs the server.
        let entry = self.directory_entry(to).await.ok();
        let sent = self
            .send_message(Target::User(to.clone()), text, priority, confirm_phi)
            .await?;
        let Some(dnd) = entry.and_then(|e| e.do_not_disturb) else {
            return Ok(CoveredSend {
                sent,
                do_not_disturb: None,
                cover_sent: None,
            });
        };
        let cover_sent =
            if dnd.effective_cover == self.profile.data.username || dnd.effective_cover == *to {
                None
            } else {
                let copy = format!("[covering for {to}] {text}");
                Some(
                    self.send_message(
                        Target::User(dnd.effective_cover.clone()),
                        &copy,
                        priority,
                        confirm_phi,
                    )
                    .await?,
                )
            };
        Ok(CoveredSend {
            sent,
            do_not_disturb: Some(dnd),
            cover_sent,
        })
    }
}

/// Opens each entry with the key it names and collects the conversations about `identifier`.
pub fn match_patient_tags(
    keys: &[JournalKeyPair],
    identifier: &PatientIdentifier,
    entries: &[PatientIndexEntry],
    out: &mut PatientSearch,
) {
    // One opener per key: deriving the private key costs more than opening a tag.
    let openers: Vec<(&str, Option<PatientTagOpener>)> = keys
        .iter()
        .map(|k| (k.public().key_id(), PatientTagOpener::new(k).ok()))
        .collect();
    for e in entries {
        out.examined += 1;
        let Some((_, opener)) = openers.iter().find(|(id, _)| *id == e.key_id) else {
            out.other_key += 1;
            continue;
        };
        let Some(opener) = opener else {
            out.unopened += 1;
            continue;
        };
        match opener.open(e.conversation_id, e.tag.as_slice()) {
            Ok(found) if &found == identifier => {
                if !out.conversations.contains(&e.conversation_id) {
                    out.conversations.push(e.conversation_id);
                }
            }
            Ok(_) => {}
            Err(_) => out.unopened += 1,
        }
    }
}
