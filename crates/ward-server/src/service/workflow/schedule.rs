//! Parsing a shift schedule from CSV (ADR 0014). Pure: no store access; the service resolves
//! the names and checks overlaps with what is stored.
//!
//! Format: UTF-8 text, one record a line. The first non-blank, non-comment line is the header
//! `role,username,start,end,time_zone` (exactly these columns in this order). Each further
//! line is one shift: a clinical role name, a username, the start and end as civil date-times
//! `YYYY-MM-DDTHH:MM[:SS]` (a space instead of `T` also works) in the row's IANA `time_zone`
//! (`Europe/Berlin`, `UTC`). Blank lines and lines starting with `#` are skipped. Fields are
//! not quoted (no field can contain a comma); surrounding spaces are trimmed.
//!
//! A local time that does not exist (skipped by a daylight-saving change) or exists twice
//! (repeated by one) is refused rather than guessed: a shift schedule that is off by an hour
//! leaves a role uncovered.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use time::OffsetDateTime;
use ward_proto::{ClinicalRoleName, Username};

/// Most shifts one import may hold.
pub const MAX_SHIFTS_PER_IMPORT: usize = 10_000;
/// Longest shift accepted: 14 days (a fortnight of on-call is the longest duty rota seen;
/// anything longer is a typo in a date).
pub const MAX_SHIFT_SECS: i64 = 14 * 86_400;
/// Most line errors reported; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 50;

/// The header every schedule starts with.
pub const HEADER: &str = "role,username,start,end,time_zone";

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedShift {
    /// 1-based line number in the file.
    pub line: usize,
    /// Role.
    pub role: ClinicalRoleName,
    /// User.
    pub username: Username,
    /// Start, UTC.
    pub starts_at: OffsetDateTime,
    /// End, UTC.
    pub ends_at: OffsetDateTime,
    /// IANA zone name as written.
    pub time_zone: String,
}

/// A problem on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the value.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parse a whole schedule. Either every line is good, or every bad line is reported.
pub fn parse(text: &str) -> Result<Vec<ParsedShift>, Vec<LineError>> {
    let (shifts, errors) = parse_all(text);
    if errors.is_empty() {
        Ok(shifts)
    } else {
        Err(errors)
    }
}

/// Parse a whole schedule into its good lines and its bad lines, so that the caller can also
/// check the good lines (unknown names, overlaps) and report every problem at once.
pub fn parse_all(text: &str) -> (Vec<ParsedShift>, Vec<LineError>) {
    let mut errors = Vec::new();
    let mut shifts = Vec::new();
    let mut header_seen = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !header_seen {
            header_seen = true;
            let cols: Vec<String> = trimmed
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect();
            if cols.join(",") != HEADER {
                errors.push(LineError {
                    line,
                    message: format!("the header must be `{HEADER}`"),
                });
                return (Vec::new(), errors);
            }
            continue;
        }
        if shifts.len() + errors.len() >= MAX_SHIFTS_PER_IMPORT {
            errors.push(LineError {
                line,
                message: format!("more than {MAX_SHIFTS_PER_IMPORT} shifts; split the file"),
            });
            break;
        }
        match parse_line(line, trimmed) {
            Ok(s) => shifts.push(s),
            Err(message) => errors.push(LineError { line, message }),
        }
    }
    if !header_seen {
        errors.push(LineError {
            line: 1,
            message: format!("the schedule is empty: expected the header `{HEADER}`"),
        });
    } else if shifts.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: 1,
            message: "the schedule has a header but no shifts".to_owned(),
        });
    }
    (shifts, errors)
}

fn parse_line(line: usize, text: &str) -> Result<ParsedShift, String> {
    if text.contains('"') {
        return Err("quoted fields are not supported (no field can contain a comma)".to_owned());
    }
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let [role, user, start, end, zone] = fields[..] else {
        return Err(format!(
            "expected 5 fields ({HEADER}), found {}",
            fields.len()
        ));
    };
    let role = ClinicalRoleName::parse(role).map_err(|e| e.to_string())?;
    let username = Username::parse(user).map_err(|e| e.to_string())?;
    let tz = TimeZone::get(zone).map_err(|_| {
        format!("unknown time zone {zone:?}: use an IANA name such as Europe/Berlin or UTC")
    })?;
    let starts_at = instant(start, &tz, zone, "start")?;
    let ends_at = instant(end, &tz, zone, "end")?;
    if ends_at <= starts_at {
        return Err(format!("end {end} is not after start {start}"));
    }
    if (ends_at - starts_at).whole_seconds() > MAX_SHIFT_SECS {
        return Err(format!(
            "shift from {start} to {end} is longer than {} days",
            MAX_SHIFT_SECS / 86_400
        ));
    }
    Ok(ParsedShift {
        line,
        role,
        username,
        starts_at,
        ends_at,
        time_zone: zone.to_owned(),
    })
}

