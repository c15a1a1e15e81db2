//! Server logic without HTTP: the HTTP handlers and the admin CLI both call these.
//!
//! Every operation takes the acting [`Actor`] (or a session) explicitly, checks what that
//! actor may do, performs the change through the store, and records it in the audit log.

mod audit;
mod auth;
pub mod blobs;
pub mod breakglass;
mod clinical;
mod coverage;
mod delivery;
mod directory;
pub mod escalation;
mod journal;
pub mod retention;
mod secrets;
mod wipe;
pub mod workflow;

use std::sync::{Arc, RwLock};

use time::OffsetDateTime;
use ward_proto::{DeviceId, Role, UserId};
use ward_store::{OrgPolicy, Organisation, Store, User};

pub use audit::AuditLog;
pub use auth::{AuthSession, hash_password_blocking, normalize_enrollment_code};
pub use directory::{DeviceScope, device_info, user_info};
pub use journal::{JOURNAL_PUBLIC_KEY_LEN, journal_key_id};
pub use secrets::{generate_enrollment_code, hash_token};

use crate::clock::Clock;
use crate::hub::Hub;
use crate::keys::{MasterKey, ServerKeys};
use crate::metrics::Metrics;

/// Identity in the server's MLS basic credential when it acts as external sender
/// (RFC 9420 §12.1.8.1), to propose removal of revoked devices.
pub const EXTERNAL_SENDER_IDENTITY: &str = "ward-server";

/// Who performs an operation, for authorization and the audit log.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The acting user; `None` for the server itself or the local admin CLI.
    pub user_id: Option<UserId>,
    /// The acting device.
    pub device_id: Option<DeviceId>,
    /// The acting role; the local CLI acts as `Admin` (it holds the database and master key).
    pub role: Role,
    /// `api` or `cli`, recorded in audit details.
    pub via: &'static str,
}

impl Actor {
    /// The local administration CLI.
    pub fn cli() -> Self {
        Self {
            user_id: None,
            device_id: None,
            role: Role::Admin,
            via: "cli",
        }
    }
    /// The server itself (background jobs).
    pub fn system() -> Self {
        Self {
            user_id: None,
            device_id: None,
            role: Role::Admin,
            via: "system",
        }
    }
}

/// Shared server state and logic.
pub struct Services {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Signing keys.
    pub keys: Arc<ServerKeys>,
    /// Master key for secrets at rest.
    pub master: Arc<MasterKey>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Live connections of this node.
    pub hub: Hub,
    /// Metrics.
    pub metrics: Metrics,
    /// Audit log.
    pub audit: AuditLog,
    /// Link to the other nodes, when `[cluster]` is configured (set once at start).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Where blob bytes live (set once at start; the admin CLI sets it too, so retention
    /// removes objects with records).
    pub blob_objects: std::sync::OnceLock<Arc<crate::objects::BlobObjects>>,
    org: RwLock<Organisation>,
    journal_cache: journal::JournalKeyCache,
    /// This node's escalation task: wake-up and one run at a time (ADR 0018).
    escalation: escalation::EscalationRuntime,
    metrics_public: std::sync::atomic::AtomicBool,
    /// Whether the store announces accepted appends to [`Services::publish_accepted`] in
    /// commit order (ADR 0020); `false` only if another node state registered first, and then
    /// `send_envelope` publishes by itself (unordered under concurrency).
    publish_on_commit: bool,
}

