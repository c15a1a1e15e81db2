//! Data-loss prevention: detecting protected health information (PHI) in a message before it is
//! encrypted and sent, and deciding what to do about it.
//!
//! - [`scan`] finds identifiers in text and returns [`Finding`]s (byte offsets, never the
//!   matched text), using the built-in [`Detector`]s plus the organisation's MRN patterns from
//!   [`DlpConfig`].
//! - [`DlpPolicy::decide`] turns findings into a [`Decision`]: the strictest applicable
//!   [`Action`] and the detector labels that travel with the message as envelope metadata.
//!
//! Everything here is pure computation: no I/O, no clock, no global state besides the
//! compiled built-in patterns. Scanning runs in linear time (the `regex` crate has no
//! backtracking) over at most [`MAX_SCAN_BYTES`] of input; see `docs/dlp.md` for the detectors,
//! the algorithms and their references, the policy model and measured precision/recall.
//!
//! Findings carry no text, and no type here prints message content in `Debug`, so a finding or
//! decision can be logged without leaking PHI (STYLE.md §7).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// The largest prefix of a message that [`scan`] looks at, in bytes (64 KiB, the same as
/// [`MAX_TEXT_BYTES`](crate::content::MAX_TEXT_BYTES)). Longer input is scanned up to this
/// bound only; [`scan_report`] says when that happened so the caller can apply its policy.
pub const MAX_SCAN_BYTES: usize = 64 * 1024;

/// The most MRN patterns a [`DlpConfig`] may hold.
pub const MAX_MRN_PATTERNS: usize = 32;

/// The longest MRN pattern source accepted, in bytes.
pub const MAX_MRN_PATTERN_LEN: usize = 512;

/// Compiled-size limit of one MRN pattern (bounds memory and per-byte work).
const MRN_REGEX_SIZE_LIMIT: usize = 1 << 20;

// ------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------

/// A kind of identifier that [`scan`] can find. Serialised in snake_case (`us_ssn`, `npi`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// US Social Security number (`123-45-6789`; unformatted only next to "SSN").
    UsSsn,
    /// Medical record number, as defined by the organisation's [`DlpConfig::mrn_patterns`].
    Mrn,
    /// US National Provider Identifier: 10 digits, Luhn check over the `80840` prefix.
    Npi,
    /// US DEA registration number: two letters, six digits, one check digit.
    Dea,
    /// US Medicare Beneficiary Identifier (CMS MBI format, 11 characters).
    MedicareMbi,
    /// Telephone number: NANP, E.164 international (`+…`), Japanese domestic.
    Phone,
    /// E-mail address.
    Email,
    /// A date next to a birth-date context word (DOB, born, 生年月日, …). Dates alone do not fire.
    DateOfBirth,
    /// Payment card number: known IIN range and length, Luhn check.
    PaymentCard,
    /// ICD-10-CM diagnosis code, with a diagnosis context word or in dotted form.
    Icd10,
    /// Japanese Individual Number (My Number): 12 digits with the official check digit.
    JpMyNumber,
}

impl Detector {
    /// Every detector, in declaration order.
    pub const ALL: [Detector; 11] = [
        Detector::UsSsn,
        Detector::Mrn,
        Detector::Npi,
        Detector::Dea,
        Detector::MedicareMbi,
        Detector::Phone,
        Detector::Email,
        Detector::DateOfBirth,
        Detector::PaymentCard,
        Detector::Icd10,
        Detector::JpMyNumber,
    ];

    /// The serialised (snake_case) name, e.g. `"medicare_mbi"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::UsSsn => "us_ssn",
            Detector::Mrn => "mrn",
            Detector::Npi => "npi",
            Detector::Dea => "dea",
            Detector::MedicareMbi => "medicare_mbi",
            Detector::Phone => "phone",
            Detector::Email => "email",
            Detector::DateOfBirth => "date_of_birth",
            Detector::PaymentCard => "payment_card",
            Detector::Icd10 => "icd10",
            Detector::JpMyNumber => "jp_my_number",
        }
    }

    /// Tie-break between overlapping findings of equal confidence: lower wins. Detectors
    /// with a check digit or a strict structure come first.
    fn priority(self) -> u8 {
        match self {
            Detector::PaymentCard => 0,
            Detector::JpMyNumber => 1,
            Detector::Npi => 2,
            Detector::MedicareMbi => 3,
            Detector::Dea => 4,
            Detector::UsSsn => 5,
            Detector::Mrn => 6,
            Detector::Email => 7,
            Detector::DateOfBirth => 8,
            Detector::Phone => 9,
            Detector::Icd10 => 10,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a detector is about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Shape matches but nothing else supports it (not currently produced; reserved).
    Low,
    /// Shape and check digit (or strict format) match, but no context word is near.
    Medium,
    /// A check digit or strict format plus supporting context, or a format that is unambiguous
    /// on its own (e-mail, payment card, MBI, DEA, organisation MRN pattern).
    High,
}

/// One identifier found by [`scan`]. Offsets are byte offsets into the scanned text, on char
/// boundaries, `start < end`. The matched text itself is deliberately not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub detector: Detector,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// How sure the detector is.
    pub confidence: Confidence,
}

/// The serialisable source form of a [`DlpConfig`]: what the organisation defines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlpConfigSpec {
    /// Regular expressions (Rust `regex` syntax) matching the organisation's medical record
    /// numbers, e.g. `r"MRN[:# ]?\d{7}"`. A match is reported whole as [`Detector::Mrn`] if it
    /// does not continue an alphanumeric token on either side.
    pub mrn_patterns: Vec<String>,
    /// Built-in detectors switched off for this organisation (e.g. `jp_my_number` in a US-only
    /// deployment). [`Detector::Mrn`] here switches the MRN patterns off.
    pub disabled_detectors: Vec<Detector>,
}

/// Validated organisation configuration for [`scan`]: compiled MRN patterns plus switches.
///
/// Build with [`DlpConfig::new`] (or deserialise, which validates the same way).
/// [`DlpConfig::default`] has no MRN patterns and every built-in detector on.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "DlpConfigSpec", into = "DlpConfigSpec")]
pub struct DlpConfig {
    spec: DlpConfigSpec,
    mrn: Vec<Regex>,
}

impl fmt::Debug for DlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlpConfig")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DlpConfig {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

