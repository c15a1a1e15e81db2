//! Per-client-IP rate limits: one budget for all requests, a tighter one for login and
//! enrollment (password guessing is also stopped per account by lockout).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ward_proto::ErrorCode;

use crate::config::Limits;
use crate::error::ApiError;
use crate::service::Services;

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// The limiters.
pub struct Limiters {
    general: Keyed,
    login: Keyed,
}

impl Limiters {
    /// From configured limits.
    pub fn new(l: &Limits) -> Self {
        let nz = |v: u32| NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            general: RateLimiter::keyed(
                Quota::per_second(nz(l.requests_per_second)).allow_burst(nz(l.request_burst)),
            ),
            login: RateLimiter::keyed(Quota::per_minute(nz(l.logins_per_minute))),
        }
    }
}

impl Limiters {
    /// Forget clients whose budget is full again, so state does not grow with every IP seen.
    pub fn prune(&self) {
        self.general.retain_recent();
        self.login.retain_recent();
        self.general.shrink_to_fit();
        self.login.shrink_to_fit();
    }
}

/// State of the middleware.
#[derive(Clone)]
pub struct LimitState {
    /// Limiters.
    pub limiters: Arc<Limiters>,
    /// For counting refusals.
    pub services: Arc<Services>,
}

/// Middleware: refuse with 429 over budget.
pub async fn limit(State(st): State<LimitState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let path = req.uri().path();
    // Unauthenticated writes share the login budget; the wipe confirmation verifies a signature.
    let sensitive = path == "/v1/login"
        || path == "/v1/enroll"
        || (path.starts_with("/v1/devices/") && path.ends_with("/wipe-confirmation"));
    let over = st.limiters.general.check_key(&ip).is_err()
        || (sensitive && st.limiters.login.check_key(&ip).is_err());
    if over {
        st.services.metrics.rate_limited.inc();
        return ApiError::new(
            ErrorCode::RateLimited,
            "too many requests; slow down and retry",
        )
        .into_response();
    }
    next.run(req).await
}