impl Services {
    /// Initialise the organisation (first start) and load the server keys.
    pub async fn start(
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        organisation_name: &str,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Services>> {
        let org = store
            .init_organisation(&Organisation {
                name: organisation_name.to_owned(),
                policy: OrgPolicy::default(),
                created_at: clock.now(),
            })
            .await?;
        let keys = Arc::new(ServerKeys::load_or_create(store.as_ref(), &master).await?);
        let audit = AuditLog::new(store.clone(), keys.clone(), clock.clone());
        // Pushes leave in commit order (ADR 0020): the store's writer hands every accepted
        // append, in order, to one publisher task. Unbounded, but filled no faster than the
        // writer commits and drained by a task that only serialises and queues.
        let (accepted_tx, mut accepted_rx) =
            tokio::sync::mpsc::unbounded_channel::<ward_store::AppendOutcome>();
        let publish_on_commit = store.set_append_listener(Arc::new(move |o| {
            let _ = accepted_tx.send(o.clone());
        }));
        if !publish_on_commit {
            tracing::warn!(
                "the store already announces appends to another server state; this one publishes \
                 pushes from the request path, without per-conversation ordering"
            );
        }
        let services = Arc::new(Services {
            store,
            keys,
            master,
            clock,
            hub: Hub::default(),
            metrics: Metrics::default(),
            audit,
            cluster: std::sync::OnceLock::new(),
            blob_objects: std::sync::OnceLock::new(),
            org: RwLock::new(org),
            journal_cache: journal::JournalKeyCache::default(),
            escalation: escalation::EscalationRuntime::default(),
            metrics_public: false.into(),
            publish_on_commit,
        });
        let weak = Arc::downgrade(&services);
        tokio::spawn(async move {
            while let Some(outcome) = accepted_rx.recv().await {
                let Some(services) = weak.upgrade() else {
                    break;
                };
                services.publish_accepted(outcome);
            }
        });
        Ok(services)
    }

    /// Serve `/metrics` to any client (default: loopback clients and admin sessions only).
    pub fn set_metrics_public(&self, public: bool) {
        self.metrics_public
            .store(public, std::sync::atomic::Ordering::Relaxed);
    }

    /// See [`Services::set_metrics_public`].
    pub fn metrics_public(&self) -> bool {
        self.metrics_public
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Now.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The organisation policy in force.
    pub fn policy(&self) -> OrgPolicy {
        self.org
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .policy
            .clone()
    }

    /// The organisation name.
    pub fn organisation_name(&self) -> String {
        self.org
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .name
            .clone()
    }

    /// The policy as the API shows it (admin, compliance).
    pub fn policy_info(&self, actor: &Actor) -> crate::error::ApiResult<ward_proto::PolicyInfo> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        Ok(policy_info(&self.policy()))
    }

    /// Change policy fields after checking every bound; audited with old and new values.
    pub async fn update_policy(
        &self,
        actor: &Actor,
        req: ward_proto::UpdatePolicyRequest,
    ) -> crate::error::ApiResult<ward_proto::PolicyInfo> {
        require_role(actor, &[Role::Admin])?;
        let mut p = self.policy();
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(crate::error::ApiError::invalid(format!(
                    "{name} must be between {lo} and {hi} seconds (got {v})"
                )))
            }
        };
        if let Some(v) = req.mfa_required {
            p.mfa_required = v;
        }
        if let Some(v) = req.idle_timeout_secs {
            p.idle_timeout_secs = range("idle_timeout_secs", v, 60, 4 * 3600)?;
        }
        if let Some(v) = req.absolute_timeout_secs {
            p.absolute_timeout_secs = range("absolute_timeout_secs", v, 900, 7 * 86400)?;
        }
        if let Some(v) = req.enrollment_ttl_secs {
            p.enrollment_ttl_secs = range("enrollment_ttl_secs", v, 3600, 30 * 86400)?;
        }
        if let Some(v) = req.lockout_secs {
            p.lockout_secs = range("lockout_secs", v, 60, 86400)?;
        }
        if let Some(v) = req.max_failed_logins {
            if !(1..=100).contains(&v) {
                return Err(crate::error::ApiError::invalid(format!(
                    "max_failed_logins must be between 1 and 100 (got {v})"
                )));
            }
            p.max_failed_logins = v;
        }
        if let Some(cs) = req.ciphersuites {
            let known = [
                ward_store::CIPHERSUITE_XWING,
                ward_store::CIPHERSUITE_X25519,
            ];
            let mut seen = std::collections::HashSet::new();
            if cs.is_empty() || cs.iter().any(|c| !known.contains(c) || !seen.insert(*c)) {
                return Err(crate::error::ApiError::invalid(
                    "ciphersuites must list 77 (0x004D, X-Wing) and/or 1 (0x0001, X25519), each once, default first",
                ));
            }
            p.ciphersuites = cs;
        }
        if let Some(v) = req.password_min_length {
            let (lo, hi) = (
                ward_proto::MIN_PASSWORD_CHARS_FLOOR,
                ward_proto::MIN_PASSWORD_CHARS_CEILING,
            );
            if !(lo..=hi).contains(&v) {
                return Err(crate::error::ApiError::invalid(format!(
                    "password_min_length must be between {lo} and {hi} characters (got {v})"
                )));
            }
            p.password_min_length = v;
        }
        if let Some(v) = req.notification_privacy {
            if !v {
                return Err(crate::error::ApiError::invalid(
                    "notification_privacy cannot be turned off: every server-to-device event carries ids only",
                ));
            }
            p.notification_privacy = v;
        }
        if let Some(roles) = req.break_glass_roles {
            p.break_glass_roles = breakglass::check_roles(roles)?;
        }
        if let Some(v) = req.break_glass_max_minutes {
            if !(breakglass::MIN_MAX_MINUTES..=breakglass::MAX_MAX_MINUTES).contains(&v) {
                return Err(crate::error::ApiError::invalid(format!(
                    "break_glass_max_minutes must be between {} and {} (got {v})",
                    breakglass::MIN_MAX_MINUTES,
                    breakglass::MAX_MAX_MINUTES
                )));
            }
            p.break_glass_max_minutes = v;
        }
        if let Some(v) = req.attachment_max_bytes {
            if !(1 << 10..=1 << 40).contains(&v) {
                return Err(crate::error::ApiError::invalid(format!(
                    "attachment_max_bytes must be between 1024 and {} (got {v})",
                    1u64 << 40
                )));
            }
            p.attachment_max_bytes = v;
        }
        if let Some(v) = req.attachment_quota_bytes {
            if !(1 << 20..=1 << 50).contains(&v) {
                return Err(crate::error::ApiError::invalid(format!(
                    "attachment_quota_bytes must be between {} and {} (got {v})",
                    1u64 << 20,
                    1u64 << 50
                )));
            }
            p.attachment_quota_bytes = v;
        }
        if let Some(v) = req.attachment_denied_media_types {
            p.attachment_denied_media_types =
                ward_proto::check_denied_media_types(v).map_err(|e| {
                    crate::error::ApiError::invalid(format!("attachment_denied_media_types: {e}"))
                })?;
        }
        if let Some(v) = req.attachment_denied_extensions {
            p.attachment_denied_extensions =
                ward_proto::check_denied_extensions(v).map_err(|e| {
                    crate::error::ApiError::invalid(format!("attachment_denied_extensions: {e}"))
                })?;
        }
        if p.attachment_max_bytes > p.attachment_quota_bytes {
            return Err(crate::error::ApiError::invalid(
                "attachment_max_bytes must be at most attachment_quota_bytes",
            ));
        }
        if p.absolute_timeout_secs < p.idle_timeout_secs {
            return Err(crate::error::ApiError::invalid(
                "absolute_timeout_secs must be at least idle_timeout_secs",
            ));
        }
        self.set_policy(actor, p.clone()).await?;
        Ok(policy_info(&p))
    }

    /// The attachment policy sending clients apply (any session).
    pub fn attachment_policy(&self) -> ward_proto::AttachmentPolicyInfo {
        let p = self.policy();
        ward_proto::AttachmentPolicyInfo {
            max_bytes: p.attachment_max_bytes,
            denied_media_types: p.attachment_denied_media_types,
            denied_extensions: p.attachment_denied_extensions,
        }
    }

    /// Replace the DLP document (admin). Its detectors and rules are validated by whoever
    /// writes it (the admin CLI uses `ward_core::dlp`) and by every client that reads it;
    /// here only its outer shape and size.
    pub async fn set_dlp_policy(
        &self,
        actor: &Actor,
        doc: serde_json::Value,
    ) -> crate::error::ApiResult<()> {
        require_role(actor, &[Role::Admin])?;
        let obj = doc.as_object().ok_or_else(|| {
            crate::error::ApiError::invalid("the DLP document must be a JSON object")
        })?;
        if let Some(k) = obj.keys().find(|k| *k != "config" && *k != "policy") {
            return Err(crate::error::ApiError::invalid(format!(
                "unknown key {k:?} in the DLP document: expected config and policy"
            )));
        }
        if doc.to_string().len() > 64 * 1024 {
            return Err(crate::error::ApiError::invalid(
                "the DLP document must be at most 64 KiB",
            ));
        }
        let mut p = self.policy();
        p.dlp = Some(doc);
        self.set_policy(actor, p).await
    }

    /// The DLP document, signed by the organisation CA.
    pub fn signed_dlp_policy(&self) -> ward_proto::SignedDlpPolicy {
        use ed25519_dalek::Signer;
        let document = self
            .policy()
            .dlp
            .map(|d| d.to_string())
            .unwrap_or_else(|| "{}".to_owned());
        let signature = self
            .keys
            .org_ca
            .sign(&ward_proto::SignedDlpPolicy::signed_bytes(&document));
        ward_proto::SignedDlpPolicy {
            document,
            signature: signature.to_bytes().to_vec().into(),
        }
    }

    /// Replace the policy (stored, then cached).
    pub async fn set_policy(
        &self,
        actor: &Actor,
        policy: OrgPolicy,
    ) -> crate::error::ApiResult<()> {
        require_role(actor, &[Role::Admin])?;
        self.store.set_policy(&policy).await?;
        self.audit
            .record(
                actor,
                "policy.change",
                None,
                serde_json::to_value(&policy).unwrap_or_default(),
            )
            .await?;
        self.org.write().unwrap_or_else(|p| p.into_inner()).policy = policy;
        Ok(())
    }

    async fn user_or_404(&self, id: UserId) -> crate::error::ApiResult<User> {
        self.store
            .user(id)
            .await?
            .ok_or_else(|| crate::error::ApiError::not_found("user"))
    }
}