/// Why a [`DlpConfigSpec`] was rejected. Every variant names the offending pattern by index.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlpConfigError {
    /// More than [`MAX_MRN_PATTERNS`] patterns.
    #[error("too many MRN patterns: {count} (at most {max})")]
    TooManyPatterns {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A pattern is empty or only whitespace.
    #[error("MRN pattern #{index} is empty")]
    EmptyPattern {
        /// Index in `mrn_patterns`.
        index: usize,
    },
    /// A pattern is longer than [`MAX_MRN_PATTERN_LEN`] bytes.
    #[error("MRN pattern #{index} is {len} bytes long (at most {max})")]
    PatternTooLong {
        /// Index in `mrn_patterns`.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A pattern is not a valid regular expression, or compiles too large.
    #[error("MRN pattern #{index} is not a valid regular expression: {message}")]
    InvalidPattern {
        /// Index in `mrn_patterns`.
        index: usize,
        /// The `regex` crate's explanation (position and cause).
        message: String,
    },
    /// A pattern matches the empty string, so it would "find" an MRN everywhere.
    #[error("MRN pattern #{index} matches the empty string")]
    MatchesEmpty {
        /// Index in `mrn_patterns`.
        index: usize,
    },
}

impl DlpConfig {
    /// Validates and compiles `spec`.
    pub fn new(spec: DlpConfigSpec) -> Result<Self, DlpConfigError> {
        if spec.mrn_patterns.len() > MAX_MRN_PATTERNS {
            return Err(DlpConfigError::TooManyPatterns {
                count: spec.mrn_patterns.len(),
                max: MAX_MRN_PATTERNS,
            });
        }
        let mut mrn = Vec::with_capacity(spec.mrn_patterns.len());
        for (index, pattern) in spec.mrn_patterns.iter().enumerate() {
            if pattern.trim().is_empty() {
                return Err(DlpConfigError::EmptyPattern { index });
            }
            if pattern.len() > MAX_MRN_PATTERN_LEN {
                return Err(DlpConfigError::PatternTooLong {
                    index,
                    len: pattern.len(),
                    max: MAX_MRN_PATTERN_LEN,
                });
            }
            let re = RegexBuilder::new(pattern)
                .size_limit(MRN_REGEX_SIZE_LIMIT)
                .dfa_size_limit(MRN_REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| DlpConfigError::InvalidPattern {
                    index,
                    message: e.to_string(),
                })?;
            if re.is_match("") {
                return Err(DlpConfigError::MatchesEmpty { index });
            }
            mrn.push(re);
        }
        Ok(Self { spec, mrn })
    }

    /// Shorthand for [`DlpConfig::new`] with only MRN patterns.
    pub fn with_mrn_patterns<I, S>(patterns: I) -> Result<Self, DlpConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(DlpConfigSpec {
            mrn_patterns: patterns.into_iter().map(Into::into).collect(),
            disabled_detectors: Vec::new(),
        })
    }

    /// The organisation's MRN patterns, as given.
    pub fn mrn_patterns(&self) -> &[String] {
        &self.spec.mrn_patterns
    }

    /// The source form (what serialises).
    pub fn spec(&self) -> &DlpConfigSpec {
        &self.spec
    }

    /// Whether `detector` runs under this configuration.
    pub fn is_enabled(&self, detector: Detector) -> bool {
        !self.spec.disabled_detectors.contains(&detector)
    }
}

impl TryFrom<DlpConfigSpec> for DlpConfig {
    type Error = DlpConfigError;
    fn try_from(spec: DlpConfigSpec) -> Result<Self, Self::Error> {
        Self::new(spec)
    }
}

impl From<DlpConfig> for DlpConfigSpec {
    fn from(config: DlpConfig) -> Self {
        config.spec
    }
}

/// The result of [`scan_report`]: findings plus whether the input was cut at [`MAX_SCAN_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Findings, sorted by `start`, never overlapping each other.
    pub findings: Vec<Finding>,
    /// How many bytes from the start of the text were scanned.
    pub scanned_bytes: usize,
    /// `true` if the text was longer than [`MAX_SCAN_BYTES`] and its tail was not scanned.
    pub truncated: bool,
}

// ------------------------------------------------------------------------------------------
// Scanning
// ------------------------------------------------------------------------------------------

/// Finds identifiers in `text` (its first [`MAX_SCAN_BYTES`] bytes) under `org`'s config.
///
/// Findings are sorted by `start` and do not overlap: where two detectors claim overlapping
/// text, the higher confidence wins, then the more specific detector (check digit first).
pub fn scan(text: &str, org: &DlpConfig) -> Vec<Finding> {
    scan_report(text, org).findings
}

/// Like [`scan`], but also says how much was scanned and whether the input was truncated.
pub fn scan_report(text: &str, org: &DlpConfig) -> ScanReport {
    let end = floor_char_boundary(text, MAX_SCAN_BYTES);
    let scanned = &text[..end];
    let lower = scanned.to_ascii_lowercase();
    let cx = Cx {
        text: scanned,
        lower: &lower,
    };
    let mut out = Vec::new();
    let on = |d| org.is_enabled(d);
    if on(Detector::UsSsn) {
        detect_ssn(&cx, &mut out);
    }
    if on(Detector::Mrn) {
        detect_mrn(&cx, &org.mrn, &mut out);
    }
    if on(Detector::Npi) {
        detect_npi(&cx, &mut out);
    }
    if on(Detector::Dea) {
        detect_dea(&cx, &mut out);
    }
    if on(Detector::MedicareMbi) {
        detect_mbi(&cx, &mut out);
    }
    if on(Detector::Phone) {
        detect_phone(&cx, &mut out);
    }
    if on(Detector::Email) {
        detect_email(&cx, &mut out);
    }
    if on(Detector::DateOfBirth) {
        detect_dob(&cx, &mut out);
    }
    if on(Detector::PaymentCard) {
        detect_card(&cx, &mut out);
    }
    if on(Detector::Icd10) {
        detect_icd10(&cx, &mut out);
    }
    if on(Detector::JpMyNumber) {
        detect_my_number(&cx, &mut out);
    }
    ScanReport {
        findings: resolve_overlaps(out),
        scanned_bytes: end,
        truncated: end < text.len(),
    }
}

/// Keeps a non-overlapping subset: highest confidence first, then detector priority, then the
/// longer span, then the earlier one.
fn resolve_overlaps(mut cands: Vec<Finding>) -> Vec<Finding> {
    cands.sort_by(|a, b| {
        b.confidence
            .cmp(&a.confidence)
            .then(a.detector.priority().cmp(&b.detector.priority()))
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    // Accepted spans by start; they never overlap, so only the one starting last before a
    // candidate's end can overlap it.
    let mut kept: BTreeMap<usize, Finding> = BTreeMap::new();
    for c in cands {
        let overlaps = kept
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, k)| k.end > c.start);
        if !overlaps {
            kept.insert(c.start, c);
        }
    }
    kept.into_values().collect()
}

/// The scanned text and its ASCII-lowercased copy (same byte offsets) for context look-ups.
struct Cx<'a> {
    text: &'a str,
    lower: &'a str,
}

impl Cx<'_> {
    fn push(&self, out: &mut Vec<Finding>, d: Detector, start: usize, end: usize, c: Confidence) {
        if start < end {
            out.push(Finding {
                detector: d,
                start,
                end,
                confidence: c,
            });
        }
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn prev_char(s: &str, i: usize) -> Option<char> {
    s[..i].chars().next_back()
}

fn next_char(s: &str, i: usize) -> Option<char> {
    s[i..].chars().next()
}

fn is_joiner(c: char) -> bool {
    matches!(c, '-' | '.' | '/' | '_')
}

/// Whether `[start, end)` is a whole token: not glued to ASCII letters or digits on either
/// side, directly or through a joiner (`-`, `.`, `/`, `_`), so `ORD-123-45-6789` and
/// `12345678901` do not yield a shorter identifier inside them.
fn isolated(s: &str, start: usize, end: usize) -> bool {
    let left = match prev_char(s, start) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() => false,
        Some(c) if is_joiner(c) => {
            !prev_char(s, start - c.len_utf8()).is_some_and(|p| p.is_ascii_alphanumeric())
        }
        Some(_) => true,
    };
    let right = match next_char(s, end) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() => false,
        Some(c) if is_joiner(c) => {
            !next_char(s, end + c.len_utf8()).is_some_and(|n| n.is_ascii_alphanumeric())
        }
        Some(_) => true,
    };
    left && right
}

