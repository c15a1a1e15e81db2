//! The blinded patient index (ADR 0019): a conversation bound to a patient gets, on the
//! server, a *tag* — the patient's normalised identifier sealed with HPKE to the
//! organisation's journal key (the same X-Wing suite as the journal, ADR 0010, with its own
//! `info`). Encapsulation is randomised, so two tags of one patient share nothing the server
//! (or anyone without the offline key) could link; the conversation id is the associated data,
//! so a tag copied onto another conversation does not open. A compliance officer opens every
//! tag offline and keeps the conversations whose identifier matches.
//!
//! Also here: [`PatientContext::new`], the strict constructor clients use for patient data a
//! user typed (the schema's own `validate` only bounds what peers send).

use hpke_rs::HpkePublicKey;
use hpke_rs::libcrux::HpkeLibcruxPrng;
use rand::{CryptoRng, RngCore};
use ward_proto::ConversationId;
use zeroize::Zeroizing;

use crate::PatientContext;
use crate::content::{ContentError, MAX_PATIENT_FIELD_BYTES};
use crate::journal::{JOURNAL_ENC_LEN, JournalError, JournalKeyPair, JournalPublicKey, hpke};

/// HPKE `info` of a patient tag.
const TAG_INFO: &[u8] = b"ward patient index v1";
/// Label at the front of a tag's plaintext.
const TAG_LABEL: &[u8] = b"ward patient tag v1";

/// A patient identifier as the index compares it: `system` and `value`, each trimmed of
/// surrounding whitespace, otherwise exact (identifier systems are URIs and MRN formats are
/// the issuer's; case folding could merge two patients).
#[derive(Clone, PartialEq, Eq)]
pub struct PatientIdentifier {
    system: String,
    value: String,
}

impl PatientIdentifier {
    /// Validates and normalises an identifier: `system` an absolute URI (`scheme:…`, e.g.
    /// `urn:oid:1.2.36.146.595.217.0.1` or `https://hospital.example/mrn`), `value` non-empty;
    /// both at most 1024 bytes, without control characters or `|`.
    pub fn new(system: &str, value: &str) -> Result<Self, ContentError> {
        let system = system.trim();
        let value = value.trim();
        let bad = |s: &str| {
            s.is_empty()
                || s.len() > MAX_PATIENT_FIELD_BYTES
                || s.chars().any(|c| c.is_control() || c == '|')
        };
        if bad(system) || !is_absolute_uri(system) {
            return Err(ContentError::InvalidField {
                field: "patient.system",
                reason: "must be an absolute URI such as urn:oid:… or https://…/mrn \
                         (1 to 1024 bytes, no control characters or '|')",
            });
        }
        if bad(value) {
            return Err(ContentError::InvalidField {
                field: "patient.value",
                reason: "must be 1 to 1024 bytes without control characters or '|'",
            });
        }
        Ok(Self {
            system: system.to_owned(),
            value: value.to_owned(),
        })
    }

    /// Parses `SYSTEM|VALUE` (the FHIR token search syntax).
    pub fn parse_token(token: &str) -> Result<Self, ContentError> {
        let (system, value) = token.split_once('|').ok_or(ContentError::InvalidField {
            field: "patient.identifier",
            reason: "must be SYSTEM|VALUE, e.g. urn:oid:1.2.3|12345",
        })?;
        Self::new(system, value)
    }

