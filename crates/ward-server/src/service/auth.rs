//! Enrollment, login, sessions and the second factor.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ed25519_dalek::Signer;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use time::Duration;
use totp_rs::{Secret, TOTP};
use ward_proto::{
    ChangePasswordRequest, ChangePasswordResponse, DeviceCredential, DeviceId, DeviceStatus,
    EnrollRequest, EnrollResponse, ErrorCode, LoginRequest, LoginResponse, NewDevice, SessionInfo,
    UserStatus,
};
use ward_store::{Device, Enrollment, Session, StoreError, User};
use zeroize::Zeroizing;

use super::secrets::{generate_token, hash_token};
use super::{Actor, Services};
use crate::error::{ApiError, ApiResult};

/// OWASP's Argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password (CPU-heavy: call from a blocking thread).
pub fn hash_password_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))?
        .to_string())
}

fn verify_password_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so timing does not reveal it.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password_blocking("ward-dummy-password-for-timing").unwrap_or_default())
}

async fn verify_password(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let phc = phc.unwrap_or_else(|| dummy_hash().to_owned());
        verify_password_blocking(&password, &phc)
    })
    .await
    .unwrap_or(false)
}

/// Normalise a typed enrollment code: ignore case, spaces and dashes.
pub fn normalize_enrollment_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// NIST SP 800-63B-4 rules (`ward_proto::check_password`) with the policy's minimum length.
pub fn check_password_rules(
    password: &str,
    username: &str,
    policy: &ward_store::OrgPolicy,
) -> ApiResult<()> {
    let min = ward_proto::min_password_chars(policy.password_min_length, policy.mfa_required);
    ward_proto::check_password(password, username, min)
        .map_err(|e| ApiError::invalid(e.to_string()))
}

fn totp_for(secret: &[u8], issuer: &str, account: &str) -> ApiResult<TOTP> {
    let issuer: String = issuer.chars().filter(|c| *c != ':').collect();
    TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret.to_vec(),
        Some(issuer),
        account.to_owned(),
    )
    .map_err(|e| ApiError::internal(&format!("totp setup: {e}")))
}

/// Seal label of a user's TOTP seed: binding the user id means a sealed seed copied into
/// another user's row does not open.
fn totp_label(user: ward_proto::UserId) -> String {
    format!("totp-secret:{user}")
}

/// The 30-second step whose code matches, allowing one step of clock skew either way.
fn matching_totp_step(totp: &TOTP, code: &str, unix: u64) -> Option<u64> {
    let step = unix / 30;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| {
            let expected = totp.generate(s * 30);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        })
}

fn validate_new_device(d: &NewDevice) -> ApiResult<()> {
    let n = d.name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "device name must be 1 to 64 printable characters",
        ));
    }
    if d.signature_key.len() != 32 {
        return Err(ApiError::invalid(
            "device signature_key must be a 32-byte Ed25519 public key",
        ));
    }
    if ed25519_dalek::VerifyingKey::from_bytes(
        d.signature_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::invalid("bad key length"))?,
    )
    .is_err()
    {
        return Err(ApiError::invalid(
            "device signature_key is not a valid Ed25519 point",
        ));
    }
    Ok(())
}

/// A validated session.
#[derive(Clone, Debug)]
pub struct AuthSession {
    /// The user.
    pub user: User,
    /// The device the session is bound to.
    pub device_id: DeviceId,
    /// Hash of the presented token.
    pub token_hash: [u8; 32],
}

impl AuthSession {
    /// As an audit actor.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user.id),
            device_id: Some(self.device_id),
            role: self.user.role,
            via: "api",
        }
    }
}

impl Services {
    /// Issue a signed credential for a device.
    pub fn issue_credential(
        &self,
        user: &User,
        device_id: DeviceId,
        key: &[u8],
    ) -> DeviceCredential {
        let mut c = DeviceCredential {
            device_id,
            user_id: user.id,
            username: user.username.clone(),
            signature_key: key.to_vec().into(),
            issued_at: self.now().unix_timestamp(),
            signature: Default::default(),
        };
        c.signature = self
            .keys
            .org_ca
            .sign(&c.signed_bytes())
            .to_bytes()
            .to_vec()
            .into();
        c
    }

