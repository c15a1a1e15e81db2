//! Do-not-disturb with a covering colleague (ADR 0019).
//!
//! A user on do-not-disturb names who covers, optionally until when. While it is on (on the
//! server's [`Clock`](crate::clock::Clock), so an `until` in the past is simply off), role
//! holder resolution substitutes the covering colleague, and the directory shows it so that a
//! sender's client also sends direct messages to the colleague (the server cannot forward
//! MLS content). Covers chain: if the colleague is away too, their own cover stands in. A
//! chain that comes back to its start is refused when it would be created; the resolution
//! also stops at a user seen before, and at a cover who is no longer an active staff member
//! (then the last active user in the chain keeps the messages: nothing goes nowhere).

use std::collections::HashMap;

use ward_proto::{DndInfo, DndRequest, ErrorCode, MAX_DND_SECS, Role, UserId, UserStatus};
use ward_store::{DoNotDisturb, User};

use super::{Actor, AuthSession, Services};
use crate::error::{ApiError, ApiResult};

/// Longest covering chain followed.
const MAX_COVER_CHAIN: usize = 16;

impl Services {
    /// Turn the caller's do-not-disturb on (or replace it). Refused: covering oneself, a
    /// patient or inactive colleague, an `until` not in the future or more than 30 days
    /// ahead, and a chain of covers that would come back to the caller. Audited `dnd.on`.
    pub async fn set_dnd(&self, s: &AuthSession, req: DndRequest) -> ApiResult<DndInfo> {
        if s.user.role == Role::Patient {
            return Err(ApiError::forbidden(
                "patient accounts cannot hand over to a covering colleague",
            ));
        }
        let now = self.now();
        if let Some(until) = req.until {
            if until <= now {
                return Err(ApiError::invalid("--until must be in the future"));
            }
            if (until - now).whole_seconds() > MAX_DND_SECS {
                return Err(ApiError::invalid(
                    "do-not-disturb with an end lasts at most 30 days; leave --until out to keep it on until you turn it off",
                ));
            }
        }
        if req.cover == s.user.username {
            return Err(ApiError::invalid("you cannot cover for yourself"));
        }
        let cover = self.user_by_name_or_404(&req.cover).await?;
        if cover.role == Role::Patient {
            return Err(ApiError::invalid(format!(
                "{} is a patient account and cannot cover",
                cover.username
            )));
        }
        if cover.status != UserStatus::Active {
            return Err(ApiError::invalid(format!(
                "{} is not an active user (suspended or not enrolled) and cannot cover",
                cover.username
            )));
        }
        let mut covers = self.active_dnds().await?;
        let entry = DoNotDisturb {
            user_id: s.user.id,
            cover_user_id: cover.id,
            until: req.until,
            since: now,
        };
        covers.insert(s.user.id, entry.clone());
        let mut path = vec![s.user.id];
        let mut cur = cover.id;
        while let Some(next) = covers.get(&cur) {
            path.push(cur);
            if path.len() > MAX_COVER_CHAIN {
                break;
            }
            if next.cover_user_id == s.user.id {
                path.push(s.user.id);
                let mut names = Vec::with_capacity(path.len());
                for id in path {
                    names.push(self.user_or_404(id).await?.username.to_string());
                }
                return Err(ApiError::invalid(format!(
                    "covering loop: {}",
                    names.join(" \u{2192} ")
                )));
            }
            cur = next.cover_user_id;
        }
        self.store.set_dnd(&entry).await?;
        self.audit
            .record(
                &s.actor(),
                "dnd.on",
                Some(s.user.id.to_string()),
                serde_json::json!({ "cover_user_id": cover.id, "until": req.until.map(|t| t.unix_timestamp()) }),
            )
            .await?;
        self.dnd_info(&s.user)
            .await?
            .ok_or_else(|| ApiError::internal(&"do-not-disturb vanished after it was set"))
    }

    /// Turn the caller's do-not-disturb off. 404 when it is not on. Audited `dnd.off`.
    pub async fn clear_dnd(&self, s: &AuthSession) -> ApiResult<()> {
        if s.user.role == Role::Patient {
            return Err(ApiError::forbidden(
                "patient accounts have no do-not-disturb",
            ));
        }
        let now = self.now();
        match self.store.clear_dnd(s.user.id).await? {
            Some(d) if d.until.is_none_or(|u| u > now) => {
                self.audit
                    .record(
                        &s.actor(),
                        "dnd.off",
                        Some(s.user.id.to_string()),
                        serde_json::json!({ "cover_user_id": d.cover_user_id }),
                    )
                    .await
            }
            _ => Err(ApiError::new(
                ErrorCode::NotFound,
                "do-not-disturb is not on",
            )),
        }
    }

    /// Remove entries whose `until` has passed on the service clock; audited `dnd.expired`
    /// each. Returns how many ended. (Resolution already ignores them; this tidies up and
    /// records the end.)
    pub async fn expire_dnd(&self) -> ApiResult<usize> {
        let now = self.now();
        let mut n = 0;
        for d in self.store.dnds().await? {
            if d.until.is_some_and(|u| u <= now) && self.store.clear_dnd(d.user_id).await?.is_some()
            {
                n += 1;
                self.audit
                    .record(
                        &Actor::system(),
                        "dnd.expired",
                        Some(d.user_id.to_string()),
                        serde_json::json!({ "cover_user_id": d.cover_user_id,
                                            "until": d.until.map(|t| t.unix_timestamp()) }),
                    )
                    .await?;
            }
        }
        Ok(n)
    }

    /// Entries on now, by user.
    async fn active_dnds(&self) -> ApiResult<HashMap<UserId, DoNotDisturb>> {
        let now = self.now();
        Ok(self
            .store
            .dnds()
            .await?
            .into_iter()
            .filter(|d| d.until.is_none_or(|u| u > now))
            .map(|d| (d.user_id, d))
            .collect())
    }

    /// Who receives `user`'s messages now, when `user` is on do-not-disturb: the end of the
    /// covering chain (see the module docs). `None` when `user` is not away.
    pub(crate) async fn effective_cover(&self, user: UserId) -> ApiResult<Option<User>> {
        let covers = self.active_dnds().await?;
        self.cover_in(&covers, user).await
    }

    async fn cover_in(
        &self,
        covers: &HashMap<UserId, DoNotDisturb>,
        user: UserId,
    ) -> ApiResult<Option<User>> {
        let mut seen = vec![user];
        let mut last: Option<User> = None;
        let mut cur = user;
        while let Some(d) = covers.get(&cur) {
            if seen.contains(&d.cover_user_id) || seen.len() > MAX_COVER_CHAIN {
                break;
            }
            match self.store.user(d.cover_user_id).await? {
                Some(u) if u.status == UserStatus::Active && u.role != Role::Patient => {
                    seen.push(u.id);
                    cur = u.id;
                    last = Some(u);
                }
                _ => break,
            }
        }
        Ok(last)
    }

    /// `user`'s do-not-disturb as the directory shows it, when on.
    pub(crate) async fn dnd_info(&self, user: &User) -> ApiResult<Option<DndInfo>> {
        let covers = self.active_dnds().await?;
        let Some(d) = covers.get(&user.id) else {
            return Ok(None);
        };
        let named = self.user_or_404(d.cover_user_id).await?;
        let effective = self
            .cover_in(&covers, user.id)
            .await?
            .map_or_else(|| user.username.clone(), |u| u.username);
        Ok(Some(DndInfo {
            username: user.username.clone(),
            cover: named.username,
            effective_cover: effective,
            until: d.until,
            since: d.since,
        }))
    }
}
