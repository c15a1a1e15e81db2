//! Users, devices and the KeyPackage directory.

use time::Duration;
use ward_proto::{
    ClaimKeyPackagesResponse, ClaimedKeyPackage, CreateUserRequest, DeviceCredential, DeviceId,
    DeviceInfo, DeviceStatus, DirectoryEntry, EnrollmentCodeResponse, ErrorCode,
    KEY_PACKAGE_LOW_WATERMARK, KeyPackageStock, MAX_KEY_PACKAGE_BYTES, MAX_KEY_PACKAGES_PER_UPLOAD,
    Role, UploadKeyPackagesRequest, UserId, UserInfo, UserStatus, Username,
};
use ward_store::{Device, EnrollmentCode, User};

use super::secrets::{generate_enrollment_code, hash_token};
use super::{Actor, AuthSession, Services, require_role};
use crate::error::{ApiError, ApiResult};

/// Which devices an operation may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceScope {
    /// Only the actor's own devices, whatever the role (`/v1/devices…`).
    Own,
    /// Any device for admins, own devices for others (`/v1/admin/devices…`, the admin CLI).
    Any,
}

/// The API view of a user.
pub fn user_info(u: &User) -> UserInfo {
    UserInfo {
        user_id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role,
        status: u.status,
        created_at: u.created_at,
    }
}

/// The API view of a device.
pub fn device_info(d: &Device) -> DeviceInfo {
    DeviceInfo {
        device_id: d.id,
        user_id: d.user_id,
        name: d.name.clone(),
        status: d.status,
        created_at: d.created_at,
        last_seen_at: d.last_seen_at,
        credential: if d.status == DeviceStatus::Active {
            serde_json::from_slice(&d.credential).ok()
        } else {
            None
        },
    }
}