/// [`isolated`], and for a match written in space-separated groups (`1234 5678 9018`) also
/// not one more group of a longer space-separated number (`4111 1111 1111 1111`).
fn isolated_group(s: &str, start: usize, end: usize) -> bool {
    if !isolated(s, start, end) {
        return false;
    }
    if !s[start..end].contains(' ') {
        return true;
    }
    let digit_after =
        next_char(s, end) == Some(' ') && next_char(s, end + 1).is_some_and(|c| c.is_ascii_digit());
    let digit_before = start >= 1
        && prev_char(s, start) == Some(' ')
        && prev_char(s, start - 1).is_some_and(|c| c.is_ascii_digit());
    !digit_after && !digit_before
}

/// Whether one of `keywords` (lowercase) ends at most `max_gap` bytes before `start` and the
/// text between it and `start` is only punctuation, spaces and words accepted by `filler`.
fn context_before(
    cx: &Cx<'_>,
    start: usize,
    keywords: &[&str],
    max_gap: usize,
    filler: fn(&str) -> bool,
) -> bool {
    let longest = keywords.iter().map(|k| k.len()).max().unwrap_or(0);
    let from = floor_char_boundary(cx.lower, start.saturating_sub(max_gap + longest));
    let window = &cx.lower[from..start];
    keywords.iter().any(|kw| {
        window.match_indices(kw).any(|(i, _)| {
            let kw_start = from + i;
            let kw_end = kw_start + kw.len();
            keyword_bounded(cx.lower, kw_start, kw_end, kw)
                && start - kw_end <= max_gap
                && gap_ok(&cx.lower[kw_end..start], filler)
        })
    })
}

/// Whether one of `keywords` starts at most `max_gap` bytes after `end` with only punctuation
/// and spaces between.
fn context_after(cx: &Cx<'_>, end: usize, keywords: &[&str], max_gap: usize) -> bool {
    let longest = keywords.iter().map(|k| k.len()).max().unwrap_or(0);
    let to = floor_char_boundary(cx.lower, end + max_gap + longest);
    let window = &cx.lower[end..to];
    keywords.iter().any(|kw| {
        window.match_indices(kw).any(|(i, _)| {
            let kw_start = end + i;
            i <= max_gap
                && keyword_bounded(cx.lower, kw_start, kw_start + kw.len(), kw)
                && gap_ok(&cx.lower[end..kw_start], |_| false)
        })
    })
}

/// ASCII keywords must not continue a word (`newborn` is not `born`); CJK keywords have no
/// word boundaries to check.
fn keyword_bounded(s: &str, start: usize, end: usize, kw: &str) -> bool {
    let starts_ascii = kw.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ends_ascii = kw
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let left = !starts_ascii || !prev_char(s, start).is_some_and(|c| c.is_ascii_alphanumeric());
    let right = !ends_ascii || !next_char(s, end).is_some_and(|c| c.is_ascii_alphabetic());
    left && right
}

/// The gap between a context word and a candidate: no clause break, and every word filler.
fn gap_ok(gap: &str, filler: fn(&str) -> bool) -> bool {
    if gap.contains([';', '。', '\n', '|']) {
        return false;
    }
    gap.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .all(filler)
}

fn no_filler(_: &str) -> bool {
    false
}

fn id_filler(w: &str) -> bool {
    matches!(
        w,
        "no" | "nbr"
            | "num"
            | "number"
            | "is"
            | "of"
            | "pt"
            | "patient"
            | "s"
            | "id"
            | "card"
            | "the"
            | "his"
            | "her"
            | "は"
            | "が"
    )
}

