//! Messages sent to a clinical role (ADR 0018): the sender's client resolves the role's
//! escalation chain, creates a conversation with every tier in its MLS group (so a tier can
//! read the message the moment it is escalated to, while the sender is offline), and sends
//! the message naming the role and the priority; recipients acknowledge with a response kind
//! (to the server) and an encrypted reply (to everyone in the conversation).

use ward_core::role_message::{Acknowledgement, RoleAddressing};
use ward_core::{MessageContent, MessageRef, Priority};
use ward_proto::{
    AckMessageRequest, AckResponse, ClinicalRoleName, ConversationKind, MessageDelivery, MessageId,
    MessagePriority, RoleAddress, RoleHolders, Username,
};

use crate::{Sent, WardClient, WardError, now_ms};

/// A message sent to a role.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RoleSent {
    /// The message (with the server's notification outcome in `to_role`).
    pub sent: Sent,
    /// The role's holders and chain as resolved before sending.
    pub holders: RoleHolders,
    /// Everyone put into the conversation, by tier order.
    pub members: Vec<Username>,
}

/// How to answer an urgent or STAT message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckChoice {
    /// "I take it."
    Accept,
    /// "I cannot take it."
    Decline,
    /// "Call me."
    CallMe,
    /// A free-text answer (sent only inside the encrypted reply).
    Text(String),
}

impl AckChoice {
    /// `accept`, `decline`, `call-me` (or `call_me`), anything else is free text.
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "accept" => Self::Accept,
            "decline" => Self::Decline,
            "call-me" | "call_me" => Self::CallMe,
            _ => Self::Text(s.trim().to_owned()),
        }
    }

    fn kind(&self) -> AckResponse {
        match self {
            Self::Accept => AckResponse::Accept,
            Self::Decline => AckResponse::Decline,
            Self::CallMe => AckResponse::CallMe,
            Self::Text(_) => AckResponse::FreeText,
        }
    }
}

fn wire_priority(p: Priority) -> MessagePriority {
    match p {
        Priority::Routine => MessagePriority::Routine,
        Priority::Urgent => MessagePriority::Urgent,
        Priority::Stat => MessagePriority::Stat,
    }
}

impl WardClient {
    /// Send `text` to whoever holds `role` now, with its escalation chain in the group. An
    /// unknown role is an error naming it; a role nobody holds is sent on to the chain's later
    /// tiers (`sent.to_role.nobody_on_call` tells the sender at once); a chain with nobody at
    /// all is refused before anything is sent.
    pub async fn send_to_role(
        &mut self,
        role: &ClinicalRoleName,
        text: &str,
        priority: Priority,
        confirm_phi: bool,
    ) -> Result<RoleSent, WardError> {
        self.send_to_role_with_attachments(role, text, &[], priority, confirm_phi, None)
            .await
    }

