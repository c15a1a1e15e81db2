//! The message content schema: what travels inside the MLS plaintext of an application message.
//!
//! Content is JSON (serde), versioned by the `v` field and open for extension:
//! - unknown top-level fields are kept in [`MessageContent::extra`] and written back unchanged,
//!   so a client that does not know a newer field (attachments, the compliance journal copy)
//!   neither drops it nor fails;
//! - an unknown body `type` decodes to [`Body::Unsupported`] instead of failing, so the user
//!   sees "this message needs a newer app" rather than nothing;
//! - an unknown priority decodes to [`Priority::Urgent`], never silently to routine.
//!
//! This module does not encrypt, sign or send anything; [`Client::encrypt`](crate::Client::encrypt)
//! puts the bytes of [`MessageContent::to_bytes`] into an MLS application message.
//!
//! `Debug` of every type here redacts text and patient data: content is PHI and must not reach
//! logs (STYLE.md §7).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use ward_proto::{ConversationId, MessageId};

use crate::attachment::{AttachmentDescriptor, AttachmentError, MAX_ATTACHMENTS_PER_MESSAGE};

/// The content schema version this crate writes and the highest it reads.
pub const CONTENT_VERSION: u32 = 1;

/// Largest text body, in bytes of UTF-8 (64 KiB): a clinical message, not a document.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Largest encoded content accepted by [`MessageContent::from_bytes`] (256 KiB). Leaves room
/// for the text, the patient context and future fields such as attachment descriptors, and
/// bounds the memory a malicious peer can make a recipient spend parsing JSON.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

/// Largest length of each patient-context string, in bytes.
pub const MAX_PATIENT_FIELD_BYTES: usize = 1024;

/// Field names of [`MessageContent`] that [`MessageContent::extra`] must not repeat.
const RESERVED_FIELDS: [&str; 7] = [
    "v",
    "body",
    "priority",
    "reply_to",
    "patient",
    "sent_at_ms",
    "attachments",
];

/// Why content could not be built, encoded or decoded.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The bytes are not a JSON object of the content schema.
    #[error("not valid message content JSON: {0}")]
    Malformed(String),
    /// The encoded content exceeds [`MAX_CONTENT_BYTES`].
    #[error("content is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Actual size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text body exceeds [`MAX_TEXT_BYTES`].
    #[error("text is {len} bytes, more than the {max}-byte limit")]
    TextTooLong {
        /// Actual size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The content was written by a newer, incompatible schema version (or `v` is 0).
    #[error("content version {0} is not supported (this client reads 1..={CONTENT_VERSION})")]
    UnsupportedVersion(u32),
    /// A field has an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attachment descriptor is invalid.
    #[error("invalid attachment: {0}")]
    Attachment(#[from] AttachmentError),
}

/// One message's content (schema version 1).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageContent {
    /// Schema version; [`CONTENT_VERSION`] for content written by this crate.
    pub v: u32,
    /// What the message says.
    pub body: Body,
    /// Clinical priority; routine when absent.
    #[serde(default)]
    pub priority: Priority,
    /// The message this one answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageRef>,
    /// The patient the message is about, if any (a FHIR Patient reference by identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientContext>,
    /// Sender's clock when the message was written, Unix milliseconds. Informational only: the
    /// server's sequence number orders messages.
    pub sent_at_ms: i64,
    /// Encrypted attachments (ADR 0015): each descriptor holds the file's key, so the MLS
    /// message and its journal copy carry everything needed to fetch and decrypt the file.
    /// Absent from the JSON when empty, so a text message's encoding is unchanged, and a
    /// reader that predates the field keeps it in its `extra`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentDescriptor>,
    /// Fields this version does not know, preserved as they came (attachments, the compliance
    /// journal copy and other later additions).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of a message, tagged by `type`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// Plain text.
    Text {
        /// The text, at most [`MAX_TEXT_BYTES`] bytes.
        text: String,
    },
    /// A body type this version does not know (written by a newer client). Its fields are not
    /// kept; show a "update the app to see this message" placeholder.
    #[serde(other)]
    Unsupported,
}