impl Services {
    /// Create a pending user and hand out a one-time enrollment code.
    pub async fn create_user(
        &self,
        actor: &Actor,
        req: CreateUserRequest,
    ) -> ApiResult<EnrollmentCodeResponse> {
        require_role(actor, &[Role::Admin])?;
        let display_name = req.display_name.unwrap_or_else(|| req.username.to_string());
        let display_name = display_name.trim().to_owned();
        if display_name.is_empty()
            || display_name.chars().count() > 128
            || display_name.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "display_name must be 1 to 128 printable characters",
            ));
        }
        let now = self.now();
        let user = User {
            id: UserId::random(),
            username: req.username,
            display_name,
            role: req.role,
            status: UserStatus::Pending,
            password_hash: None,
            totp_secret_enc: None,
            failed_logins: 0,
            locked_until: None,
            created_at: now,
        };
        let code = generate_enrollment_code();
        let expires_at = now + Duration::seconds(self.policy().enrollment_ttl_secs as i64);
        let stored = EnrollmentCode {
            code_hash: hash_token(&super::normalize_enrollment_code(&code)),
            expires_at,
        };
        self.store
            .create_user(&user, &stored)
            .await
            .map_err(|e| match e {
                ward_store::StoreError::Conflict(_) => ApiError::new(
                    ErrorCode::Conflict,
                    format!("username {} is taken", user.username),
                ),
                other => other.into(),
            })?;
        self.audit
            .record(
                actor,
                "user.create",
                Some(user.id.to_string()),
                serde_json::json!({"role": user.role, "username": user.username}),
            )
            .await?;
        Ok(EnrollmentCodeResponse {
            user: user_info(&user),
            enrollment_code: code,
            expires_at,
        })
    }

    /// Re-issue an enrollment code for a pending user.
    pub async fn reissue_enrollment_code(
        &self,
        actor: &Actor,
        username: &Username,
    ) -> ApiResult<EnrollmentCodeResponse> {
        require_role(actor, &[Role::Admin])?;
        let user = self.user_by_name_or_404(username).await?;
        if user.status != UserStatus::Pending {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the user has already enrolled",
            ));
        }
        let code = generate_enrollment_code();
        let expires_at = self.now() + Duration::seconds(self.policy().enrollment_ttl_secs as i64);
        let stored = EnrollmentCode {
            code_hash: hash_token(&super::normalize_enrollment_code(&code)),
            expires_at,
        };
        self.store.set_enrollment_code(user.id, &stored).await?;
        self.audit
            .record(
                actor,
                "user.enrollment_code",
                Some(user.id.to_string()),
                serde_json::json!({}),
            )
            .await?;
        Ok(EnrollmentCodeResponse {
            user: user_info(&user),
            enrollment_code: code,
            expires_at,
        })
    }

    /// All users.
    pub async fn list_users(&self, actor: &Actor) -> ApiResult<Vec<UserInfo>> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        Ok(self
            .store
            .list_users()
            .await?
            .iter()
            .map(user_info)
            .collect())
    }

    /// Suspend: revoke every session at once and close the user's live connections.
    pub async fn suspend_user(&self, actor: &Actor, username: &Username) -> ApiResult<UserInfo> {
        require_role(actor, &[Role::Admin])?;
        let mut user = self.user_by_name_or_404(username).await?;
        if actor.user_id == Some(user.id) {
            return Err(ApiError::invalid(
                "an administrator cannot suspend their own account",
            ));
        }
        let revoked = self
            .store
            .set_user_status(user.id, UserStatus::Suspended)
            .await?;
        for d in self.store.devices_of_user(user.id).await? {
            self.hub.end_device(d.id, "account suspended");
        }
        self.audit
            .record(
                actor,
                "user.suspend",
                Some(user.id.to_string()),
                serde_json::json!({"sessions_revoked": revoked}),
            )
            .await?;
        user.status = UserStatus::Suspended;
        Ok(user_info(&user))
    }

    /// Lift a suspension.
    pub async fn reactivate_user(&self, actor: &Actor, username: &Username) -> ApiResult<UserInfo> {
        require_role(actor, &[Role::Admin])?;
        let mut user = self.user_by_name_or_404(username).await?;
        if user.status != UserStatus::Suspended {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the user is not suspended",
            ));
        }
        // A user suspended before enrolling goes back to pending, so the code (or a new one)
        // still works; otherwise the account would be active with no password.
        let status = if user.password_hash.is_some() {
            UserStatus::Active
        } else {
            UserStatus::Pending
        };
        self.store.set_user_status(user.id, status).await?;
        self.audit
            .record(
                actor,
                "user.reactivate",
                Some(user.id.to_string()),
                serde_json::json!({"status": status}),
            )
            .await?;
        user.status = status;
        Ok(user_info(&user))
    }

    /// Directory lookup (staff only: patients do not browse the staff directory).
    pub async fn directory_entry(
        &self,
        s: &AuthSession,
        username: &Username,
    ) -> ApiResult<DirectoryEntry> {
        if s.user.role == Role::Patient {
            return Err(ApiError::forbidden("patients cannot look up the directory"));
        }
        let user = self.user_by_name_or_404(username).await?;
        let devices = self
            .store
            .devices_of_user(user.id)
            .await?
            .iter()
            .filter(|d| d.status == DeviceStatus::Active)
            .filter_map(|d| serde_json::from_slice::<DeviceCredential>(&d.credential).ok())
            .collect();
        let do_not_disturb = self.dnd_info(&user).await?;
        Ok(DirectoryEntry {
            user_id: user.id,
            username: user.username,
            display_name: user.display_name,
            role: user.role,
            devices,
            do_not_disturb,
        })
    }

    /// Devices. With [`DeviceScope::Own`] the actor's own devices whatever the role; with
    /// [`DeviceScope::Any`] admins see all (or one user's) and others their own.
    pub async fn list_devices(
        &self,
        actor: &Actor,
        scope: DeviceScope,
        of: Option<&Username>,
    ) -> ApiResult<Vec<DeviceInfo>> {
        let admin = scope == DeviceScope::Any && actor.role == Role::Admin;
        let devices = match (admin, of) {
            (true, None) => self.store.list_devices().await?,
            (true, Some(u)) => {
                let user = self.user_by_name_or_404(u).await?;
                self.store.devices_of_user(user.id).await?
            }
            (_, _) => {
                let me = actor
                    .user_id
                    .ok_or_else(|| ApiError::forbidden("no user"))?;
                self.store.devices_of_user(me).await?
            }
        };
        Ok(devices.iter().map(device_info).collect())
    }

    /// Revoke a device: with [`DeviceScope::Any`] admins any, otherwise only one's own.
    pub async fn revoke_device(
        &self,
        actor: &Actor,
        scope: DeviceScope,
        id: DeviceId,
    ) -> ApiResult<DeviceInfo> {
        let device = self
            .store
            .device(id)
            .await?
            .ok_or_else(|| ApiError::not_found("device"))?;
        let admin = scope == DeviceScope::Any && actor.role == Role::Admin;
        if !admin && actor.user_id != Some(device.user_id) {
            // Not found rather than forbidden: device ids of others are not disclosed.
            return Err(ApiError::not_found("device"));
        }
        if !self.store.revoke_device(id, self.now()).await? {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "device is already revoked",
            ));
        }
        self.hub.end_device(id, "device revoked");
        self.audit
            .record(
                actor,
                "device.revoke",
                Some(id.to_string()),
                serde_json::json!({"user_id": device.user_id}),
            )
            .await?;
        let d = self
            .store
            .device(id)
            .await?
            .ok_or_else(|| ApiError::not_found("device"))?;
        Ok(device_info(&d))
    }

    /// Revoked device ids.
    pub async fn revocations(&self) -> ApiResult<Vec<DeviceId>> {
        Ok(self.store.revoked_devices().await?)
    }

    /// Upload KeyPackages for the session's device.
    pub async fn upload_key_packages(
        &self,
        s: &AuthSession,
        req: UploadKeyPackagesRequest,
    ) -> ApiResult<KeyPackageStock> {
        if req.key_packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
            return Err(ApiError::invalid(format!(
                "at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload"
            )));
        }
        if req.key_packages.is_empty() && req.last_resort.is_none() {
            return Err(ApiError::invalid(
                "nothing to upload: give key_packages or last_resort",
            ));
        }
        for kp in req.key_packages.iter().chain(req.last_resort.iter()) {
            if kp.is_empty() || kp.len() > MAX_KEY_PACKAGE_BYTES {
                return Err(ApiError::invalid(format!(
                    "each key package must be 1 to {MAX_KEY_PACKAGE_BYTES} bytes"
                )));
            }
        }
        let one_time: Vec<Vec<u8>> = req.key_packages.into_iter().map(|b| b.0).collect();
        self.store
            .add_key_packages(
                s.device_id,
                &one_time,
                req.last_resort.as_ref().map(|b| b.as_slice()),
                self.now(),
            )
            .await?;
        self.audit
            .record(&s.actor(), "keypackage.upload", Some(s.device_id.to_string()),
                serde_json::json!({"count": one_time.len(), "last_resort": req.last_resort.is_some()}))
            .await?;
        self.key_package_stock(s.device_id).await
    }

    /// Stock of a device's KeyPackages.
    pub async fn key_package_stock(&self, device: DeviceId) -> ApiResult<KeyPackageStock> {
        let (remaining, has_last_resort) = self.store.key_package_stock(device).await?;
        Ok(KeyPackageStock {
            remaining,
            has_last_resort,
            low: remaining < KEY_PACKAGE_LOW_WATERMARK,
        })
    }

    /// Claim one KeyPackage per active device of a user (to add them to a group).
    pub async fn claim_key_packages(
        &self,
        s: &AuthSession,
        username: &Username,
        only: &[DeviceId],
    ) -> ApiResult<ClaimKeyPackagesResponse> {
        if only.len() > 64 {
            return Err(ApiError::invalid("at most 64 devices per claim"));
        }
        if s.user.role == Role::Patient {
            return Err(ApiError::forbidden(
                "patients cannot add members to conversations",
            ));
        }
        let user = self.user_by_name_or_404(username).await?;
        if user.status != UserStatus::Active {
            return Err(ApiError::invalid(format!("user {username} is not active")));
        }
        let mut key_packages = Vec::new();
        let mut missing = Vec::new();
        for d in self.store.devices_of_user(user.id).await? {
            if d.status != DeviceStatus::Active || (!only.is_empty() && !only.contains(&d.id)) {
                continue;
            }
            match self.store.claim_key_package(d.id).await? {
                Some((kp, last_resort)) => key_packages.push(ClaimedKeyPackage {
                    device_id: d.id,
                    credential: serde_json::from_slice(&d.credential)
                        .map_err(|e| ApiError::internal(&format!("stored credential: {e}")))?,
                    key_package: kp.into(),
                    last_resort,
                }),
                None => missing.push(d.id),
            }
        }
        if key_packages.is_empty() {
            return Err(ApiError::new(
                ErrorCode::NoKeyPackage,
                format!("no device of {username} has a key package available"),
            ));
        }
        self.audit
            .record(
                &s.actor(),
                "keypackage.claim",
                Some(user.id.to_string()),
                serde_json::json!({"claimed": key_packages.len(), "missing": missing.len()}),
            )
            .await?;
        Ok(ClaimKeyPackagesResponse {
            user_id: user.id,
            key_packages,
            devices_without_key_package: missing,
        })
    }

    pub(crate) async fn user_by_name_or_404(&self, username: &Username) -> ApiResult<User> {
        self.store
            .user_by_name(username)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))
    }
}