fn policy_info(p: &OrgPolicy) -> ward_proto::PolicyInfo {
    ward_proto::PolicyInfo {
        mfa_required: p.mfa_required,
        idle_timeout_secs: p.idle_timeout_secs,
        absolute_timeout_secs: p.absolute_timeout_secs,
        enrollment_ttl_secs: p.enrollment_ttl_secs,
        max_failed_logins: p.max_failed_logins,
        lockout_secs: p.lockout_secs,
        ciphersuites: p.ciphersuites.clone(),
        password_min_length: p.password_min_length,
        notification_privacy: p.notification_privacy,
        break_glass_roles: p.break_glass_roles.clone(),
        break_glass_max_minutes: p.break_glass_max_minutes,
        attachment_max_bytes: p.attachment_max_bytes,
        attachment_quota_bytes: p.attachment_quota_bytes,
        attachment_denied_media_types: p.attachment_denied_media_types.clone(),
        attachment_denied_extensions: p.attachment_denied_extensions.clone(),
    }
}

/// Deny unless the actor has one of `roles`.
pub fn require_role(actor: &Actor, roles: &[Role]) -> crate::error::ApiResult<()> {
    if roles.contains(&actor.role) {
        Ok(())
    } else {
        Err(crate::error::ApiError::forbidden(format!(
            "the {} role may not do this",
            actor.role
        )))
    }
}