    /// [`Self::send_to_role`] with files attached (a 12-lead ECG from the ambulance): each
    /// file is checked and encrypted before anything is sent, then uploaded into the new
    /// conversation, so every tier of the chain can open it when it is escalated to.
    pub async fn send_to_role_with_attachments(
        &mut self,
        role: &ClinicalRoleName,
        text: &str,
        files: &[std::path::PathBuf],
        priority: Priority,
        confirm_phi: bool,
        progress: Option<crate::ProgressFn<'_>>,
    ) -> Result<RoleSent, WardError> {
        let mut prepared = Vec::new();
        let r = self
            .send_to_role_inner(
                role,
                text,
                files,
                &mut prepared,
                priority,
                confirm_phi,
                progress,
            )
            .await;
        for p in &prepared {
            p.remove_files();
        }
        self.obey_wipe(r).await
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the public entry points name each"
    )]
    async fn send_to_role_inner(
        &mut self,
        role: &ClinicalRoleName,
        text: &str,
        files: &[std::path::PathBuf],
        prepared: &mut Vec<crate::attachments::PreparedAttachment>,
        priority: Priority,
        confirm_phi: bool,
        mut progress: Option<crate::ProgressFn<'_>>,
    ) -> Result<RoleSent, WardError> {
        if files.len() > ward_core::attachment::MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(WardError::InvalidInput(format!(
                "{} files attached; at most {} per message",
                files.len(),
                ward_core::attachment::MAX_ATTACHMENTS_PER_MESSAGE
            )));
        }
        if text.trim().is_empty() && files.is_empty() {
            return Err(WardError::InvalidInput(
                "the message is empty: give text or attach a file".into(),
            ));
        }
        let me = self.profile.data.username.clone();
        let mut content = MessageContent::text(text, priority, now_ms());
        content.set_role_addressing(&RoleAddressing {
            role: role.clone(),
            sender: me.clone(),
        });
        content
            .validate()
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        self.flush_outbox().await?;
        let holders: RoleHolders = self.api.get(&format!("/v1/roles/{role}/holders")).await?;
        let mut members: Vec<Username> = Vec::new();
        for tier in &holders.escalation {
            for h in &tier.users {
                if h.username != me && !members.contains(&h.username) {
                    members.push(h.username.clone());
                }
            }
        }
        if members.is_empty() {
            return Err(WardError::InvalidInput(format!(
                "nobody holds {role} now and its escalation policy reaches nobody else: \
                 message not sent"
            )));
        }
        // Refuse a bad file before the group exists or anything reaches the server.
        for f in files {
            prepared.push(self.prepare_file(f).await?);
        }
        let mut scanned = text.to_owned();
        for p in prepared.iter() {
            scanned.push('\n');
            scanned.push_str(&p.file_name);
        }
        let labels = self
            .dlp_check(&scanned, ConversationKind::Group, confirm_phi)
            .await?;
        let name = format!("{role} ({})", priority.as_str());
        let conversation = self.create_group(&name, &members).await?;
        for p in prepared.iter() {
            let d = self
                .upload_attachment(conversation, p, crate::transfer::lend(&mut progress))
                .await?;
            content.attachments.push(d);
        }
        let sent = self
            .send_content_to(
                conversation,
                content,
                uuid::Uuid::new_v4(),
                labels,
                Some(RoleAddress {
                    role: role.clone(),
                    priority: wire_priority(priority),
                }),
            )
            .await?;
        Ok(RoleSent {
            sent,
            holders,
            members,
        })
    }

    /// Acknowledge a message sent to a role that this device received: the server records
    /// the response kind (refused for the sender and for non-recipients), then an encrypted
    /// reply carries the answer, who gave it and in which role to everyone in the
    /// conversation. Returns the message's delivery states after the acknowledgement.
    pub async fn acknowledge(
        &mut self,
        message_id: MessageId,
        choice: AckChoice,
    ) -> Result<MessageDelivery, WardError> {
        let m = self.find(message_id)?;
        let text = match &choice {
            AckChoice::Text(t) if t.is_empty() => {
                return Err(WardError::InvalidInput(
                    "the free-text response is empty".into(),
                ));
            }
            AckChoice::Text(t) => t.clone(),
            AckChoice::Accept => "Accepted.".to_owned(),
            AckChoice::Decline => "Declined.".to_owned(),
            AckChoice::CallMe => "Call me.".to_owned(),
        };
        let mut content = MessageContent::text(text.clone(), Priority::Routine, now_ms());
        content.reply_to = Some(MessageRef {
            conversation_id: m.conversation_id,
            message_id: Some(message_id),
            seq: m.seq,
            client_message_id: None,
        });
        content
            .validate()
            .map_err(|e| WardError::InvalidInput(e.to_string()))?;
        let labels = match &choice {
            AckChoice::Text(t) => self.dlp_check(t, ConversationKind::Group, false).await?,
            _ => Vec::new(),
        };
        let delivery: MessageDelivery = self
            .api
            .post(
                &format!("/v1/messages/{message_id}/ack"),
                &AckMessageRequest {
                    response: choice.kind(),
                },
            )
            .await?;
        let as_role = delivery
            .escalation
            .as_ref()
            .and_then(|e| e.acknowledged_as.clone())
            .or(m.to_role.clone());
        content.set_acknowledgement(&Acknowledgement {
            message_id,
            response: choice.kind(),
            by: self.profile.data.username.clone(),
            as_role,
        });
        self.send_content(m.conversation_id, content, uuid::Uuid::new_v4(), labels)
            .await?;
        Ok(delivery)
    }

    /// Per-device delivery states of a message with timestamps, and its escalation when it
    /// was sent to a role (`GET /v1/messages/{id}/status`).
    pub async fn delivery(&mut self, message_id: MessageId) -> Result<MessageDelivery, WardError> {
        self.api
            .get(&format!("/v1/messages/{message_id}/status"))
            .await
    }
}