/// Clinical priority of a message.
///
/// Serialised as `"routine"`, `"urgent"` or `"stat"`. An unknown value decodes as
/// [`Priority::Urgent`]: a priority added by a newer client is never downgraded to routine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Normal message.
    #[default]
    Routine,
    /// Needs attention soon.
    Urgent,
    /// Needs attention immediately; escalates until acknowledged.
    Stat,
}

/// A reference to an earlier message of a conversation.
///
/// `client_message_id` is known to the sender before the server accepts the message;
/// `message_id` and `seq` are assigned by the server. At least one of the three is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The conversation of the referenced message.
    pub conversation_id: ConversationId,
    /// Server id of the referenced message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// Sequence number of the referenced message in its conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The sender's idempotency id of the referenced message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<uuid::Uuid>,
}

/// The patient a message is about: a FHIR `Reference(Patient)` by `identifier`
/// (`system` + `value`, e.g. the hospital's MRN namespace and the MRN).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientContext {
    /// Identifier namespace (FHIR `Identifier.system`), e.g. `urn:oid:…` or the MRN system URL.
    pub system: String,
    /// Identifier value (FHIR `Identifier.value`), e.g. the MRN.
    pub value: String,
    /// Human-readable name as shown to staff (FHIR `Reference.display`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Birth date, `YYYY-MM-DD` (FHIR `Patient.birthDate`), to tell patients apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
}

impl MessageContent {
    /// A version-1 text message.
    pub fn text(text: impl Into<String>, priority: Priority, now_ms: i64) -> Self {
        MessageContent {
            v: CONTENT_VERSION,
            body: Body::Text { text: text.into() },
            priority,
            reply_to: None,
            patient: None,
            sent_at_ms: now_ms,
            attachments: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Checks the limits and invariants of the schema: a supported version, text within
    /// [`MAX_TEXT_BYTES`], sane patient fields, no `extra` key repeating a known field.
    pub fn validate(&self) -> Result<(), ContentError> {
        if self.v == 0 || self.v > CONTENT_VERSION {
            return Err(ContentError::UnsupportedVersion(self.v));
        }
        if let Body::Text { text } = &self.body
            && text.len() > MAX_TEXT_BYTES
        {
            return Err(ContentError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        if let Some(patient) = &self.patient {
            patient.validate()?;
        }
        if let Some(reply_to) = &self.reply_to
            && reply_to.message_id.is_none()
            && reply_to.seq.is_none()
            && reply_to.client_message_id.is_none()
        {
            return Err(ContentError::InvalidField {
                field: "reply_to",
                reason: "names no message (set message_id, seq or client_message_id)",
            });
        }
        if self.attachments.len() > MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(ContentError::InvalidField {
                field: "attachments",
                reason: "more than 32 attachments",
            });
        }
        for attachment in &self.attachments {
            attachment.validate()?;
        }
        if self
            .extra
            .keys()
            .any(|k| RESERVED_FIELDS.contains(&k.as_str()))
        {
            return Err(ContentError::InvalidField {
                field: "extra",
                reason: "repeats a field of the schema",
            });
        }
        Ok(())
    }

    /// Validates and encodes the content as JSON. A [`Body::Unsupported`] body is refused: its
    /// original fields are gone, so it cannot be sent faithfully.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ContentError> {
        self.validate()?;
        if self.body == Body::Unsupported {
            return Err(ContentError::InvalidField {
                field: "body",
                reason: "a body of an unsupported type cannot be sent",
            });
        }
        let bytes = serde_json::to_vec(self).map_err(|e| ContentError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_CONTENT_BYTES {
            return Err(ContentError::TooLarge {
                len: bytes.len(),
                max: MAX_CONTENT_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Decodes and validates content. Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_CONTENT_BYTES {
            return Err(ContentError::TooLarge {
                len: bytes.len(),
                max: MAX_CONTENT_BYTES,
            });
        }
        let content: MessageContent =
            serde_json::from_slice(bytes).map_err(|e| ContentError::Malformed(e.to_string()))?;
        content.validate()?;
        Ok(content)
    }
}

impl PatientContext {
    fn validate(&self) -> Result<(), ContentError> {
        let too_long = |s: &str| s.len() > MAX_PATIENT_FIELD_BYTES;
        if self.system.is_empty() || too_long(&self.system) {
            return Err(ContentError::InvalidField {
                field: "patient.system",
                reason: "must be 1 to 1024 bytes",
            });
        }
        if self.value.is_empty() || too_long(&self.value) {
            return Err(ContentError::InvalidField {
                field: "patient.value",
                reason: "must be 1 to 1024 bytes",
            });
        }
        if self.display.as_deref().is_some_and(too_long) {
            return Err(ContentError::InvalidField {
                field: "patient.display",
                reason: "must be at most 1024 bytes",
            });
        }
        if let Some(date) = &self.birth_date
            && !is_fhir_date(date)
        {
            return Err(ContentError::InvalidField {
                field: "patient.birth_date",
                reason: "must be a date YYYY-MM-DD",
            });
        }
        Ok(())
    }
}

/// True for `YYYY-MM-DD` with a month 01–12 and a day 01–31 (calendar checks are the
/// display layer's business; this only keeps garbage out).
fn is_fhir_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && digits(5..7) && digits(8..10)) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

impl Priority {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Stat => "stat",
        }
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(match s.as_ref() {
            "routine" => Priority::Routine,
            "stat" => Priority::Stat,
            // "urgent" and anything a newer client may send.
            _ => Priority::Urgent,
        })
    }
}

impl fmt::Debug for MessageContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageContent")
            .field("v", &self.v)
            .field("body", &self.body)
            .field("priority", &self.priority)
            .field("reply_to", &self.reply_to)
            .field("patient", &self.patient)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("attachments", &self.attachments)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Text { text } => write!(f, "Text({} bytes, redacted)", text.len()),
            Body::Unsupported => f.write_str("Unsupported"),
        }
    }
}