/// A civil date-time in `tz` as a UTC instant, refusing gaps and folds.
fn instant(value: &str, tz: &TimeZone, zone: &str, what: &str) -> Result<OffsetDateTime, String> {
    let civil: DateTime = value
        .parse()
        .map_err(|_| format!("{what} {value:?} is not a date-time like 2026-12-02T08:00"))?;
    let ambiguous = tz.to_ambiguous_zoned(civil);
    if ambiguous.is_ambiguous() {
        return Err(format!(
            "{what} {value} does not exist or occurs twice in {zone} (a daylight-saving change); \
             choose another time"
        ));
    }
    let zoned = ambiguous
        .unambiguous()
        .map_err(|_| format!("{what} {value} is not a single instant in {zone}"))?;
    let ts = zoned.timestamp();
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond())
        .map_err(|_| format!("{what} {value} is out of range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn ok(text: &str) -> Vec<ParsedShift> {
        parse(text).unwrap()
    }

    fn errs(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn parses_zones_to_utc() {
        let s = ok("# December rota\nrole,username,start,end,time_zone\n\
                    cardiology-on-call,dr-a,2026-12-02T08:00,2026-12-02T20:00,Europe/Berlin\n\
                    \n\
                    cardiology-on-call, dr-b ,2026-12-02 20:00,2026-12-03 08:00:00,UTC\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].line, 3);
        assert_eq!(
            s[0].starts_at,
            time::macros::datetime!(2026-12-02 07:00 UTC),
            "Berlin is UTC+1 in December"
        );
        assert_eq!(s[0].ends_at, time::macros::datetime!(2026-12-02 19:00 UTC));
        assert_eq!(s[1].line, 5);
        assert_eq!(s[1].username.as_str(), "dr-b");
        assert_eq!(
            s[1].starts_at,
            time::macros::datetime!(2026-12-02 20:00 UTC)
        );
        assert_eq!(s[1].time_zone, "UTC");
        // Summer time.
        let s = ok("role,username,start,end,time_zone\n\
                    icu,n1,2026-07-01T08:00,2026-07-01T16:00,Europe/Berlin\n");
        assert_eq!(
            s[0].starts_at,
            time::macros::datetime!(2026-07-01 06:00 UTC)
        );
    }

    #[test]
    fn every_bad_line_is_named() {
        let e = errs(
            "role,username,start,end,time_zone\n\
                      cardio,dr-a,2026-12-02T08:00,2026-12-02T20:00\n\
                      Cardio!,dr-a,2026-12-02T08:00,2026-12-02T20:00,UTC\n\
                      cardio,Dr A,2026-12-02T08:00,2026-12-02T20:00,UTC\n\
                      cardio,dr-a,2026-12-02T08:00,2026-12-02T20:00,Mars/Olympus\n\
                      cardio,dr-a,yesterday,2026-12-02T20:00,UTC\n\
                      cardio,dr-a,2026-12-02T20:00,2026-12-02T08:00,UTC\n\
                      cardio,dr-a,2026-12-01T08:00,2026-12-30T08:00,UTC\n\
                      cardio,dr-a,2026-03-29T02:30,2026-03-29T08:00,Europe/Berlin\n\
                      cardio,dr-a,2026-10-25T02:30,2026-10-25T08:00,Europe/Berlin\n\
                      \"cardio\",dr-a,2026-12-02T08:00,2026-12-02T20:00,UTC\n\
                      cardio,dr-b,2026-12-02T08:00,2026-12-02T20:00,UTC\n",
        );
        assert_eq!(e.len(), 10, "{e:#?}");
        assert!(e[0].starts_with("line 2: expected 5 fields"), "{}", e[0]);
        assert!(
            e[1].starts_with("line 3: invalid clinical role name"),
            "{}",
            e[1]
        );
        assert!(e[2].starts_with("line 4: invalid username"), "{}", e[2]);
        assert!(
            e[3].starts_with("line 5: unknown time zone \"Mars/Olympus\""),
            "{}",
            e[3]
        );
        assert!(e[4].starts_with("line 6: start \"yesterday\""), "{}", e[4]);
        assert!(
            e[5].starts_with("line 7: end 2026-12-02T08:00 is not after"),
            "{}",
            e[5]
        );
        assert!(e[6].starts_with("line 8: shift from"), "{}", e[6]);
        assert!(
            e[7].starts_with("line 9: start 2026-03-29T02:30 does not exist"),
            "{}",
            e[7]
        );
        assert!(
            e[8].starts_with("line 10: start 2026-10-25T02:30"),
            "{}",
            e[8]
        );
        assert!(e[9].starts_with("line 11: quoted fields"), "{}", e[9]);
    }

    #[test]
    fn header_and_empty_files() {
        assert_eq!(
            errs("")[0],
            "line 1: the schedule is empty: expected the header `role,username,start,end,time_zone`"
        );
        assert!(
            errs("\n# c\nuser,role,start,end,tz\n")[0].starts_with("line 3: the header must be")
        );
        assert!(errs("ROLE, username,start,end,time_zone\n")[0].contains("no shifts"));
    }

    #[test]
    fn too_many_lines_stop_early() {
        let mut text = String::from("role,username,start,end,time_zone\n");
        for _ in 0..=MAX_SHIFTS_PER_IMPORT {
            text.push_str("cardio,dr-a,2026-12-02T08:00,2026-12-02T20:00,UTC\n");
        }
        let e = errs(&text);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("more than 10000 shifts"), "{}", e[0]);
    }
}
