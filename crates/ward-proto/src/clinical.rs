//! Wire types of patient-context conversations and organisation message templates
//! (ADR 0019).
//!
//! - The *patient index*: a conversation bound to a patient carries, on the server, only a
//!   tag sealed by the client to the organisation's journal key (randomised HPKE): the server
//!   cannot read or link tags; a compliance officer downloads them and opens them offline.
//! - *Templates*: organisation configuration (not PHI) such as "Code Blue, room {room}", with
//!   `{name}` placeholders the sender fills in; rendering is here so that the server (which
//!   validates a template when it is created) and the client (which renders it) agree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{Bytes, ConversationId};

/// Most patient tags one conversation may carry.
pub const MAX_PATIENT_TAGS_PER_CONVERSATION: usize = 64;
/// Largest patient tag accepted, bytes (the X-Wing encapsulation is 1,120 bytes; the sealed
/// identifier at most about 2 KiB).
pub const MAX_PATIENT_TAG_BYTES: usize = 4096;
/// Largest page of the patient index.
pub const MAX_PATIENT_INDEX_PAGE: usize = 1000;

/// Store a patient tag for a conversation (`POST /v1/conversations/{id}/patient-tags`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientTagRequest {
    /// The journal key the tag is sealed to.
    pub key_id: String,
    /// `enc ‖ ciphertext` of HPKE base mode (opaque to the server).
    pub tag: Bytes,
}

/// One entry of the patient index as served to a compliance officer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatientIndexEntry {
    /// Position in the index (for paging).
    pub index_seq: u64,
    /// The conversation the tag was stored for.
    pub conversation_id: ConversationId,
    /// The journal key the tag is sealed to.
    pub key_id: String,
    /// The sealed identifier.
    pub tag: Bytes,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A page of the patient index (`GET /v1/compliance/patient-index?after=&limit=`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatientIndexPage {
    /// Entries with `index_seq > after`, ascending.
    pub entries: Vec<PatientIndexEntry>,
    /// True when more entries follow.
    pub more: bool,
}

/// Largest rendered or source template text, characters.
pub const MAX_TEMPLATE_CHARS: usize = 1000;
/// Largest value of one template variable, characters.
pub const MAX_TEMPLATE_VAR_CHARS: usize = 200;
/// Most templates an organisation may define.
pub const MAX_TEMPLATES: usize = 500;

/// A validated template name: `[a-z0-9][a-z0-9-]{0,63}` (e.g. `code-blue`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{0,63}$")]
pub struct TemplateName(String);

impl TemplateName {
    /// Parse and validate a template name.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TemplateError::Name(s.chars().take(80).collect()))
        }
    }
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TemplateName {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for TemplateName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a template or its rendering is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Bad template name.
    #[error(
        "template name {0:?} is invalid: use 1 to 64 lowercase letters, digits and '-', starting with a letter or digit"
    )]
    Name(String),
    /// Empty, too long, or with control characters other than newline.
    #[error("template text {0}")]
    Text(&'static str),
    /// A `{` without a matching `}`, a stray `}`, or a bad placeholder name.
    #[error("template text has a malformed placeholder at character {at}: {reason}")]
    Placeholder {
        /// Character offset.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A placeholder has no value.
    #[error("missing value for template variable {name} (use --var {name}=VALUE)")]
    Missing {
        /// The variable.
        name: String,
    },
    /// A value names no placeholder of the template.
    #[error("template has no variable {name} (it uses: {known})")]
    Unknown {
        /// The variable given.
        name: String,
        /// The template's variables, comma-separated.
        known: String,
    },
    /// A value is empty, too long or has control characters.
    #[error(
        "value of template variable {name} must be 1 to {MAX_TEMPLATE_VAR_CHARS} characters without control characters"
    )]
    Value {
        /// The variable.
        name: String,
    },
    /// The rendered text is too long.
    #[error("rendered template is {0} characters, more than {MAX_TEMPLATE_CHARS}")]
    TooLong(usize),
}

enum Segment<'a> {
    Lit(&'a str),
    Brace(char),
    Var(&'a str),
}

/// Splits template text into literals and `{name}` placeholders (`{{` and `}}` are literal
/// braces). Names are `[a-z_][a-z0-9_]{0,31}`.
fn segments(text: &str) -> Result<Vec<Segment<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut at = 0usize;
    while !rest.is_empty() {
        let next = rest.find(['{', '}']).unwrap_or(rest.len());
        if next > 0 {
            out.push(Segment::Lit(&rest[..next]));
            at += rest[..next].chars().count();
            rest = &rest[next..];
            continue;
        }
        if let Some(r) = rest.strip_prefix("{{") {
            out.push(Segment::Brace('{'));
            rest = r;
            at += 2;
        } else if let Some(r) = rest.strip_prefix("}}") {
            out.push(Segment::Brace('}'));
            rest = r;
            at += 2;
        } else if rest.starts_with('}') {
            return Err(TemplateError::Placeholder {
                at,
                reason: "'}' without '{' (write }} for a literal brace)",
            });
        } else {
            let close = rest.find('}').ok_or(TemplateError::Placeholder {
                at,
                reason: "'{' without '}' (write {{ for a literal brace)",
            })?;
            let name = &rest[1..close];
            let valid = !name.is_empty()
                && name.len() <= 32
                && name.bytes().enumerate().all(|(i, b)| {
                    b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit())
                });
            if !valid {
                return Err(TemplateError::Placeholder {
                    at,
                    reason: "a variable name is 1 to 32 of a-z, 0-9 and _, not starting with a digit",
                });
            }
            out.push(Segment::Var(name));
            at += close + 1;
            rest = &rest[close + 1..];
        }
    }
    Ok(out)
}