fn digits_of(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Compiles a built-in pattern. The patterns are constants covered by unit tests.
fn builtin(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in DLP pattern compiles (unit-tested)")
}

// --- us_ssn -------------------------------------------------------------------------------

static SSN_RE: LazyLock<Regex> =
    LazyLock::new(|| builtin(r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9}"));

const SSN_CONTEXT: &[&str] = &[
    "ssn",
    "ss#",
    "ss #",
    "social security",
    "soc sec",
    "social sec",
    "ssa",
];

fn detect_ssn(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in SSN_RE.find_iter(cx.text) {
        if !isolated_group(cx.text, m.start(), m.end())
            || !checks::ssn_valid(&digits_of(m.as_str()))
        {
            continue;
        }
        let context = context_before(cx, m.start(), SSN_CONTEXT, 24, id_filler);
        let dashed = m.as_str().contains('-');
        match (dashed, context) {
            (_, true) => cx.push(out, Detector::UsSsn, m.start(), m.end(), Confidence::High),
            (true, false) => cx.push(out, Detector::UsSsn, m.start(), m.end(), Confidence::Medium),
            (false, false) => {}
        }
    }
}

// --- mrn ----------------------------------------------------------------------------------

fn detect_mrn(cx: &Cx<'_>, patterns: &[Regex], out: &mut Vec<Finding>) {
    for re in patterns {
        for m in re.find_iter(cx.text) {
            let s = m.as_str();
            let first_alnum = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            let last_alnum = s
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            let left_ok = !first_alnum
                || !prev_char(cx.text, m.start()).is_some_and(|c| c.is_ascii_alphanumeric());
            let right_ok = !last_alnum
                || !next_char(cx.text, m.end()).is_some_and(|c| c.is_ascii_alphanumeric());
            if left_ok && right_ok {
                cx.push(out, Detector::Mrn, m.start(), m.end(), Confidence::High);
            }
        }
    }
}

// --- npi ----------------------------------------------------------------------------------

static NPI_RE: LazyLock<Regex> = LazyLock::new(|| builtin(r"[12][0-9]{9}"));

fn detect_npi(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in NPI_RE.find_iter(cx.text) {
        if isolated(cx.text, m.start(), m.end()) && checks::npi_valid(m.as_str()) {
            let conf = if context_before(cx, m.start(), &["npi"], 24, id_filler) {
                Confidence::High
            } else {
                Confidence::Medium
            };
            cx.push(out, Detector::Npi, m.start(), m.end(), conf);
        }
    }
}

// --- dea ----------------------------------------------------------------------------------

static DEA_RE: LazyLock<Regex> = LazyLock::new(|| builtin(r"[A-Z][A-Z9][0-9]{7}"));

fn detect_dea(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in DEA_RE.find_iter(cx.text) {
        if isolated(cx.text, m.start(), m.end()) && checks::dea_valid(m.as_str()) {
            cx.push(out, Detector::Dea, m.start(), m.end(), Confidence::High);
        }
    }
}

// --- medicare_mbi -------------------------------------------------------------------------

static MBI_RE: LazyLock<Regex> = LazyLock::new(|| {
    // C = letters without S L O I B Z; A = C or digit; N = digit. Dashes for display only.
    let c = "[AC-HJKMNP-RT-Y]";
    let a = "[AC-HJKMNP-RT-Y0-9]";
    builtin(&format!(
        "(?i)[1-9]{c}{a}[0-9]-?{c}{a}[0-9]-?{c}{c}[0-9]{{2}}"
    ))
});

fn detect_mbi(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in MBI_RE.find_iter(cx.text) {
        let s = m.as_str();
        let dashes = s.matches('-').count();
        // One case throughout (no "1eG4…"), dashes both or neither.
        let one_case = s == s.to_ascii_uppercase() || s == s.to_ascii_lowercase();
        if (dashes == 0 || dashes == 2) && one_case && isolated(cx.text, m.start(), m.end()) {
            cx.push(
                out,
                Detector::MedicareMbi,
                m.start(),
                m.end(),
                Confidence::High,
            );
        }
    }
}

// --- phone --------------------------------------------------------------------------------

static NANP_RE: LazyLock<Regex> = LazyLock::new(|| {
    builtin(
        r"(?:\+?1[-. ]?)?(?:\([2-9][0-9]{2}\)[-. ]?|[2-9][0-9]{2}([-. ]?))[2-9][0-9]{2}([-. ]?)[0-9]{4}",
    )
});

static INTL_RE: LazyLock<Regex> =
    LazyLock::new(|| builtin(r"\+[1-9][0-9]{0,3}(?:[-. ]?\(?[0-9]{1,5}\)?){1,6}"));

static JP_PHONE_RE: LazyLock<Regex> =
    LazyLock::new(|| builtin(r"0[0-9]{1,4}-[0-9]{1,4}-[0-9]{4}|0[0-9]{1,4}\([0-9]{1,4}\)[0-9]{4}"));

const PHONE_CONTEXT: &[&str] = &[
    "phone",
    "tel",
    "telephone",
    "call",
    "mobile",
    "cell",
    "ph",
    "pager",
    "fax",
    "contact",
    "reach",
    "text",
    "電話",
    "携帯",
    "連絡先",
];

fn phone_filler(w: &str) -> bool {
    id_filler(w)
        || matches!(
            w,
            "at" | "on"
                | "me"
                | "back"
                | "us"
                | "him"
                | "them"
                | "family"
                | "daughter"
                | "son"
                | "wife"
                | "husband"
                | "mother"
                | "father"
                | "home"
                | "work"
                | "cell"
                | "mobile"
                | "office"
                | "via"
                | "or"
                | "番号"
        )
}

fn detect_phone(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let context = |start| context_before(cx, start, PHONE_CONTEXT, 32, phone_filler);
    for caps in NANP_RE.captures_iter(cx.text) {
        let Some(m) = caps.get(0) else { continue };
        if !isolated(cx.text, m.start(), m.end()) {
            continue;
        }
        let s = m.as_str();
        let paren = s.contains('(');
        let plus = s.starts_with('+');
        let seps: Vec<&str> = [caps.get(1), caps.get(2)]
            .into_iter()
            .flatten()
            .map(|g| g.as_str())
            .collect();
        let punctuated = !paren && seps.len() == 2 && seps.iter().all(|x| *x == "-" || *x == ".");
        // Unpunctuated or space-separated digits need a phone context word.
        if paren || plus || punctuated || context(m.start()) {
            cx.push(out, Detector::Phone, m.start(), m.end(), Confidence::High);
        }
    }
    for m in INTL_RE.find_iter(cx.text) {
        // Trim trailing groups (e.g. a dose after the number) until at most 15 digits remain.
        let s = m.as_str();
        let mut end = m.end();
        let mut digits = digits_of(s).len();
        while digits > 15 {
            let tail = &cx.text[m.start()..end];
            let Some(cut) = tail.rfind(|c: char| !c.is_ascii_digit() && c != ')') else {
                break;
            };
            digits -= digits_of(&tail[cut..]).len();
            end = m.start() + cut;
        }
        let trimmed = cx.text[m.start()..end].trim_end_matches(['-', '.', ' ', '(']);
        let end = m.start() + trimmed.len();
        let digits = digits_of(trimmed).len();
        let left_ok = !prev_char(cx.text, m.start()).is_some_and(|c| c.is_ascii_alphanumeric());
        let right_ok = !next_char(cx.text, end).is_some_and(|c| c.is_ascii_alphanumeric());
        if (8..=15).contains(&digits) && left_ok && right_ok {
            cx.push(out, Detector::Phone, m.start(), end, Confidence::High);
        }
    }
    for m in JP_PHONE_RE.find_iter(cx.text) {
        let n = digits_of(m.as_str()).len();
        if (n == 10 || n == 11) && isolated(cx.text, m.start(), m.end()) {
            let conf = if context(m.start()) {
                Confidence::High
            } else {
                Confidence::Medium
            };
            cx.push(out, Detector::Phone, m.start(), m.end(), conf);
        }
    }
}

// --- email --------------------------------------------------------------------------------

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    builtin(
        r"[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}",
    )
});

fn detect_email(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in EMAIL_RE.find_iter(cx.text) {
        let right_ok = !next_char(cx.text, m.end()).is_some_and(|c| c.is_ascii_alphanumeric());
        if right_ok {
            cx.push(out, Detector::Email, m.start(), m.end(), Confidence::High);
        }
    }
}

// --- date_of_birth ------------------------------------------------------------------------

const MONTHS: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

static DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    builtin(&format!(
        "(?i)(?P<iso>[0-9]{{4}}[-/.][0-9]{{1,2}}[-/.][0-9]{{1,2}})\
         |(?P<num>[0-9]{{1,2}}[-/.][0-9]{{1,2}}[-/.](?:[0-9]{{4}}|[0-9]{{2}}))\
         |(?P<dmy>[0-9]{{1,2}}(?:st|nd|rd|th)?[ -]{MONTHS}\\.?[ ,-]+[0-9]{{4}})\
         |(?P<mdy>{MONTHS}\\.?[ ]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ ]+[0-9]{{4}})\
         |(?P<jp>(?:[0-9]{{4}}|(?:明治|大正|昭和|平成|令和)(?:[0-9]{{1,2}}|元))年[0-9]{{1,2}}月[0-9]{{1,2}}日)"
    ))
});

const DOB_CONTEXT: &[&str] = &[
    "dob",
    "d.o.b",
    "date of birth",
    "birth date",
    "birthdate",
    "birthday",
    "born",
    "生年月日",
    "誕生日",
];

const DOB_AFTER: &[&str] = &["生まれ", "生", "(dob)", "dob"];

fn dob_filler(w: &str) -> bool {
    matches!(
        w,
        "on" | "in"
            | "is"
            | "was"
            | "of"
            | "the"
            | "date"
            | "pt"
            | "patient"
            | "s"
            | "age"
            | "dob"
            | "d"
            | "o"
            | "b"
            | "reported"
            | "confirmed"
            | "listed"
            | "recorded"
            | "as"
            | "mm"
            | "dd"
            | "yyyy"
            | "yy"
            | "は"
            | "が"
    )
}

fn detect_dob(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for caps in DATE_RE.captures_iter(cx.text) {
        let Some(m) = caps.get(0) else { continue };
        if !isolated(cx.text, m.start(), m.end()) {
            continue;
        }
        let s = m.as_str();
        let valid = if caps.name("iso").is_some() {
            let p = number_parts(s);
            p.len() == 3 && plausible_date(p[0], p[1], p[2])
        } else if caps.name("num").is_some() {
            let p = number_parts(s);
            p.len() == 3 && (plausible_date(p[2], p[0], p[1]) || plausible_date(p[2], p[1], p[0]))
        } else {
            true // month names and 年月日 forms: the regex already fixes the shape
        };
        if !valid {
            continue;
        }
        if context_before(cx, m.start(), DOB_CONTEXT, 24, dob_filler)
            || context_after(cx, m.end(), DOB_AFTER, 3)
        {
            cx.push(
                out,
                Detector::DateOfBirth,
                m.start(),
                m.end(),
                Confidence::High,
            );
        }
    }
}