    /// The identifier system.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The identifier value.
    pub fn value(&self) -> &str {
        &self.value
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            TAG_LABEL.len() + 8 + self.system.len() + self.value.len(),
        ));
        out.extend_from_slice(TAG_LABEL);
        for part in [&self.system, &self.value] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Result<Self, JournalError> {
        let malformed = JournalError::Malformed("not a patient tag of version 1");
        let mut rest = b.strip_prefix(TAG_LABEL).ok_or(malformed)?;
        let mut parts = Vec::with_capacity(2);
        for _ in 0..2 {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or(JournalError::Malformed("truncated patient tag"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return Err(JournalError::Malformed("truncated patient tag"));
            }
            let s = std::str::from_utf8(&tail[..len])
                .map_err(|_| JournalError::Malformed("patient tag is not UTF-8"))?;
            parts.push(s.to_owned());
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            return Err(JournalError::Malformed("trailing bytes in patient tag"));
        }
        let value = parts.pop().unwrap_or_default();
        let system = parts.pop().unwrap_or_default();
        Self::new(&system, &value)
            .map_err(|_| JournalError::Malformed("patient tag holds an invalid identifier"))
    }
}

impl std::fmt::Debug for PatientIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientIdentifier(redacted)")
    }
}

fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !s.chars().any(char::is_whitespace)
}

/// Seals `id` for the index entry of `conversation`: `enc ‖ ciphertext`, fresh randomness
/// each time.
pub fn seal_patient_tag(
    key: &JournalPublicKey,
    conversation: ConversationId,
    id: &PatientIdentifier,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<Vec<u8>, JournalError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let prng = HpkeLibcruxPrng::try_from_seed(*seed)
        .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
    let (mut enc, ciphertext) = hpke(prng)
        .seal(
            &HpkePublicKey::new(key.as_bytes().to_vec()),
            TAG_INFO,
            conversation.0.as_bytes(),
            &id.encode(),
            None,
            None,
            None,
        )
        .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
    enc.extend_from_slice(&ciphertext);
    Ok(enc)
}

/// Opens tags with one key pair; derives the HPKE private key once (the X-Wing derivation
/// costs more than an open), so a search over the whole index stays linear in opens.
pub struct PatientTagOpener {
    suite: hpke_rs::Hpke<hpke_rs::libcrux::HpkeLibcrux>,
    private: hpke_rs::HpkePrivateKey,
}

impl PatientTagOpener {
    /// Prepares to open tags sealed to `pair`'s public key.
    pub fn new(pair: &JournalKeyPair) -> Result<Self, JournalError> {
        let suite = hpke(HpkeLibcruxPrng::from_seed([0; 32]));
        let keys = suite
            .derive_key_pair(pair.secret())
            .map_err(|e| JournalError::Crypto(format!("{e:?}")))?;
        let (private, _) = keys.into_keys();
        Ok(Self { suite, private })
    }

    /// Opens a tag stored for `conversation`.
    pub fn open(
        &self,
        conversation: ConversationId,
        tag: &[u8],
    ) -> Result<PatientIdentifier, JournalError> {
        if tag.len() <= JOURNAL_ENC_LEN {
            return Err(JournalError::Open);
        }
        let (enc, ciphertext) = tag.split_at(JOURNAL_ENC_LEN);
        let plaintext = Zeroizing::new(
            self.suite
                .open(
                    enc,
                    &self.private,
                    TAG_INFO,
                    conversation.0.as_bytes(),
                    ciphertext,
                    None,
                    None,
                    None,
                )
                .map_err(|_| JournalError::Open)?,
        );
        PatientIdentifier::decode(&plaintext)
    }
}

/// Opens one tag stored for `conversation` with the organisation's key pair (see
/// [`PatientTagOpener`] for many).
pub fn open_patient_tag(
    pair: &JournalKeyPair,
    conversation: ConversationId,
    tag: &[u8],
) -> Result<PatientIdentifier, JournalError> {
    PatientTagOpener::new(pair)?.open(conversation, tag)
}