/// Checks template source text and returns its variable names (sorted, each once).
pub fn template_variables(text: &str) -> Result<Vec<String>, TemplateError> {
    let n = text.chars().count();
    if text.trim().is_empty() {
        return Err(TemplateError::Text("is empty"));
    }
    if n > MAX_TEMPLATE_CHARS {
        return Err(TemplateError::Text("is longer than 1000 characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(TemplateError::Text(
            "may not contain control characters other than newline",
        ));
    }
    let vars: BTreeSet<String> = segments(text)?
        .into_iter()
        .filter_map(|s| match s {
            Segment::Var(v) => Some(v.to_owned()),
            _ => None,
        })
        .collect();
    Ok(vars.into_iter().collect())
}

/// Renders a template: every placeholder needs a value, and every value a placeholder.
pub fn render_template(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let known = template_variables(text)?;
    if let Some(name) = vars.keys().find(|k| !known.contains(k)) {
        return Err(TemplateError::Unknown {
            name: name.clone(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    for (name, value) in vars {
        let n = value.chars().count();
        if value.trim().is_empty()
            || n > MAX_TEMPLATE_VAR_CHARS
            || value.chars().any(char::is_control)
        {
            return Err(TemplateError::Value { name: name.clone() });
        }
    }
    let mut out = String::with_capacity(text.len());
    for s in segments(text)? {
        match s {
            Segment::Lit(l) => out.push_str(l),
            Segment::Brace(c) => out.push(c),
            Segment::Var(v) => out.push_str(
                vars.get(v)
                    .ok_or_else(|| TemplateError::Missing { name: v.to_owned() })?,
            ),
        }
    }
    let n = out.chars().count();
    if n > MAX_TEMPLATE_CHARS {
        return Err(TemplateError::TooLong(n));
    }
    Ok(out)
}

/// Priority of a templated message, as on the wire of message content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePriority {
    /// Normal.
    Routine,
    /// Soon.
    Urgent,
    /// Immediately.
    Stat,
}

impl TemplatePriority {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routine => "routine",
            Self::Urgent => "urgent",
            Self::Stat => "stat",
        }
    }
    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "routine" => Some(Self::Routine),
            "urgent" => Some(Self::Urgent),
            "stat" => Some(Self::Stat),
            _ => None,
        }
    }
}

/// Create a template (`POST /v1/admin/templates`, admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateRequest {
    /// Unique name.
    pub name: TemplateName,
    /// Text with `{name}` placeholders.
    pub text: String,
    /// Priority of messages sent with it.
    pub priority: TemplatePriority,
}

/// A template as served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateInfo {
    /// Name.
    pub name: TemplateName,
    /// Text with `{name}` placeholders.
    pub text: String,
    /// Priority of messages sent with it.
    pub priority: TemplatePriority,
    /// Its variables, sorted.
    pub variables: Vec<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Every template (`GET /v1/templates`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    /// By name.
    pub templates: Vec<TemplateInfo>,
}

/// Longest do-not-disturb with an end time: 30 days.
pub const MAX_DND_SECS: i64 = 30 * 86_400;

/// Turn do-not-disturb on (`PUT /v1/me/dnd`): messages to the caller reach `cover`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DndRequest {
    /// The covering colleague.
    pub cover: crate::Username,
    /// When it ends by itself; absent: until turned off.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

/// A user's active do-not-disturb, as shown in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DndInfo {
    /// The user who is away.
    pub username: crate::Username,
    /// The colleague named when it was turned on.
    pub cover: crate::Username,
    /// Who receives the user's messages now: `cover`, or whom `cover` hands over to when
    /// they are on do-not-disturb too.
    pub effective_cover: crate::Username,
    /// When it ends by itself.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// When it was turned on.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn renders_placeholders_and_literal_braces() {
        let t = "Code Blue, room {room}, bed {bed} {{not a var}}";
        assert_eq!(template_variables(t).unwrap(), vec!["bed", "room"]);
        assert_eq!(
            render_template(t, &vars(&[("room", "12"), ("bed", "B")])).unwrap(),
            "Code Blue, room 12, bed B {not a var}"
        );
    }

    #[test]
    fn missing_and_unknown_variables_are_named() {
        let t = "Code Blue, room {room}";
        let e = render_template(t, &vars(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing value for template variable room (use --var room=VALUE)"
        );
        let e = render_template(t, &vars(&[("room", "1"), ("floor", "2")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template has no variable floor (it uses: room)"
        );
        assert!(matches!(
            render_template(t, &vars(&[("room", "a\u{7}")])),
            Err(TemplateError::Value { .. })
        ));
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in [
            "room {room",
            "room }",
            "{Room}",
            "{1a}",
            "{}",
            "",
            "a\u{0}b",
        ] {
            assert!(template_variables(bad).is_err(), "{bad:?}");
        }
        assert!(TemplateName::parse("code-blue").is_ok());
        for bad in ["", "-x", "Code", "a b", &"x".repeat(65)] {
            assert!(TemplateName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
