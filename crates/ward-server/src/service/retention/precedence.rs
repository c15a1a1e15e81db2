//! THE retention precedence (ADR 0013), in one pure function:
//!
//! **legal hold > statutory retention > erasure request > message lifespan.**
//!
//! A legal hold keeps an item whatever else applies; statutory retention keeps it until its
//! minimum period ends, even against an erasure request; an erasure request deletes it
//! before its lifespan would; the lifespan (or, for the journal archive, the archive's own
//! retention) deletes it when it ends. With none of these, an item is kept.

use time::OffsetDateTime;

/// What is known about one item (an envelope or a journal archive entry) at decision time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The legal hold in force that covers the item, if any.
    pub hold: Option<uuid::Uuid>,
    /// Statutory retention keeps the item until then.
    pub statutory_until: Option<OffsetDateTime>,
    /// An erasure request covers the item.
    pub erasure_requested: bool,
    /// The item's lifespan (or archive retention) ends then.
    pub expires_at: Option<OffsetDateTime>,
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the item.
    Keep(KeepReason),
    /// Delete the item.
    Delete(DeleteRule),
}

/// Why an item is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// A legal hold covers it.
    LegalHold(uuid::Uuid),
    /// Statutory retention runs until then.
    StatutoryRetention(OffsetDateTime),
    /// No rule deletes it (yet).
    NotDue,
}

/// Which rule deletes an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteRule {
    /// An erasure request.
    Erasure,
    /// The message lifespan or the archive's retention ended.
    Lifespan,
}

impl DeleteRule {
    /// The name recorded in audit details.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteRule::Erasure => "erasure_request",
            DeleteRule::Lifespan => "message_lifespan",
        }
    }
}

/// Decide one item at `now`. Pure: same facts, same time, same answer.
pub fn decide(facts: &Facts, now: OffsetDateTime) -> Verdict {
    if let Some(hold) = facts.hold {
        return Verdict::Keep(KeepReason::LegalHold(hold));
    }
    if let Some(until) = facts.statutory_until
        && now < until
    {
        return Verdict::Keep(KeepReason::StatutoryRetention(until));
    }
    if facts.erasure_requested {
        return Verdict::Delete(DeleteRule::Erasure);
    }
    match facts.expires_at {
        Some(at) if now >= at => Verdict::Delete(DeleteRule::Lifespan),
        _ => Verdict::Keep(KeepReason::NotDue),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::Duration;

    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid")
    }

    #[test]
    fn each_rule_in_its_place() {
        let h = uuid::Uuid::from_u128(7);
        let past = now() - Duration::days(1);
        let future = now() + Duration::days(1);
        let all = Facts {
            hold: Some(h),
            statutory_until: Some(future),
            erasure_requested: true,
            expires_at: Some(past),
        };
        // Hold beats everything.
        assert_eq!(decide(&all, now()), Verdict::Keep(KeepReason::LegalHold(h)));
        // Without the hold, statutory retention beats erasure and lifespan.
        let f = Facts { hold: None, ..all };
        assert_eq!(
            decide(&f, now()),
            Verdict::Keep(KeepReason::StatutoryRetention(future))
        );
        // Statutory retention over: erasure (before the lifespan rule).
        let f = Facts {
            statutory_until: Some(past),
            ..f
        };
        assert_eq!(decide(&f, now()), Verdict::Delete(DeleteRule::Erasure));
        // Erasure deletes even what has no lifespan or is not yet due.
        let f = Facts {
            expires_at: Some(future),
            ..f
        };
        assert_eq!(decide(&f, now()), Verdict::Delete(DeleteRule::Erasure));
        // No erasure: the lifespan decides, at its boundary exactly.
        let f = Facts {
            erasure_requested: false,
            expires_at: Some(now()),
            ..f
        };
        assert_eq!(decide(&f, now()), Verdict::Delete(DeleteRule::Lifespan));
        let f = Facts {
            expires_at: Some(now() + Duration::microseconds(1)),
            ..f
        };
        assert_eq!(decide(&f, now()), Verdict::Keep(KeepReason::NotDue));
        // Statutory retention ends exactly at its bound.
        let f = Facts {
            statutory_until: Some(now()),
            expires_at: Some(past),
            ..f
        };
        assert_eq!(decide(&f, now()), Verdict::Delete(DeleteRule::Lifespan));
        // No rule at all: kept.
        assert_eq!(
            decide(&Facts::default(), now()),
            Verdict::Keep(KeepReason::NotDue)
        );
    }

    fn arb_time() -> impl Strategy<Value = Option<OffsetDateTime>> {
        proptest::option::of((-1000i64..1000).prop_map(|m| now() + Duration::minutes(m)))
    }

    proptest! {
        /// Over every combination: the outcome is exactly what the precedence says.
        #[test]
        fn precedence_holds_over_all_combinations(
            hold in proptest::option::of(any::<u128>().prop_map(uuid::Uuid::from_u128)),
            statutory_until in arb_time(),
            erasure_requested in any::<bool>(),
            expires_at in arb_time(),
        ) {
            let f = Facts { hold, statutory_until, erasure_requested, expires_at };
            let v = decide(&f, now());
            let statutory_active = statutory_until.is_some_and(|u| now() < u);
            let expired = expires_at.is_some_and(|e| now() >= e);
            // A hold always keeps, with its id.
            if let Some(h) = hold {
                prop_assert_eq!(v, Verdict::Keep(KeepReason::LegalHold(h)));
            } else if statutory_active {
                prop_assert!(matches!(v, Verdict::Keep(KeepReason::StatutoryRetention(_))));
            } else if erasure_requested {
                prop_assert_eq!(v, Verdict::Delete(DeleteRule::Erasure));
            } else if expired {
                prop_assert_eq!(v, Verdict::Delete(DeleteRule::Lifespan));
            } else {
                prop_assert_eq!(v, Verdict::Keep(KeepReason::NotDue));
            }
            // Nothing is ever deleted under a hold or active statutory retention.
            if matches!(v, Verdict::Delete(_)) {
                prop_assert!(hold.is_none() && !statutory_active);
            }
            // Adding a hold never turns a keep into a delete, and always keeps.
            let held = Facts { hold: Some(uuid::Uuid::nil()), ..f };
            prop_assert!(matches!(decide(&held, now()), Verdict::Keep(KeepReason::LegalHold(_))));
            // Withdrawing an erasure request never deletes more.
            let no_erasure = Facts { erasure_requested: false, ..f };
            if matches!(v, Verdict::Keep(_)) {
                prop_assert!(matches!(decide(&no_erasure, now()), Verdict::Keep(_)));
            }
        }
    }
}
