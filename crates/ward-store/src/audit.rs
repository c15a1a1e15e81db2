//! The audit log's hash chain: every record commits to the previous one, so an edit, a
//! deletion or a reordering breaks the chain at the first affected record. Signed checkpoints
//! pin the head so that truncating the tail is caught too.
//!
//! Both backends call [`record_hash`] inside the transaction that appends, and
//! [`ChainVerifier`] checks what they return. Times are hashed as Unix microseconds, the
//! precision both databases keep.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use ward_proto::{AuditRecord, AuditVerifyReport};

use crate::{AuditCheckpoint, AuditEvent};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Unix microseconds, the precision audit times are stored and hashed at.
pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// `t` truncated to microseconds, so it survives a database round trip unchanged.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = (t.unix_timestamp_nanos() / 1_000) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(t)
}

/// The canonical serialisation of details that is stored and hashed.
pub fn canonical_details(details: &serde_json::Value) -> String {
    // serde_json without `preserve_order` writes object keys sorted, so this is canonical.
    details.to_string()
}

/// Hash of one record: SHA-256 over a domain label, the previous hash and every field,
/// length-prefixed.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per hashed field keeps it explicit"
)]
pub fn record_hash(
    prev_hash: &[u8; 32],
    seq: u64,
    at: OffsetDateTime,
    actor_user: Option<&str>,
    actor_device: Option<&str>,
    action: &str,
    target: Option<&str>,
    details_json: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ward audit record v1");
    h.update(prev_hash);
    h.update(seq.to_be_bytes());
    h.update(micros(at).to_be_bytes());
    for field in [
        actor_user,
        actor_device,
        Some(action),
        target,
        Some(details_json),
    ] {
        match field {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Recompute an exported record's hash from its fields and `prev_hash`.
pub fn recompute(record: &AuditRecord) -> Option<[u8; 32]> {
    let prev = decode_hash(&record.prev_hash)?;
    let user = record.actor_user_id.map(|u| u.to_string());
    let device = record.actor_device_id.map(|d| d.to_string());
    Some(record_hash(
        &prev,
        record.seq,
        record.at,
        user.as_deref(),
        device.as_deref(),
        &record.action,
        record.target.as_deref(),
        &canonical_details(&record.details),
    ))
}

/// The audit record of an accepted send (see [`crate::AppendRequest::audit`]): `event` with
/// the message id as target and the assigned `seq` in its details.
pub fn send_event(event: &AuditEvent, envelope: &ward_proto::Envelope) -> AuditEvent {
    let mut event = event.clone();
    event.target = Some(envelope.message_id.to_string());
    if let serde_json::Value::Object(details) = &mut event.details {
        details.insert("seq".into(), envelope.seq.into());
    }
    event
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: u64, hash_hex: &str) -> Vec<u8> {
    let mut m = b"ward audit checkpoint v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash_hex.as_bytes());
    m
}

/// Decode a hex hash.
pub fn decode_hash(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// Incremental chain verifier: feed records in the order the store returns them (by seq).
pub struct ChainVerifier {
    expected_seq: u64,
    prev: [u8; 32],
    hashes_at_checkpoints: std::collections::HashMap<u64, String>,
    wanted: std::collections::HashSet<u64>,
    records: u64,
    failure: Option<(u64, String)>,
}

impl ChainVerifier {
    /// A verifier that will also check that each checkpoint's seq has the recorded hash.
    pub fn new(checkpoints: &[AuditCheckpoint]) -> Self {
        Self {
            expected_seq: 1,
            prev: GENESIS_HASH,
            hashes_at_checkpoints: Default::default(),
            wanted: checkpoints.iter().map(|c| c.seq).collect(),
            records: 0,
            failure: None,
        }
    }

    /// Check the next record. Returns false once a failure was found.
    pub fn push(&mut self, r: &AuditRecord) -> bool {
        if self.failure.is_some() {
            return false;
        }
        self.records += 1;
        let fail = |me: &mut Self, seq: u64, why: String| {
            me.failure = Some((seq, why));
            false
        };
        if r.seq != self.expected_seq {
            let why = if r.seq > self.expected_seq {
                format!(
                    "record {} is missing (next present is {})",
                    self.expected_seq, r.seq
                )
            } else {
                format!("record {} is out of order", r.seq)
            };
            return fail(self, self.expected_seq, why);
        }
        if decode_hash(&r.prev_hash) != Some(self.prev) {
            return fail(
                self,
                r.seq,
                format!(
                    "record {} does not link to record {}",
                    r.seq,
                    r.seq.saturating_sub(1)
                ),
            );
        }
        let Some(computed) = recompute(r) else {
            return fail(
                self,
                r.seq,
                format!("record {} has a malformed hash", r.seq),
            );
        };
        if decode_hash(&r.hash) != Some(computed) {
            return fail(
                self,
                r.seq,
                format!("record {} was modified (hash mismatch)", r.seq),
            );
        }
        if self.wanted.contains(&r.seq) {
            self.hashes_at_checkpoints.insert(r.seq, r.hash.clone());
        }
        self.prev = computed;
        self.expected_seq += 1;
        true
    }

    /// Finish: check the checkpoints (signature via `verify_sig`, hash against the chain).
    pub fn finish(
        self,
        checkpoints: &[AuditCheckpoint],
        verify_sig: impl Fn(&[u8], &[u8]) -> bool,
    ) -> AuditVerifyReport {
        let mut failure = self.failure;
        if failure.is_none() {
            for c in checkpoints {
                if !verify_sig(&checkpoint_message(c.seq, &c.hash), &c.signature) {
                    failure = Some((
                        c.seq,
                        format!("checkpoint at record {} has a bad signature", c.seq),
                    ));
                    break;
                }
                match self.hashes_at_checkpoints.get(&c.seq) {
                    Some(h) if *h == c.hash => {}
                    Some(_) => {
                        failure = Some((
                            c.seq,
                            format!("record {} differs from its signed checkpoint", c.seq),
                        ));
                        break;
                    }
                    None => {
                        failure = Some((
                            c.seq,
                            format!(
                                "record {} covered by a signed checkpoint is missing (log truncated)",
                                c.seq
                            ),
                        ));
                        break;
                    }
                }
            }
        }
        AuditVerifyReport {
            ok: failure.is_none(),
            records: self.records,
            checkpoints: checkpoints.len() as u64,
            first_bad_seq: failure.as_ref().map(|f| f.0),
            problem: failure.map(|f| f.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let at = OffsetDateTime::from_unix_timestamp(1_700_000_000 + seq as i64).unwrap();
                let details = serde_json::json!({"n": seq});
                let h = record_hash(
                    &prev,
                    seq,
                    at,
                    None,
                    None,
                    "test",
                    Some("t"),
                    &canonical_details(&details),
                );
                let r = AuditRecord {
                    seq,
                    at,
                    actor_user_id: None,
                    actor_device_id: None,
                    action: "test".into(),
                    target: Some("t".into()),
                    details,
                    prev_hash: hex::encode(prev),
                    hash: hex::encode(h),
                };
                prev = h;
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord]) -> AuditVerifyReport {
        let mut v = ChainVerifier::new(&[]);
        for r in records {
            v.push(r);
        }
        v.finish(&[], |_, _| true)
    }

    /// Found by fuzzing (fuzz/regressions/audit_record): a number with decimals in the details
    /// must survive the JSON round trip, or the recomputed hash would differ.
    #[test]
    fn float_details_round_trip_and_rehash() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions/audit_record/float-details-not-round-tripped.json");
        let record: AuditRecord = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let again: AuditRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(record, again);
        assert_eq!(recompute(&record), recompute(&again));
    }

    #[test]
    fn intact_chain_verifies() {
        let r = verify(&chain(5));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.records, 5);
    }

    #[test]
    fn edit_delete_reorder_are_caught() {
        let mut edited = chain(5);
        edited[2].action = "other".into();
        assert_eq!(verify(&edited).first_bad_seq, Some(3));

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).first_bad_seq, Some(2));

        let mut reordered = chain(5);
        reordered.swap(1, 3);
        let r = verify(&reordered);
        assert!(!r.ok);
        assert_eq!(r.first_bad_seq, Some(2));
    }

    #[test]
    fn truncation_caught_by_checkpoint() {
        let records = chain(5);
        let cp = AuditCheckpoint {
            seq: 5,
            hash: records[4].hash.clone(),
            signature: vec![],
            at: records[4].at,
        };
        let mut v = ChainVerifier::new(std::slice::from_ref(&cp));
        for r in &records[..3] {
            v.push(r);
        }
        let report = v.finish(&[cp], |_, _| true);
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(5));
    }
}