fn number_parts(s: &str) -> Vec<u32> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// Year is four digits 1870..=2100 or two digits; month 1..=12; day 1..=31.
fn plausible_date(y: u32, m: u32, d: u32) -> bool {
    (y < 100 || (1870..=2100).contains(&y)) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

// --- payment_card -------------------------------------------------------------------------

static CARD_RE: LazyLock<Regex> = LazyLock::new(|| {
    builtin(
        r"[0-9]{13,19}|[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}(?:-[0-9]{3})?|[0-9]{4} [0-9]{4} [0-9]{4} [0-9]{4}(?: [0-9]{3})?|[0-9]{4}[- ][0-9]{6}[- ][0-9]{4,5}",
    )
});

fn detect_card(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in CARD_RE.find_iter(cx.text) {
        let s = m.as_str();
        let digits = digits_of(s);
        let mut end = m.end();
        let mut ok = checks::payment_card_valid(&digits);
        // "4111 1111 1111 1111 123": a CVV or other number after a 16-digit card.
        if !ok && digits.len() == 19 && s.len() > 19 {
            ok = checks::payment_card_valid(&digits[..16]);
            end = m.start() + 19;
        }
        if ok && isolated(cx.text, m.start(), end) {
            cx.push(out, Detector::PaymentCard, m.start(), end, Confidence::High);
        }
    }
}

// --- icd10 --------------------------------------------------------------------------------

static ICD_RE: LazyLock<Regex> =
    LazyLock::new(|| builtin(r"[A-Z][0-9][0-9AB](?:\.[0-9A-Z]{1,4})?"));

const ICD_CONTEXT: &[&str] = &[
    "icd",
    "dx",
    "diagnosis",
    "diagnoses",
    "diag",
    "ddx",
    "code",
    "codes",
    "coded",
    "診断",
    "病名",
];

/// Words that make a dotted code-shaped token something else ("room B12.4", "lot C10.2A").
const ICD_NEGATIVE: &[&str] = &[
    "room", "rm", "bed", "bay", "ward", "unit", "floor", "lot", "batch", "version", "ver",
    "vitamin", "step", "section", "table", "figure", "fig", "form", "level", "suite", "gate",
];

fn icd_filler(w: &str) -> bool {
    let b = w.as_bytes();
    let code_like = b.len() >= 3
        && b.len() <= 8
        && b[0].is_ascii_alphabetic()
        && b[1].is_ascii_digit()
        && b.iter().all(u8::is_ascii_alphanumeric);
    let tail = !b.is_empty()
        && b.len() <= 4
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b.iter().any(u8::is_ascii_digit);
    code_like
        || tail
        || matches!(
            w,
            "and"
                | "or"
                | "cm"
                | "10"
                | "primary"
                | "secondary"
                | "principal"
                | "admitting"
                | "working"
                | "discharge"
                | "final"
                | "is"
                | "was"
                | "of"
                | "with"
                | "code"
                | "codes"
                | "icd"
                | "dx"
                | "new"
                | "updated"
                | "s"
                | "は"
        )
}

fn detect_icd10(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in ICD_RE.find_iter(cx.text) {
        if !isolated(cx.text, m.start(), m.end()) {
            continue;
        }
        if context_before(cx, m.start(), ICD_CONTEXT, 80, icd_filler)
            || context_after(cx, m.end(), &["(icd", "icd"], 2)
        {
            cx.push(out, Detector::Icd10, m.start(), m.end(), Confidence::High);
        } else if m.as_str().contains('.')
            && !context_before(cx, m.start(), ICD_NEGATIVE, 2, no_filler)
        {
            cx.push(out, Detector::Icd10, m.start(), m.end(), Confidence::Medium);
        }
    }
}

// --- jp_my_number -------------------------------------------------------------------------

static MY_NUMBER_RE: LazyLock<Regex> =
    LazyLock::new(|| builtin(r"[0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4}|[0-9]{4} [0-9]{4} [0-9]{4}"));

const MY_NUMBER_CONTEXT: &[&str] = &[
    "マイナンバー",
    "個人番号",
    "my number",
    "mynumber",
    "individual number",
];

fn detect_my_number(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for m in MY_NUMBER_RE.find_iter(cx.text) {
        if isolated_group(cx.text, m.start(), m.end())
            && checks::my_number_valid(&digits_of(m.as_str()))
        {
            let conf = if context_before(cx, m.start(), MY_NUMBER_CONTEXT, 24, id_filler) {
                Confidence::High
            } else {
                Confidence::Medium
            };
            cx.push(out, Detector::JpMyNumber, m.start(), m.end(), conf);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Check-digit algorithms
// ------------------------------------------------------------------------------------------

/// The check-digit and format algorithms behind the detectors, usable on their own (e.g. to
/// validate a form field). All take the bare characters (no spaces or dashes) and return
/// `false` for anything of the wrong length or alphabet.
pub mod checks {
    /// Luhn (mod 10) check over ASCII digits, the last digit being the check digit.
    pub fn luhn_valid(digits: &str) -> bool {
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && luhn_sum(digits.bytes().rev().map(|b| u32::from(b - b'0')), false) % 10 == 0
    }

    /// The Luhn check digit to append to `payload` (ASCII digits); `None` if not all digits.
    pub fn luhn_check_digit(payload: &str) -> Option<u8> {
        if !payload.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sum = luhn_sum(payload.bytes().rev().map(|b| u32::from(b - b'0')), true);
        Some(((10 - sum % 10) % 10) as u8)
    }

    /// Sum of Luhn-transformed digits given right to left; `double_first` doubles the first.
    fn luhn_sum(rev: impl Iterator<Item = u32>, double_first: bool) -> u32 {
        rev.enumerate()
            .map(|(i, d)| {
                if (i % 2 == 0) == double_first {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum()
    }

    /// NPI: 10 digits starting with 1 or 2, whose Luhn check holds with the card-issuer prefix
    /// `80840` prepended (CMS, "Requirements for Constructing the NPI Check Digit").
    pub fn npi_valid(npi: &str) -> bool {
        npi.len() == 10
            && matches!(npi.as_bytes()[0], b'1' | b'2')
            && luhn_valid(&format!("80840{npi}"))
    }

    /// The NPI check digit for the first nine digits.
    pub fn npi_check_digit(first9: &str) -> Option<u8> {
        if first9.len() != 9 {
            return None;
        }
        luhn_check_digit(&format!("80840{first9}"))
    }

    /// DEA registrant-type letters accepted as the first character.
    pub const DEA_FIRST_LETTERS: &str = "ABCDEFGHJKLMPRSTUX";

    /// DEA registration number: a registrant-type letter from [`DEA_FIRST_LETTERS`], a letter
    /// (registrant's last-name initial) or `9`, six digits and a check digit equal to the last
    /// digit of `(d1 + d3 + d5) + 2 × (d2 + d4 + d6)`. Upper case only.
    pub fn dea_valid(dea: &str) -> bool {
        let b = dea.as_bytes();
        if b.len() != 9 || !DEA_FIRST_LETTERS.as_bytes().contains(&b[0]) {
            return false;
        }
        if !(b[1].is_ascii_uppercase() || b[1] == b'9') {
            return false;
        }
        if !b[2..].iter().all(u8::is_ascii_digit) {
            return false;
        }
        dea_check_digit(&dea[2..8]) == Some(b[8] - b'0')
    }

    /// The DEA check digit for the six digits after the two letters.
    pub fn dea_check_digit(six: &str) -> Option<u8> {
        let d: Vec<u32> = six
            .bytes()
            .map(|b| u32::from(b.wrapping_sub(b'0')))
            .collect();
        if d.len() != 6 || d.iter().any(|x| *x > 9) {
            return None;
        }
        Some((((d[0] + d[2] + d[4]) + 2 * (d[1] + d[3] + d[5])) % 10) as u8)
    }

    /// Letters allowed in a Medicare Beneficiary Identifier (no S, L, O, I, B, Z).
    pub const MBI_LETTERS: &str = "ACDEFGHJKMNPQRTUVWXY";

    /// Medicare Beneficiary Identifier (CMS MBI format, 11 characters, no dashes): positions
    /// 1: digit 1–9; 2, 5, 8, 9: letter from [`MBI_LETTERS`]; 3, 6: letter or digit;
    /// 4, 7, 10, 11: digit. Case-insensitive.
    pub fn mbi_valid(mbi: &str) -> bool {
        let b = mbi.as_bytes();
        if b.len() != 11 {
            return false;
        }
        let letter = |c: u8| MBI_LETTERS.as_bytes().contains(&c.to_ascii_uppercase());
        let digit = |c: u8| c.is_ascii_digit();
        (b'1'..=b'9').contains(&b[0])
            && letter(b[1])
            && (letter(b[2]) || digit(b[2]))
            && digit(b[3])
            && letter(b[4])
            && (letter(b[5]) || digit(b[5]))
            && digit(b[6])
            && letter(b[7])
            && letter(b[8])
            && digit(b[9])
            && digit(b[10])
    }

    /// US SSN (9 digits) as issued: area not 000, 666 or 900–999; group not 00; serial not 0000.
    pub fn ssn_valid(ssn: &str) -> bool {
        if ssn.len() != 9 || !ssn.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let area = &ssn[..3];
        area != "000"
            && area != "666"
            && !area.starts_with('9')
            && &ssn[3..5] != "00"
            && &ssn[5..] != "0000"
    }

    /// Japanese Individual Number (My Number): 12 digits whose last is the check digit of the
    /// first 11 per the Cabinet Office ordinance formula: with Pn the n-th digit counted from
    /// the right of the 11 (n = 1..11) and Qn = n + 1 for n ≤ 6, n − 5 for n ≥ 7,
    /// r = Σ Pn·Qn mod 11, the check digit is 0 if r ≤ 1, else 11 − r.
    pub fn my_number_valid(number: &str) -> bool {
        number.len() == 12
            && number.bytes().all(|b| b.is_ascii_digit())
            && my_number_check_digit(&number[..11]) == Some(number.as_bytes()[11] - b'0')
    }

    /// The My Number check digit for the first 11 digits.
    pub fn my_number_check_digit(first11: &str) -> Option<u8> {
        if first11.len() != 11 || !first11.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sum: u32 = first11
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let n = i as u32 + 1;
                let q = if n <= 6 { n + 1 } else { n - 5 };
                u32::from(b - b'0') * q
            })
            .sum();
        let r = sum % 11;
        Some(if r <= 1 { 0 } else { (11 - r) as u8 })
    }

    /// Payment card: 13–19 digits, a known issuer (IIN) range with a length it issues, and
    /// a valid Luhn check. Ranges: Visa 4; Mastercard 51–55, 2221–2720; American Express 34,
    /// 37; Discover 6011, 644–649, 65, 622126–622925; JCB 3528–3589; Diners Club 300–305,
    /// 3095, 36, 38, 39; UnionPay 62; Maestro 5018, 5020, 5038, 5893, 6304, 6759, 6761–6763;
    /// Mir 2200–2204.
    pub fn payment_card_valid(digits: &str) -> bool {
        let n = digits.len();
        (13..=19).contains(&n)
            && digits.bytes().all(|b| b.is_ascii_digit())
            && iin_accepts(digits, n)
            && luhn_valid(digits)
    }

    fn iin_accepts(d: &str, n: usize) -> bool {
        let p = |k: usize| d[..k].parse::<u32>().unwrap_or(0);
        let (p1, p2, p3, p4, p6) = (p(1), p(2), p(3), p(4), p(6));
        let visa = p1 == 4 && matches!(n, 13 | 16 | 19);
        let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16;
        let amex = matches!(p2, 34 | 37) && n == 15;
        let discover = (p4 == 6011
            || (644..=649).contains(&p3)
            || p2 == 65
            || (622126..=622925).contains(&p6))
            && (16..=19).contains(&n);
        let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&n);
        let diners = ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39))
            && (14..=19).contains(&n);
        let unionpay = p2 == 62 && (16..=19).contains(&n);
        let maestro = matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763)
            && (13..=19).contains(&n);
        let mir = (2200..=2204).contains(&p4) && (16..=19).contains(&n);
        visa || mastercard || amex || discover || jcb || diners || unionpay || maestro || mir
    }
}

// ------------------------------------------------------------------------------------------
// Policy
// ------------------------------------------------------------------------------------------

/// What to do with a message, ordered from least to most strict (`Allow < Label < Warn <
/// Block`), so "strictest" is the maximum.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send as is, without labels.
    #[default]
    Allow,
    /// Send, with the detector labels in the envelope metadata.
    Label,
    /// Ask the sender to confirm; if they do, send labelled.
    Warn,
    /// Do not send.
    Block,
}