    fn new_session(&self, user: &User, device_id: DeviceId) -> (String, Session, SessionInfo) {
        let policy = self.policy();
        let token = generate_token();
        let now = self.now();
        let session = Session {
            token_hash: hash_token(&token),
            user_id: user.id,
            device_id,
            created_at: now,
            last_used_at: now,
            expires_at: now + Duration::seconds(policy.absolute_timeout_secs as i64),
        };
        let info = SessionInfo {
            token: token.clone(),
            device_id,
            expires_at: session.expires_at,
            idle_timeout_secs: policy.idle_timeout_secs,
        };
        (token, session, info)
    }

    fn new_device_record(&self, user: &User, d: &NewDevice) -> (Device, DeviceCredential) {
        let id = DeviceId::random();
        let cred = self.issue_credential(user, id, d.signature_key.as_slice());
        let device = Device {
            id,
            user_id: user.id,
            name: d.name.trim().to_owned(),
            signature_key: d.signature_key.0.clone(),
            credential: serde_json::to_vec(&cred).unwrap_or_default(),
            status: DeviceStatus::Active,
            created_at: self.now(),
            revoked_at: None,
            last_seen_at: None,
        };
        (device, cred)
    }

    /// First use of an enrollment code: set the password and second factor, register the
    /// first device, open a session.
    pub async fn enroll(&self, req: EnrollRequest) -> ApiResult<EnrollResponse> {
        validate_new_device(&req.device)?;
        let bad_code = || {
            ApiError::new(
                ErrorCode::InvalidEnrollmentCode,
                "enrollment code is wrong, used or expired",
            )
        };
        let Some(user) = self.store.user_by_name(&req.username).await? else {
            return Err(bad_code());
        };
        let code_hash = hash_token(&normalize_enrollment_code(&req.enrollment_code));
        let now = self.now();
        let stored = self.store.enrollment_code(user.id).await?;
        let valid = user.status == UserStatus::Pending
            && stored
                .as_ref()
                .is_some_and(|c| bool::from(c.code_hash.ct_eq(&code_hash)) && c.expires_at > now);
        if !valid {
            self.audit
                .record(
                    &Actor::system(),
                    "enroll.failure",
                    Some(user.id.to_string()),
                    serde_json::json!({}),
                )
                .await?;
            return Err(bad_code());
        }
        check_password_rules(&req.password, user.username.as_str(), &self.policy())?;
        let password = Zeroizing::new(req.password);
        let pw = password.clone();
        let password_hash = tokio::task::spawn_blocking(move || hash_password_blocking(&pw))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
        let secret = Zeroizing::new(
            Secret::generate_secret()
                .to_bytes()
                .map_err(|e| ApiError::internal(&format!("{e:?}")))?,
        );
        let totp = totp_for(&secret, &self.organisation_name(), user.username.as_str())?;
        let (device, credential) = self.new_device_record(&user, &req.device);
        let (_, session, info) = self.new_session(&user, device.id);
        let enrollment = Enrollment {
            user_id: user.id,
            code_hash,
            password_hash,
            totp_secret_enc: self.master.seal(&totp_label(user.id), &secret),
            device: device.clone(),
            session,
            now,
        };
        match self.store.complete_enrollment(&enrollment).await {
            Ok(()) => {}
            Err(StoreError::AlreadyConsumed) => return Err(bad_code()),
            Err(e) => return Err(e.into()),
        }
        let actor = Actor {
            user_id: Some(user.id),
            device_id: Some(device.id),
            role: user.role,
            via: "api",
        };
        self.audit
            .record(
                &actor,
                "enroll.success",
                Some(user.id.to_string()),
                serde_json::json!({}),
            )
            .await?;
        self.audit
            .record(
                &actor,
                "device.register",
                Some(device.id.to_string()),
                serde_json::json!({"user_id": user.id}),
            )
            .await?;
        Ok(EnrollResponse {
            user_id: user.id,
            device: credential,
            session: info,
            totp_secret: totp.get_secret_base32(),
            otpauth_uri: totp.get_url(),
        })
    }

