//! Break-glass emergency access on the client (ADR 0016).
//!
//! - [`WardClient::break_glass`] asks the server for time-limited access to a conversation,
//!   after refusing a reason in which the DLP detectors find an identifier (the reason is
//!   stored in clear in the grant and the audit log).
//! - In every sync's maintenance a member's client fulfils the active grants of its
//!   conversations (claims the grantee's KeyPackages and commits her addition, naming the
//!   grant), and removes from the MLS group the devices of a grantee whose grant ended and
//!   who is no longer a member on the server.
//! - [`crate::SyncReport::break_glass`] carries the active grants, for the visible notice.
//!
//! What it does NOT do: give the grantee the history from before her addition (MLS forward
//! secrecy); the first member online adds her.

use ward_core::dlp::{DlpConfig, scan};
use ward_proto::{
    BreakGlassGrant, BreakGlassRequest, ClaimKeyPackagesRequest, ClaimKeyPackagesResponse,
    ClaimedKeyPackage, ConversationId, ConversationInfo, DeviceId, ErrorCode,
};

use crate::{WardClient, WardError};

impl WardClient {
    /// Open break-glass access to `conversation` for `minutes` (the server's default when
    /// `None`). Refused before anything is sent when the reason contains an identifier the
    /// organisation's DLP detectors find.
    pub async fn break_glass(
        &mut self,
        conversation: ConversationId,
        reason: &str,
        minutes: Option<u32>,
    ) -> Result<BreakGlassGrant, WardError> {
        let doc = self.dlp_document().await?;
        let config = DlpConfig::new(doc.config.unwrap_or_default()).map_err(|e| {
            WardError::InvalidInput(format!(
                "the organisation's DLP configuration is invalid ({e}); contact your administrator"
            ))
        })?;
        let mut found: Vec<&'static str> = scan(reason, &config)
            .iter()
            .map(|f| f.detector.as_str())
            .collect();
        found.sort_unstable();
        found.dedup();
        if !found.is_empty() {
            return Err(WardError::InvalidInput(format!(
                "the reason contains what looks like patient information ({}); it is stored in \
                 clear in the audit log, so describe the emergency without identifiers",
                found.join(", ")
            )));
        }
        let grant: BreakGlassGrant = self
            .api
            .post(
                &format!("/v1/conversations/{conversation}/break-glass"),
                &BreakGlassRequest {
                    reason: reason.to_owned(),
                    minutes,
                },
            )
            .await?;
        Ok(grant)
    }

    /// The break-glass grants this account may see (every grant for admins and compliance
    /// officers; otherwise those of this device's conversations and its user's own).
    pub async fn break_glass_grants(&mut self) -> Result<Vec<BreakGlassGrant>, WardError> {
        self.api.get("/v1/break-glass").await
    }

    /// The grants for maintenance; a server without break-glass answers 404: none.
    pub(crate) async fn fetch_break_glass(&mut self) -> Result<Vec<BreakGlassGrant>, WardError> {
        match self.api.get("/v1/break-glass").await {
            Ok(g) => Ok(g),
            Err(e) if e.is(ErrorCode::NotFound) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Fulfil active grants of conversation `id` and remove the devices of grantees whose
    /// grant ended. Failures become warnings.
    pub(crate) async fn maintain_break_glass(
        &mut self,
        id: ConversationId,
        info: &ConversationInfo,
        grants: &[BreakGlassGrant],
        warnings: &mut Vec<String>,
    ) -> Result<(), WardError> {
        let me = self.profile.data.user_id;
        // Her own client never commits her addition or removal: the members' clients do.
        for g in grants
            .iter()
            .filter(|g| g.conversation_id == id && g.user_id != me)
        {
            let in_group: Vec<DeviceId> = self
                .core
                .members(id)
                .iter()
                .filter(|c| c.user_id == g.user_id)
                .map(|c| c.device_id)
                .collect();
            let member = info.members.iter().any(|m| m.user_id == g.user_id);
            if g.ended_at.is_some() && !member && !in_group.is_empty() {
                let user = g.user_id;
                if let Err(e) = self
                    .commit(id, Vec::new(), vec![user], |core| {
                        core.remove_devices(id, &in_group).map(Some)
                    })
                    .await
                {
                    warnings.push(format!(
                        "could not remove {} (break-glass ended) from {id}: {e}",
                        g.username
                    ));
                }
            } else if g.ended_at.is_none()
                && in_group.is_empty()
                && !member
                && let Err(e) = self.fulfil(id, g).await
            {
                warnings.push(format!(
                    "could not add {} (break-glass) to {id}: {e}",
                    g.username
                ));
            }
        }
        Ok(())
    }

    /// Claim the grantee's KeyPackages and commit her addition, naming the grant.
    async fn fulfil(&mut self, id: ConversationId, g: &BreakGlassGrant) -> Result<(), WardError> {
        let claimed: Vec<ClaimedKeyPackage> = self
            .api
            .post::<_, ClaimKeyPackagesResponse>(
                &format!("/v1/users/{}/key-packages/claim", g.username),
                &ClaimKeyPackagesRequest::default(),
            )
            .await?
            .key_packages;
        self.commit_adding(id, claimed, vec![g.user_id], Some(g.grant_id))
            .await
    }
}