/// Conversation kinds a [`Rule`] may name.
pub const CONVERSATION_KINDS: [&str; 3] = ["direct", "group", "patient"];

/// One policy rule. A rule applies to a detector's findings when every field it sets matches;
/// unset (`None`) fields match anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `"direct"`, `"group"` or `"patient"`; `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_kind: Option<String>,
    /// The sender's role as the organisation names it (e.g. `"physician"`); `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_role: Option<String>,
    /// The detector; `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Detector>,
    /// What to do.
    pub action: Action,
}

impl Rule {
    fn applies(&self, detector: Detector, kind: &str, role: &str) -> bool {
        self.detector.is_none_or(|d| d == detector)
            && self.conversation_kind.as_deref().is_none_or(|k| k == kind)
            && self.sender_role.as_deref().is_none_or(|r| r == role)
    }

    /// How many fields the rule sets (0–3): more is more specific.
    fn specificity(&self) -> u8 {
        u8::from(self.detector.is_some())
            + u8::from(self.conversation_kind.is_some())
            + u8::from(self.sender_role.is_some())
    }
}

/// The organisation's DLP policy.
///
/// **Precedence.** For each detector that has findings, the applicable rules are those whose
/// set fields all match; among them the most specific (most fields set) wins, and among
/// equally specific ones the strictest action wins (so rule order never matters). With no
/// applicable rule, `default` applies. The message's action is then the strictest across
/// detectors. No findings means [`Action::Allow`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpPolicy {
    /// Action for a detector no rule applies to.
    pub default: Action,
    /// The rules, in any order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The outcome of [`DlpPolicy::decide`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The strictest action over all detectors found.
    pub action: Action,
    /// Detectors whose action is not [`Action::Allow`], sorted and deduplicated: the labels to
    /// carry in the envelope metadata (or to show the sender on Warn/Block).
    pub labels: Vec<Detector>,
    /// Each detector found, with the action resolved for it (sorted by detector): why the
    /// decision is what it is, for the sender's UI.
    pub per_detector: Vec<(Detector, Action)>,
}