    /// Log in with password and (when required) TOTP, on an existing or a new device.
    pub async fn login(&self, req: LoginRequest) -> ApiResult<LoginResponse> {
        if let Some(d) = &req.new_device {
            validate_new_device(d)?;
        }
        if req.device_id.is_some() == req.new_device.is_some() {
            return Err(ApiError::invalid(
                "give exactly one of device_id or new_device",
            ));
        }
        // A wiped device learns it on any login attempt, whatever the password: the
        // instruction only tells it to erase itself (ADR 0011).
        if let Some(id) = req.device_id {
            let order = self.store.wipe_order(id).await?;
            if let Some(wiped) = self.wipe_answer(order, "login").await? {
                return Err(wiped);
            }
        }
        let denied = || {
            ApiError::new(
                ErrorCode::InvalidCredentials,
                "username, password or second factor is wrong",
            )
        };
        let now = self.now();
        let user = self.store.user_by_name(&req.username).await?;
        let ok_pw = verify_password(
            req.password.clone(),
            user.as_ref().and_then(|u| u.password_hash.clone()),
        )
        .await;
        let Some(user) = user else {
            self.login_failed(None, req.username.as_str(), "unknown_user")
                .await?;
            return Err(denied());
        };
        if user.locked_until.is_some_and(|t| t > now) {
            self.login_failed(Some(&user), user.username.as_str(), "locked")
                .await?;
            return Err(ApiError::new(
                ErrorCode::AccountLocked,
                "account is locked after repeated failures; try again later",
            ));
        }
        let policy = self.policy();
        let ok_totp = match (&user.totp_secret_enc, &req.totp) {
            (Some(enc), Some(code)) => {
                let secret = self
                    .master
                    .open(&totp_label(user.id), enc)
                    .map_err(|e| ApiError::internal(&e))?;
                let totp = totp_for(&secret, &self.organisation_name(), user.username.as_str())?;
                match matching_totp_step(&totp, code.trim(), now.unix_timestamp().max(0) as u64) {
                    // Only a correct password may consume a step, or guessing could burn codes.
                    Some(step) if ok_pw => self.store.use_totp_step(user.id, step).await?,
                    Some(_) => true,
                    None => false,
                }
            }
            (_, None) => !policy.mfa_required,
            (None, Some(_)) => false,
        };
        if !ok_pw || !ok_totp || user.status == UserStatus::Pending {
            let lock_until = now + Duration::seconds(policy.lockout_secs as i64);
            self.store
                .record_login_failure(user.id, policy.max_failed_logins, lock_until)
                .await?;
            let reason = if !ok_pw {
                "bad_password"
            } else if !ok_totp {
                "bad_second_factor"
            } else {
                "not_enrolled"
            };
            self.login_failed(Some(&user), user.username.as_str(), reason)
                .await?;
            return Err(denied());
        }
        if user.status == UserStatus::Suspended {
            self.login_failed(Some(&user), user.username.as_str(), "suspended")
                .await?;
            return Err(ApiError::new(
                ErrorCode::AccountSuspended,
                "account is suspended; contact your administrator",
            ));
        }
        let (device_id, credential, new_device) = if let Some(id) = req.device_id {
            let d = self.store.device(id).await?;
            match d {
                Some(d) if d.user_id == user.id && d.status == DeviceStatus::Active => {
                    let cred: DeviceCredential = serde_json::from_slice(&d.credential)
                        .map_err(|e| ApiError::internal(&format!("stored credential: {e}")))?;
                    (d.id, cred, None)
                }
                Some(d) if d.user_id == user.id => {
                    self.login_failed(Some(&user), user.username.as_str(), "device_revoked")
                        .await?;
                    return Err(ApiError::forbidden(
                        "this device was revoked; enroll it again as a new device",
                    ));
                }
                _ => {
                    return Err(ApiError::invalid(
                        "device_id is not a device of this account",
                    ));
                }
            }
        } else {
            let nd = req
                .new_device
                .as_ref()
                .ok_or_else(|| ApiError::invalid("new_device missing"))?;
            let (device, cred) = self.new_device_record(&user, nd);
            (device.id, cred, Some(device))
        };
        let (_, session, info) = self.new_session(&user, device_id);
        match &new_device {
            Some(d) => self.store.create_device(d, Some(&session)).await?,
            None => self.store.create_session(&session).await?,
        }
        self.store.reset_login_failures(user.id).await?;
        let actor = Actor {
            user_id: Some(user.id),
            device_id: Some(device_id),
            role: user.role,
            via: "api",
        };
        if new_device.is_some() {
            self.audit
                .record(
                    &actor,
                    "device.register",
                    Some(device_id.to_string()),
                    serde_json::json!({"user_id": user.id}),
                )
                .await?;
        }
        self.audit
            .record(
                &actor,
                "login.success",
                Some(user.id.to_string()),
                serde_json::json!({}),
            )
            .await?;
        self.metrics
            .logins
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: "success".into(),
            })
            .inc();
        Ok(LoginResponse {
            user_id: user.id,
            role: user.role,
            device: credential,
            session: info,
        })
    }

    async fn login_failed(
        &self,
        user: Option<&User>,
        username: &str,
        reason: &str,
    ) -> ApiResult<()> {
        self.metrics
            .logins
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: "failure".into(),
            })
            .inc();
        let actor = Actor {
            user_id: user.map(|u| u.id),
            device_id: None,
            role: user.map_or(ward_proto::Role::Patient, |u| u.role),
            via: "api",
        };
        self.audit
            .record(
                &actor,
                "login.failure",
                Some(username.to_owned()),
                serde_json::json!({ "reason": reason }),
            )
            .await
    }

    /// Validate a bearer token: exists, within absolute and idle timeouts, user active,
    /// device active. Records the use.
    pub async fn authenticate(&self, token: &str) -> ApiResult<AuthSession> {
        let token_hash = hash_token(token);
        let Some(s) = self.store.session(&token_hash).await? else {
            // A token of a wiped device gets the signed instruction instead (ADR 0011).
            let order = self.store.wipe_order_by_token(&token_hash).await?;
            if let Some(wiped) = self.wipe_answer(order, "session").await? {
                return Err(wiped);
            }
            return Err(ApiError::unauthenticated(
                "session is unknown, ended or revoked; log in again",
            ));
        };
        let now = self.now();
        let idle = Duration::seconds(self.policy().idle_timeout_secs as i64);
        if now >= s.expires_at || now - s.last_used_at > idle {
            self.store.delete_session(&token_hash).await?;
            let why = if now >= s.expires_at {
                "absolute"
            } else {
                "idle"
            };
            let actor = Actor {
                user_id: Some(s.user_id),
                device_id: Some(s.device_id),
                role: ward_proto::Role::Patient,
                via: "api",
            };
            self.audit
                .record(
                    &actor,
                    "session.expired",
                    Some(s.user_id.to_string()),
                    serde_json::json!({"timeout": why}),
                )
                .await?;
            return Err(ApiError::unauthenticated(format!(
                "session expired ({why} timeout); log in again"
            )));
        }
        let user = self
            .user_or_404(s.user_id)
            .await
            .map_err(|_| ApiError::unauthenticated("session user is gone"))?;
        if user.status != UserStatus::Active {
            return Err(ApiError::unauthenticated("account is not active"));
        }
        match self.store.device(s.device_id).await? {
            Some(d) if d.status == DeviceStatus::Active => {}
            _ => return Err(ApiError::unauthenticated("device was revoked")),
        }
        // Coarse touches keep the idle timeout exact to a few seconds without a write per request.
        if now - s.last_used_at > Duration::seconds(5) {
            self.store.touch_session(&token_hash, now).await?;
        }
        Ok(AuthSession {
            user,
            device_id: s.device_id,
            token_hash,
        })
    }

    /// Re-check a session held by a long-lived connection (no touch).
    pub async fn revalidate(&self, s: &AuthSession) -> ApiResult<()> {
        let Some(stored) = self.store.session(&s.token_hash).await? else {
            return Err(ApiError::unauthenticated("session ended"));
        };
        let now = self.now();
        let idle = Duration::seconds(self.policy().idle_timeout_secs as i64);
        if now >= stored.expires_at || now - stored.last_used_at > idle {
            return Err(ApiError::unauthenticated("session expired"));
        }
        match self.store.device(s.device_id).await? {
            Some(d) if d.status == DeviceStatus::Active => Ok(()),
            _ => Err(ApiError::unauthenticated("device was revoked")),
        }
    }

    /// End the caller's session.
    pub async fn logout(&self, session: &AuthSession) -> ApiResult<()> {
        self.store.delete_session(&session.token_hash).await?;
        self.hub.end_device(session.device_id, "logged out");
        self.audit
            .record(
                &session.actor(),
                "logout",
                Some(session.user.id.to_string()),
                serde_json::json!({}),
            )
            .await
    }

    /// Change the caller's password. The current password is asked again (a stolen session
    /// alone must not be enough) and wrong answers count toward the lockout like failed
    /// logins; the new one follows the enrollment rules; every other session of the account
    /// ends, so whoever knew the old password is logged out everywhere.
    pub async fn change_password(
        &self,
        session: &AuthSession,
        req: ChangePasswordRequest,
    ) -> ApiResult<ChangePasswordResponse> {
        let current = Zeroizing::new(req.current_password);
        let new = Zeroizing::new(req.new_password);
        let user = &session.user;
        let now = self.now();
        let policy = self.policy();
        let actor = session.actor();
        let target = user.id.to_string();
        let failed = |reason: &'static str| {
            self.audit.record(
                &actor,
                "password.change.failure",
                Some(target.clone()),
                serde_json::json!({ "reason": reason }),
            )
        };
        if user.locked_until.is_some_and(|t| t > now) {
            failed("locked").await?;
            return Err(ApiError::new(
                ErrorCode::AccountLocked,
                "account is locked after repeated failures; try again later",
            ));
        }
        if !verify_password((*current).clone(), user.password_hash.clone()).await {
            let lock_until = now + Duration::seconds(policy.lockout_secs as i64);
            self.store
                .record_login_failure(user.id, policy.max_failed_logins, lock_until)
                .await?;
            failed("bad_password").await?;
            return Err(ApiError::forbidden("current_password is wrong"));
        }
        check_password_rules(&new, user.username.as_str(), &policy)?;
        if bool::from(current.as_bytes().ct_eq(new.as_bytes())) {
            return Err(ApiError::invalid(
                "new_password must differ from current_password",
            ));
        }
        let pw = new.clone();
        let password_hash = tokio::task::spawn_blocking(move || hash_password_blocking(&pw))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
        let ended = self
            .store
            .change_password(user.id, &password_hash, &session.token_hash)
            .await?;
        for d in self.store.devices_of_user(user.id).await? {
            if d.id != session.device_id {
                self.hub.end_device(d.id, "password changed");
            }
        }
        self.audit
            .record(
                &session.actor(),
                "password.change",
                Some(user.id.to_string()),
                serde_json::json!({ "sessions_ended": ended }),
            )
            .await?;
        Ok(ChangePasswordResponse {
            sessions_ended: ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        let mut policy = ward_store::OrgPolicy::default();
        assert!(check_password_rules("short", "alice", &policy).is_err());
        assert!(check_password_rules("password1234", "alice", &policy).is_err());
        assert!(check_password_rules("alice-is-my-password", "alice", &policy).is_err());
        assert!(check_password_rules("aaaaaaaaaaaaaaaa", "bob", &policy).is_err());
        assert!(check_password_rules("correct horse battery staple", "alice", &policy).is_ok());
        // 12 characters pass with MFA, not as the only factor (at least 15 then).
        assert!(check_password_rules("plum kettle9", "alice", &policy).is_ok());
        policy.mfa_required = false;
        let err = check_password_rules("plum kettle9", "alice", &policy).unwrap_err();
        assert!(err.message.contains("at least 15"), "{err}");
    }

    #[test]
    fn argon2_round_trip() {
        let h = hash_password_blocking("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password_blocking("correct horse battery staple", &h));
        assert!(!verify_password_blocking("wrong", &h));
    }

    #[test]
    fn codes_normalise() {
        assert_eq!(normalize_enrollment_code(" abcde-fghjk "), "ABCDEFGHJK");
    }
}