impl PatientContext {
    /// Patient data a user typed, validated strictly: the identifier as in
    /// [`PatientIdentifier::new`] (stored trimmed), a display name of 1 to 1024 bytes without
    /// control characters, and a birth date that is a real calendar date `YYYY-MM-DD` not
    /// after `today`.
    pub fn new(
        system: &str,
        value: &str,
        display: Option<&str>,
        birth_date: Option<&str>,
        today: time::Date,
    ) -> Result<Self, ContentError> {
        let id = PatientIdentifier::new(system, value)?;
        let display = match display.map(str::trim) {
            None => None,
            Some(d)
                if d.is_empty()
                    || d.len() > MAX_PATIENT_FIELD_BYTES
                    || d.chars().any(char::is_control) =>
            {
                return Err(ContentError::InvalidField {
                    field: "patient.display",
                    reason: "must be 1 to 1024 bytes without control characters",
                });
            }
            Some(d) => Some(d.to_owned()),
        };
        let birth_date = match birth_date.map(str::trim) {
            None => None,
            Some(d) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                let date =
                    time::Date::parse(d, format).map_err(|_| ContentError::InvalidField {
                        field: "patient.birth_date",
                        reason: "must be a calendar date YYYY-MM-DD",
                    })?;
                if date > today || d.len() != 10 {
                    return Err(ContentError::InvalidField {
                        field: "patient.birth_date",
                        reason: "must be a calendar date YYYY-MM-DD, not in the future",
                    });
                }
                Some(d.to_owned())
            }
        };
        Ok(PatientContext {
            system: id.system,
            value: id.value,
            display,
            birth_date,
        })
    }

    /// The identifier the index compares, if this context's identifier is valid.
    pub fn identifier(&self) -> Result<PatientIdentifier, ContentError> {
        PatientIdentifier::new(&self.system, &self.value)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn conv(n: u128) -> ConversationId {
        ConversationId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn tags_are_randomised_bound_to_the_conversation_and_open_offline() {
        let mut rng = StdRng::seed_from_u64(7);
        let pair = JournalKeyPair::generate(&mut rng).unwrap();
        let id = PatientIdentifier::new(" urn:oid:1.2.3 ", " MRN-001 ").unwrap();
        let a = seal_patient_tag(pair.public(), conv(1), &id, &mut rng).unwrap();
        let b = seal_patient_tag(pair.public(), conv(1), &id, &mut rng).unwrap();
        assert_ne!(a, b, "two tags of one patient must differ");
        assert_ne!(a[..JOURNAL_ENC_LEN], b[..JOURNAL_ENC_LEN]);
        let opened = open_patient_tag(&pair, conv(1), &a).unwrap();
        assert_eq!(opened, id);
        assert_eq!(opened.value(), "MRN-001");
        // Moved to another conversation, or opened with another key: refused.
        assert!(matches!(
            open_patient_tag(&pair, conv(2), &a),
            Err(JournalError::Open)
        ));
        let other = JournalKeyPair::generate(&mut rng).unwrap();
        assert!(open_patient_tag(&other, conv(1), &a).is_err());
        assert!(open_patient_tag(&pair, conv(1), &a[..100]).is_err());
        // The plaintext identifier is not in the tag.
        assert!(!a.windows(7).any(|w| w == b"MRN-001"));
    }

    #[test]
    fn identifiers_and_patient_data_are_validated() {
        let today = time::macros::date!(2026 - 12 - 03);
        assert!(PatientIdentifier::parse_token("urn:oid:1.2.3|42").is_ok());
        for bad in [
            "42",
            "|42",
            "urn:oid:1|",
            "not a uri|42",
            "1x:y|42",
            "urn:x|4\u{7}2",
        ] {
            assert!(PatientIdentifier::parse_token(bad).is_err(), "{bad:?}");
        }
        let p = PatientContext::new(
            "urn:oid:1.2.3",
            "42",
            Some(" Jane Doe "),
            Some("1980-02-29"),
            today,
        )
        .unwrap();
        assert_eq!(p.display.as_deref(), Some("Jane Doe"));
        for bad_date in ["1981-02-29", "2027-01-01", "1980-2-1", "yesterday"] {
            assert!(
                PatientContext::new("urn:oid:1", "42", None, Some(bad_date), today).is_err(),
                "{bad_date}"
            );
        }
        assert!(PatientContext::new("urn:oid:1", "42", Some(""), None, today).is_err());
    }
}