/// Why a [`DlpPolicy`] was rejected by [`DlpPolicy::validate`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlpPolicyError {
    /// A rule names a conversation kind other than those in [`CONVERSATION_KINDS`].
    #[error(
        "rule #{index}: unknown conversation kind {kind:?} (expected direct, group or patient)"
    )]
    UnknownConversationKind {
        /// Index in `rules`.
        index: usize,
        /// The kind given.
        kind: String,
    },
    /// A rule's sender role is empty.
    #[error("rule #{index}: empty sender role")]
    EmptySenderRole {
        /// Index in `rules`.
        index: usize,
    },
}

impl DlpPolicy {
    /// Checks the rules for typos that would make them silently never apply.
    pub fn validate(&self) -> Result<(), DlpPolicyError> {
        for (index, rule) in self.rules.iter().enumerate() {
            if let Some(kind) = &rule.conversation_kind
                && !CONVERSATION_KINDS.contains(&kind.as_str())
            {
                return Err(DlpPolicyError::UnknownConversationKind {
                    index,
                    kind: kind.clone(),
                });
            }
            if rule
                .sender_role
                .as_deref()
                .is_some_and(|r| r.trim().is_empty())
            {
                return Err(DlpPolicyError::EmptySenderRole { index });
            }
        }
        Ok(())
    }

    /// The action for one detector's findings in this context (see the type's precedence).
    pub fn action_for(
        &self,
        detector: Detector,
        conversation_kind: &str,
        sender_role: &str,
    ) -> Action {
        self.rules
            .iter()
            .filter(|r| r.applies(detector, conversation_kind, sender_role))
            .map(|r| (r.specificity(), r.action))
            .max()
            .map_or(self.default, |(_, action)| action)
    }

    /// Decides what to do with a message whose scan produced `findings`.
    pub fn decide(
        &self,
        findings: &[Finding],
        conversation_kind: &str,
        sender_role: &str,
    ) -> Decision {
        let mut found: Vec<Detector> = findings.iter().map(|f| f.detector).collect();
        found.sort_unstable();
        found.dedup();
        let per_detector: Vec<(Detector, Action)> = found
            .iter()
            .map(|d| (*d, self.action_for(*d, conversation_kind, sender_role)))
            .collect();
        let action = per_detector
            .iter()
            .map(|(_, a)| *a)
            .max()
            .unwrap_or(Action::Allow);
        let labels = per_detector
            .iter()
            .filter(|(_, a)| *a != Action::Allow)
            .map(|(d, _)| *d)
            .collect();
        Decision {
            action,
            labels,
            per_detector,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::checks::*;
    use super::*;

    fn all_builtin_regexes_compile() {
        for re in [
            &SSN_RE,
            &NPI_RE,
            &DEA_RE,
            &MBI_RE,
            &NANP_RE,
            &INTL_RE,
            &JP_PHONE_RE,
            &EMAIL_RE,
            &DATE_RE,
            &CARD_RE,
            &ICD_RE,
            &MY_NUMBER_RE,
        ] {
            LazyLock::force(re);
        }
    }

    #[test]
    fn builtin_patterns_compile() {
        all_builtin_regexes_compile();
    }

    fn kinds(text: &str) -> Vec<Detector> {
        scan(text, &DlpConfig::default())
            .into_iter()
            .map(|f| f.detector)
            .collect()
    }

    #[test]
    fn luhn_known_values() {
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert_eq!(luhn_check_digit("7992739871"), Some(3));
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("41x1"));
    }

    #[test]
    fn npi_known_values() {
        // CMS's worked example: 123456789 → check digit 3.
        assert_eq!(npi_check_digit("123456789"), Some(3));
        assert!(npi_valid("1234567893"));
        assert!(!npi_valid("1234567890"));
        assert!(!npi_valid("3234567893")); // must start with 1 or 2
        assert!(!npi_valid("123456789"));
    }

    #[test]
    fn dea_known_values() {
        // 1+4+9 + 2*(2+6+8) = 14 + 32 = 46 → 6 (classic worked example AB1234563 has the
        // same digits pattern: 1+3+5 + 2*(2+4+6) = 33 → 3).
        assert!(dea_valid("AB1234563"));
        assert!(!dea_valid("AB1234564"));
        assert!(dea_valid("F91234563")); // business: 9 as second character
        assert!(!dea_valid("QB1234563")); // Q is not a registrant type
        assert!(!dea_valid("Ab1234563"));
        assert_eq!(dea_check_digit("124698"), Some(6));
    }

    #[test]
    fn mbi_known_values() {
        // CMS's published example MBI.
        assert!(mbi_valid("1EG4TE5MK73"));
        assert!(mbi_valid("1eg4te5mk73"));
        assert!(!mbi_valid("0EG4TE5MK73")); // first digit 1-9
        assert!(!mbi_valid("1SG4TE5MK73")); // S excluded
        assert!(!mbi_valid("1EG4TE5MK7"));
        assert!(!mbi_valid("1EGATE5MK73")); // position 4 numeric
    }

    #[test]
    fn my_number_known_values() {
        // Worked example: 12345678901, digits from the right P1..P11 = 1,0,9,8,7,6,5,4,3,2,1
        // with weights Q = 2,3,4,5,6,7,2,3,4,5,6: Σ = 2+0+36+40+42+42+10+12+12+10+6 = 212;
        // 212 mod 11 = 3 → check digit 11 - 3 = 8.
        assert_eq!(my_number_check_digit("12345678901"), Some(8));
        assert!(my_number_valid("123456789018"));
        assert!(!my_number_valid("123456789012"));
        // r ≤ 1 → 0
        assert_eq!(my_number_check_digit("00000000000"), Some(0));
        assert!(!my_number_valid("12345678901"));
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_valid("123456789"));
        assert!(!ssn_valid("000456789"));
        assert!(!ssn_valid("666456789"));
        assert!(!ssn_valid("900456789"));
        assert!(!ssn_valid("123006789"));
        assert!(!ssn_valid("123450000"));
    }

    #[test]
    fn card_rules() {
        assert!(payment_card_valid("4111111111111111"));
        assert!(payment_card_valid("5555555555554444"));
        assert!(payment_card_valid("378282246310005"));
        assert!(payment_card_valid("6011111111111117"));
        assert!(payment_card_valid("3530111333300000"));
        assert!(payment_card_valid("30569309025904"));
        assert!(!payment_card_valid("1234567812345670")); // Luhn-valid, no issuer
        assert!(!payment_card_valid("4111111111111112"));
    }