impl fmt::Debug for PatientContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientContext(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn sample() -> MessageContent {
        let mut c =
            MessageContent::text("BP 90/60, please review", Priority::Stat, 1_700_000_000_000);
        c.patient = Some(PatientContext {
            system: "urn:oid:1.2.36.146.595.217.0.1".into(),
            value: "12345".into(),
            display: Some("Jane Doe".into()),
            birth_date: Some("1970-01-31".into()),
        });
        c.reply_to = Some(MessageRef {
            conversation_id: ConversationId::random(),
            message_id: None,
            seq: Some(7),
            client_message_id: None,
        });
        c
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let bytes = c.to_bytes().unwrap();
        assert_eq!(MessageContent::from_bytes(&bytes).unwrap(), c);
    }

    #[test]
    fn wire_shape_is_stable() {
        let c = MessageContent::text("hi", Priority::Routine, 5);
        let v: Value = serde_json::from_slice(&c.to_bytes().unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"v": 1, "body": {"type": "text", "text": "hi"}, "priority": "routine", "sent_at_ms": 5})
        );
    }

    #[test]
    fn unknown_fields_are_preserved() {
        let raw = json!({
            "v": 1, "body": {"type": "text", "text": "x"}, "sent_at_ms": 1,
            "reactions": [{"id": "a1"}], "journal": {"hash": "00"}
        });
        let c = MessageContent::from_bytes(&serde_json::to_vec(&raw).unwrap()).unwrap();
        assert_eq!(c.priority, Priority::Routine);
        assert_eq!(c.extra.len(), 2);
        let again: Value = serde_json::from_slice(&c.to_bytes().unwrap()).unwrap();
        assert_eq!(again["reactions"], raw["reactions"]);
        assert_eq!(again["journal"], raw["journal"]);
    }

    #[test]
    fn unknown_body_and_priority_fall_back() {
        let raw = json!({"v": 1, "body": {"type": "image", "url": "blob:1"}, "priority": "critical", "sent_at_ms": 1});
        let c = MessageContent::from_bytes(&serde_json::to_vec(&raw).unwrap()).unwrap();
        assert_eq!(c.body, Body::Unsupported);
        assert_eq!(c.priority, Priority::Urgent);
        assert!(c.to_bytes().is_err(), "an unsupported body is not re-sent");
    }

    #[test]
    fn limits_are_enforced() {
        let long = MessageContent::text("a".repeat(MAX_TEXT_BYTES + 1), Priority::Routine, 0);
        assert!(matches!(
            long.to_bytes(),
            Err(ContentError::TextTooLong { .. })
        ));
        let ok = MessageContent::text("a".repeat(MAX_TEXT_BYTES), Priority::Routine, 0);
        assert!(ok.to_bytes().is_ok());
        let mut future = MessageContent::text("x", Priority::Routine, 0);
        future.v = 2;
        let bytes = serde_json::to_vec(&future).unwrap();
        assert!(matches!(
            MessageContent::from_bytes(&bytes),
            Err(ContentError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            MessageContent::from_bytes(&vec![b' '; MAX_CONTENT_BYTES + 1]),
            Err(ContentError::TooLarge { .. })
        ));
        let mut clash = MessageContent::text("x", Priority::Routine, 0);
        clash.extra.insert("v".into(), json!(3));
        assert!(clash.to_bytes().is_err());
        let mut bad_date = sample();
        if let Some(p) = bad_date.patient.as_mut() {
            p.birth_date = Some("1970-13-01".into());
        }
        assert!(bad_date.to_bytes().is_err());
    }

    #[test]
    fn debug_redacts_phi() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("BP 90/60"));
        assert!(!s.contains("Jane"));
        assert!(!s.contains("12345"));
    }

    fn arb_priority() -> impl Strategy<Value = Priority> {
        prop_oneof![
            Just(Priority::Routine),
            Just(Priority::Urgent),
            Just(Priority::Stat)
        ]
    }

    fn arb_patient() -> impl Strategy<Value = Option<PatientContext>> {
        proptest::option::of(
            (
                "[a-z:./0-9]{1,40}",
                "[A-Z0-9]{1,12}",
                proptest::option::of("\\PC{0,30}"),
                proptest::option::of(Just("2001-02-03".to_string())),
            )
                .prop_map(|(system, value, display, birth_date)| PatientContext {
                    system,
                    value,
                    display,
                    birth_date,
                }),
        )
    }

    proptest! {
        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = MessageContent::from_bytes(&bytes);
        }

        #[test]
        fn from_bytes_never_panics_on_json_like(s in "\\{\"v\":[0-9],\"body\":\\{\"type\":\"[a-z]{0,5}\"(,\"text\":\"\\PC{0,20}\")?\\}(,\"priority\":\"[a-z]{0,7}\")?(,\"sent_at_ms\":-?[0-9]{1,20})?(,\"[a-z_]{1,8}\":[0-9]{1,3})*\\}") {
            let _ = MessageContent::from_bytes(s.as_bytes());
        }

        #[test]
        fn round_trips(
            text in "\\PC{0,200}",
            priority in arb_priority(),
            now in any::<i64>(),
            patient in arb_patient(),
            extra in proptest::collection::btree_map("x_[a-z]{1,8}", any::<i32>(), 0..4),
        ) {
            let mut c = MessageContent::text(text, priority, now);
            c.patient = patient;
            for (k, v) in extra {
                c.extra.insert(k, json!(v));
            }
            let bytes = c.to_bytes().unwrap();
            prop_assert_eq!(MessageContent::from_bytes(&bytes).unwrap(), c);
        }
    }
}