    #[test]
    fn scan_examples() {
        assert_eq!(kinds("SSN 123-45-6789 on file"), vec![Detector::UsSsn]);
        assert_eq!(kinds("order 123-45-6789x"), vec![]);
        assert_eq!(kinds("ORD-123-45-6789"), vec![]);
        assert_eq!(kinds("prescriber NPI 1234567893"), vec![Detector::Npi]);
        assert_eq!(kinds("DEA AB1234563"), vec![Detector::Dea]);
        assert_eq!(kinds("MBI 1EG4-TE5-MK73"), vec![Detector::MedicareMbi]);
        assert_eq!(kinds("call (212) 555-0147"), vec![Detector::Phone]);
        assert_eq!(kinds("mail a.b@example.org."), vec![Detector::Email]);
        assert_eq!(kinds("DOB: 03/15/1984"), vec![Detector::DateOfBirth]);
        assert_eq!(kinds("admitted 03/15/2024"), vec![]);
        assert_eq!(kinds("newborn check 03/15/2024"), vec![]);
        assert_eq!(
            kinds("生年月日：昭和59年3月15日"),
            vec![Detector::DateOfBirth]
        );
        assert_eq!(
            kinds("card 4111 1111 1111 1111"),
            vec![Detector::PaymentCard]
        );
        assert_eq!(
            kinds("Dx: E11.9, I10"),
            vec![Detector::Icd10, Detector::Icd10]
        );
        assert_eq!(kinds("moved to room A12"), vec![]);
        assert_eq!(
            kinds("マイナンバー 1234 5678 9018"),
            vec![Detector::JpMyNumber]
        );
        assert_eq!(kinds("K+ 6.1, BP 120/80 at 14:30, 5 mg"), vec![]);
    }

    #[test]
    fn mrn_patterns_and_errors() {
        let cfg = DlpConfig::with_mrn_patterns([r"MRN[:# ]?\d{7}"]).unwrap();
        let f = scan("pt MRN:1234567 in bed 4", &cfg);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].detector, f[0].start, f[0].end),
            (Detector::Mrn, 3, 14)
        );
        assert!(
            scan("MRN:12345678", &cfg).is_empty(),
            "glued to a longer number"
        );
        assert!(matches!(
            DlpConfig::with_mrn_patterns(["MRN(\\d"]),
            Err(DlpConfigError::InvalidPattern { index: 0, .. })
        ));
        assert_eq!(
            DlpConfig::with_mrn_patterns(["ok\\d", "\\d*"]).unwrap_err(),
            DlpConfigError::MatchesEmpty { index: 1 }
        );
        assert_eq!(
            DlpConfig::with_mrn_patterns([" "]).unwrap_err(),
            DlpConfigError::EmptyPattern { index: 0 }
        );
        let json = serde_json::json!({ "mrn_patterns": ["(unclosed"] });
        assert!(serde_json::from_value::<DlpConfig>(json).is_err());
        let json =
            serde_json::json!({ "mrn_patterns": ["MRN\\d{7}"], "disabled_detectors": ["icd10"] });
        let cfg: DlpConfig = serde_json::from_value(json).unwrap();
        assert!(!cfg.is_enabled(Detector::Icd10));
        assert!(scan("Dx: E11.9", &cfg).is_empty());
    }

    #[test]
    fn truncation_is_reported() {
        let mut text = "x".repeat(MAX_SCAN_BYTES - 1);
        text.push('é'); // straddles the cap
        text.push_str(" SSN 123-45-6789");
        let r = scan_report(&text, &DlpConfig::default());
        assert!(r.truncated);
        assert_eq!(r.scanned_bytes, MAX_SCAN_BYTES - 1);
        assert!(r.findings.is_empty());
    }

    fn f(d: Detector) -> Finding {
        Finding {
            detector: d,
            start: 0,
            end: 1,
            confidence: Confidence::High,
        }
    }

    #[test]
    fn policy_precedence() {
        let rule = |k: Option<&str>, r: Option<&str>, d: Option<Detector>, a| Rule {
            conversation_kind: k.map(String::from),
            sender_role: r.map(String::from),
            detector: d,
            action: a,
        };
        let policy = DlpPolicy {
            default: Action::Label,
            rules: vec![
                rule(None, None, Some(Detector::PaymentCard), Action::Block),
                rule(Some("patient"), None, None, Action::Warn),
                rule(
                    Some("patient"),
                    Some("physician"),
                    Some(Detector::Icd10),
                    Action::Allow,
                ),
                rule(
                    None,
                    Some("physician"),
                    Some(Detector::PaymentCard),
                    Action::Warn,
                ),
            ],
        };
        policy.validate().unwrap();
        // No findings: allow, no labels.
        assert_eq!(policy.decide(&[], "direct", "nurse"), Decision::default());
        // Default applies when no rule does.
        let d = policy.decide(&[f(Detector::Phone), f(Detector::Phone)], "direct", "nurse");
        assert_eq!((d.action, d.labels), (Action::Label, vec![Detector::Phone]));
        // Most specific wins per detector: physician icd10 in a patient chat is allowed and
        // unlabelled, the phone falls to the patient-kind rule (Warn).
        let d = policy.decide(
            &[f(Detector::Icd10), f(Detector::Phone)],
            "patient",
            "physician",
        );
        assert_eq!(d.action, Action::Warn);
        assert_eq!(d.labels, vec![Detector::Phone]);
        assert_eq!(
            d.per_detector,
            vec![
                (Detector::Phone, Action::Warn),
                (Detector::Icd10, Action::Allow)
            ]
        );
        // Equal specificity: strictest wins (card rule Block vs patient rule Warn).
        assert_eq!(
            policy.action_for(Detector::PaymentCard, "patient", "nurse"),
            Action::Block
        );
        // More specific rule relaxes: physician + card = Warn.
        assert_eq!(
            policy.action_for(Detector::PaymentCard, "group", "physician"),
            Action::Warn
        );
        // Strictest across detectors.
        let d = policy.decide(
            &[f(Detector::PaymentCard), f(Detector::Email)],
            "group",
            "nurse",
        );
        assert_eq!(d.action, Action::Block);
        assert_eq!(d.labels, vec![Detector::Email, Detector::PaymentCard]);
        // Serde round trip with snake_case names.
        let json = serde_json::to_string(&policy).unwrap();
        assert!(json.contains("\"payment_card\"") && json.contains("\"block\""));
        assert_eq!(serde_json::from_str::<DlpPolicy>(&json).unwrap(), policy);
        let bad = DlpPolicy {
            default: Action::Allow,
            rules: vec![rule(Some("dm"), None, None, Action::Block)],
        };
        assert!(matches!(
            bad.validate(),
            Err(DlpPolicyError::UnknownConversationKind { index: 0, .. })
        ));
    }

    #[test]
    fn action_order_is_strictness() {
        assert!(
            Action::Allow < Action::Label
                && Action::Label < Action::Warn
                && Action::Warn < Action::Block
        );
    }

    proptest::proptest! {
        #[test]
        fn scan_never_panics_and_offsets_are_boundaries(text in "\\PC{0,200}") {
            let cfg = DlpConfig::with_mrn_patterns([r"MRN[:# ]?\d{7}"]).unwrap();
            let findings = scan(&text, &cfg);
            let mut last_end = 0;
            for f in findings {
                proptest::prop_assert!(f.start < f.end && f.end <= text.len());
                proptest::prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
                proptest::prop_assert!(f.start >= last_end, "sorted and non-overlapping");
                last_end = f.end;
            }
        }

        #[test]
        fn scan_never_panics_on_identifier_soup(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9]{1,19}", "[ \\-./:()+@#]", "[A-Z]{1,3}", "[a-z]{1,6}",
                    proptest::strategy::Just("DOB ".to_string()),
                    proptest::strategy::Just("生年月日".to_string()),
                    proptest::strategy::Just("é".to_string()),
                    proptest::strategy::Just("Dx: ".to_string()),
                ],
                0..40,
            )
        ) {
            let text: String = parts.concat();
            let cfg = DlpConfig::default();
            for f in scan(&text, &cfg) {
                proptest::prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
                proptest::prop_assert!(f.start < f.end && f.end <= text.len());
            }
        }
    }
}
