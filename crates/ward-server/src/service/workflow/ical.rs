//! Parsing a shift schedule from iCalendar (RFC 5545), next to the CSV format (ADR 0019).
//! Pure: no store access; the service checks names and overlaps exactly as for CSV.
//!
//! A strict subset, read by a small parser (the iCalendar crates either pull in `chrono` and
//! `chrono-tz` next to the `jiff` we already use, or do not expand recurrences):
//! - one `VCALENDAR`; `VTIMEZONE` blocks and components other than `VEVENT` are skipped
//!   (time zones are resolved by IANA name from the system tz database, so `TZID` must be an
//!   IANA name such as `Europe/Berlin`);
//! - each `VEVENT` is one shift (or, with `RRULE`, a series): the **role** is `X-WARD-ROLE`
//!   or else `SUMMARY`; the **user** is `X-WARD-USER` or else the single `ATTENDEE`'s
//!   `mailto:` local part (`mailto:jdoe@hospital.example` → `jdoe`);
//! - `DTSTART` and `DTEND` (or `DURATION`, e.g. `PT12H`) as date-times in UTC
//!   (`20261202T070000Z`) or with `TZID=`; floating times and all-day dates are refused;
//! - `RRULE` with `FREQ=DAILY` or `FREQ=WEEKLY`, optional `INTERVAL`, `BYDAY` (weekly only),
//!   and exactly one of `COUNT` or `UNTIL`, expanded in local time (a 08:00 shift stays 08:00
//!   across a daylight-saving change) to at most [`MAX_OCCURRENCES`] shifts; `EXDATE` removes
//!   occurrences; `STATUS:CANCELLED` events are skipped;
//! - lines are unfolded (RFC 5545 §3.1); errors name the line of the event's
//!   `BEGIN:VEVENT` (or of the bad line).
//!
//! Local times in a daylight-saving gap or fold are refused, as in CSV.

use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span};
use time::OffsetDateTime;
use ward_proto::{ClinicalRoleName, Username};

use super::schedule::{
    LineError, MAX_REPORTED_ERRORS, MAX_SHIFT_SECS, MAX_SHIFTS_PER_IMPORT, ParsedShift,
};

/// Most shifts one recurring event may expand to.
pub const MAX_OCCURRENCES: usize = 1000;
/// Longest logical (unfolded) line accepted, bytes.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// One unfolded content line.
#[derive(Debug)]
struct Line<'a> {
    /// 1-based number of its first physical line.
    number: usize,
    name: String,
    params: Vec<(String, String)>,
    value: &'a str,
}

/// Whether `text` looks like iCalendar (so the CLI can pick the parser).
pub fn looks_like_ical(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .get(..15)
        .is_some_and(|s| s.eq_ignore_ascii_case("BEGIN:VCALENDAR"))
}

/// Parse a calendar into its shifts and every problem found.
pub fn parse_all(text: &str) -> (Vec<ParsedShift>, Vec<LineError>) {
    let mut errors = Vec::new();
    let mut shifts = Vec::new();
    let unfolded = match unfold(text) {
        Ok(u) => u,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let mut lines = Vec::with_capacity(unfolded.len());
    for (number, raw) in &unfolded {
        match parse_line(*number, raw) {
            Ok(l) => lines.push(l),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut i = 0;
    let first = lines.first();
    if !first.is_some_and(|l| l.name == "BEGIN" && l.value.eq_ignore_ascii_case("VCALENDAR")) {
        return (
            Vec::new(),
            vec![LineError {
                line: first.map_or(1, |l| l.number),
                message: "an iCalendar file starts with BEGIN:VCALENDAR".into(),
            }],
        );
    }
    i += 1;
    let mut closed = false;
    let mut events = 0usize;
    while i < lines.len() {
        let l = &lines[i];
        if l.name == "END" && l.value.eq_ignore_ascii_case("VCALENDAR") {
            closed = true;
            i += 1;
            break;
        }
        if l.name == "BEGIN" {
            let kind = l.value.to_ascii_uppercase();
            let end = match find_end(&lines, i, &kind) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(e);
                    return (Vec::new(), errors);
                }
            };
            if kind == "VEVENT" {
                events += 1;
                match event(&lines[i..=end]) {
                    Ok(mut s) => {
                        if shifts.len() + s.len() > MAX_SHIFTS_PER_IMPORT {
                            errors.push(LineError {
                                line: l.number,
                                message: format!(
                                    "more than {MAX_SHIFTS_PER_IMPORT} shifts; split the file"
                                ),
                            });
                            break;
                        }
                        shifts.append(&mut s);
                    }
                    Err(e) => {
                        errors.push(e);
                        if errors.len() >= MAX_REPORTED_ERRORS {
                            break;
                        }
                    }
                }
            }
            i = end + 1;
            continue;
        }
        // Calendar properties (VERSION, PRODID, CALSCALE, X-WR-…) carry nothing we need.
        if l.name == "CALSCALE" && !l.value.eq_ignore_ascii_case("GREGORIAN") {
            errors.push(LineError {
                line: l.number,
                message: format!(
                    "calendar scale {} is not supported (only GREGORIAN)",
                    l.value
                ),
            });
        }
        i += 1;
    }
    if !closed {
        errors.push(LineError {
            line: lines.last().map_or(1, |l| l.number),
            message: "END:VCALENDAR is missing".into(),
        });
    } else if let Some(extra) = lines.get(i) {
        errors.push(LineError {
            line: extra.number,
            message: "content after END:VCALENDAR (one calendar per file)".into(),
        });
    }
    if errors.is_empty() && events == 0 {
        errors.push(LineError {
            line: 1,
            message: "the calendar has no VEVENT (no shifts)".into(),
        });
    } else if errors.is_empty() && shifts.is_empty() {
        errors.push(LineError {
            line: 1,
            message: "every event of the calendar is cancelled or excluded (no shifts)".into(),
        });
    }
    (shifts, errors)
}

/// RFC 5545 §3.1: a line starting with a space or tab continues the previous one. Returns
/// logical lines with the number of their first physical line; blank lines are skipped.
fn unfold(text: &str) -> Result<Vec<(usize, String)>, LineError> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.trim_start_matches('\u{feff}').split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let number = i + 1;
        if let Some(cont) = raw.strip_prefix([' ', '\t']) {
            let Some(last) = out.last_mut() else {
                return Err(LineError {
                    line: number,
                    message: "a continuation line (starting with a space) has nothing to continue"
                        .into(),
                });
            };
            last.1.push_str(cont);
            if last.1.len() > MAX_LINE_BYTES {
                return Err(LineError {
                    line: last.0,
                    message: format!("line longer than {MAX_LINE_BYTES} bytes"),
                });
            }
        } else if !raw.trim().is_empty() {
            if raw.len() > MAX_LINE_BYTES {
                return Err(LineError {
                    line: number,
                    message: format!("line longer than {MAX_LINE_BYTES} bytes"),
                });
            }
            out.push((number, raw.to_owned()));
        }
    }
    Ok(out)
}

/// `NAME *(";" PARAM "=" VALUE) ":" VALUE`, parameter values optionally quoted.
fn parse_line(number: usize, raw: &str) -> Result<Line<'_>, LineError> {
    let err = |message: String| LineError {
        line: number,
        message,
    };
    if raw.chars().any(|c| c.is_control() && c != '\t') {
        return Err(err("control characters are not allowed".into()));
    }
    let name_end = raw
        .find([';', ':'])
        .ok_or_else(|| err("not a content line NAME:VALUE".into()))?;
    let name = &raw[..name_end];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(err(format!(
            "{:?} is not a property name",
            name.chars().take(40).collect::<String>()
        )));
    }
    let mut params = Vec::new();
    let mut rest = &raw[name_end..];
    while let Some(p) = rest.strip_prefix(';') {
        let eq = p
            .find('=')
            .ok_or_else(|| err(format!("parameter without '=' in {name}")))?;
        let pname = p[..eq].to_ascii_uppercase();
        let after = &p[eq + 1..];
        let (pvalue, tail) = if let Some(q) = after.strip_prefix('"') {
            let close = q
                .find('"')
                .ok_or_else(|| err(format!("unterminated quoted parameter in {name}")))?;
            (&q[..close], &q[close + 1..])
        } else {
            let end = after.find([';', ':']).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.push((pname, pvalue.to_owned()));
        rest = tail;
    }
    let value = rest
        .strip_prefix(':')
        .ok_or_else(|| err(format!("{name} has no ':' before its value")))?;
    Ok(Line {
        number,
        name: name.to_ascii_uppercase(),
        params,
        value,
    })
}

/// Index of the `END:<kind>` matching the `BEGIN` at `start` (nested components skipped).
fn find_end(lines: &[Line<'_>], start: usize, kind: &str) -> Result<usize, LineError> {
    let mut depth = 0usize;
    for (j, l) in lines.iter().enumerate().skip(start) {
        if l.name == "BEGIN" {
            depth += 1;
        } else if l.name == "END" {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                if !l.value.eq_ignore_ascii_case(kind) {
                    return Err(LineError {
                        line: l.number,
                        message: format!("END:{} does not close BEGIN:{kind}", l.value),
                    });
                }
                return Ok(j);
            }
        }
    }
    Err(LineError {
        line: lines[start].number,
        message: format!("BEGIN:{kind} is never closed"),
    })
}

/// A date-time value with its zone.
#[derive(Clone)]
struct Stamp {
    civil: DateTime,
    tz: TimeZone,
    zone: String,
}

fn param<'a>(l: &'a Line<'_>, name: &str) -> Option<&'a str> {
    l.params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `YYYYMMDDTHHMMSS[Z]` with `TZID` or `Z`.
fn stamp(l: &Line<'_>, value: &str) -> Result<Stamp, String> {
    if param(l, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE")) || value.len() == 8 {
        return Err(format!(
            "{} {value} is an all-day date; a shift needs a date-time such as 20261202T080000",
            l.name
        ));
    }
    let (digits, utc) = match value.strip_suffix('Z') {
        Some(d) => (d, true),
        None => (value, false),
    };
    let civil = civil_datetime(digits).ok_or_else(|| {
        format!(
            "{} {value:?} is not a date-time like 20261202T080000",
            l.name
        )
    })?;
    match (param(l, "TZID"), utc) {
        (Some(_), true) => Err(format!(
            "{} {value} has both TZID and Z; use one of them",
            l.name
        )),
        (Some(zone), false) => {
            let zone = zone.trim_start_matches('/');
            let tz = TimeZone::get(zone).map_err(|_| {
                format!(
                    "unknown time zone {zone:?} in {}: TZID must be an IANA name such as Europe/Berlin",
                    l.name
                )
            })?;
            Ok(Stamp {
                civil,
                tz,
                zone: zone.to_owned(),
            })
        }
        (None, true) => Ok(Stamp {
            civil,
            tz: TimeZone::UTC,
            zone: "UTC".into(),
        }),
        (None, false) => Err(format!(
            "{} {value} is a floating time; add TZID=… or a trailing Z (UTC)",
            l.name
        )),
    }
}

fn civil_datetime(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    if b.len() != 15
        || b[8] != b'T'
        || !s[..8]
            .bytes()
            .chain(s[9..].bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i16>().ok();
    let small = |r: std::ops::Range<usize>| n(r).and_then(|v| i8::try_from(v).ok());
    // A leap second (60) is read as 59: shifts are not that precise.
    DateTime::new(
        n(0..4)?,
        small(4..6)?,
        small(6..8)?,
        small(9..11)?,
        small(11..13)?,
        small(13..15)?.min(59),
        0,
    )
    .ok()
}

/// `[+]P[nW]` or `[+]P[nD][T[nH][nM][nS]]`.
fn duration(value: &str) -> Option<SignedDuration> {
    let v = value.strip_prefix('+').unwrap_or(value);
    let v = v.strip_prefix('P')?;
    let mut secs: i64 = 0;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in v.chars() {
        match c {
            '0'..='9' => num.push(c),
            'T' if !in_time && num.is_empty() => in_time = true,
            'W' | 'D' | 'H' | 'M' | 'S' => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                let unit = match (c, in_time) {
                    ('W', false) => 7 * 86_400,
                    ('D', false) => 86_400,
                    ('H', true) => 3_600,
                    ('M', true) => 60,
                    ('S', true) => 1,
                    _ => return None,
                };
                secs = secs.checked_add(n.checked_mul(unit)?)?;
                any = true;
            }
            _ => return None,
        }
    }
    (any && num.is_empty()).then(|| SignedDuration::from_secs(secs))
}

struct Rule {
    daily: bool,
    interval: i64,
    count: Option<usize>,
    until: Option<RuleUntil>,
    by_day: Vec<Weekday>,
}

enum RuleUntil {
    Instant(jiff::Timestamp),
    Civil(DateTime),
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Monday,
        "TU" => Weekday::Tuesday,
        "WE" => Weekday::Wednesday,
        "TH" => Weekday::Thursday,
        "FR" => Weekday::Friday,
        "SA" => Weekday::Saturday,
        "SU" => Weekday::Sunday,
        _ => return None,
    })
}

fn rrule(value: &str) -> Result<Rule, String> {
    let mut freq = None;
    let mut rule = Rule {
        daily: true,
        interval: 1,
        count: None,
        until: None,
        by_day: Vec::new(),
    };
    for part in value.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("RRULE part {part:?} is not KEY=VALUE"))?;
        match k.to_ascii_uppercase().as_str() {
            "FREQ" => {
                freq = Some(match v.to_ascii_uppercase().as_str() {
                    "DAILY" => true,
                    "WEEKLY" => false,
                    other => {
                        return Err(format!(
                            "RRULE FREQ={other} is not supported (use DAILY or WEEKLY)"
                        ));
                    }
                });
            }
            "INTERVAL" => {
                rule.interval = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=366).contains(n))
                    .ok_or_else(|| format!("RRULE INTERVAL={v} must be 1 to 366"))?;
            }
            "COUNT" => {
                rule.count = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_OCCURRENCES).contains(n))
                        .ok_or_else(|| format!("RRULE COUNT={v} must be 1 to {MAX_OCCURRENCES}"))?,
                );
            }
            "UNTIL" => {
                rule.until = Some(if let Some(d) = v.strip_suffix('Z') {
                    let civil = civil_datetime(d)
                        .ok_or_else(|| format!("RRULE UNTIL={v} is not a date-time"))?;
                    RuleUntil::Instant(
                        TimeZone::UTC
                            .to_timestamp(civil)
                            .map_err(|_| format!("RRULE UNTIL={v} is out of range"))?,
                    )
                } else if v.len() == 8 {
                    let civil = civil_datetime(&format!("{v}T235959"))
                        .ok_or_else(|| format!("RRULE UNTIL={v} is not a date"))?;
                    RuleUntil::Civil(civil)
                } else {
                    RuleUntil::Civil(
                        civil_datetime(v)
                            .ok_or_else(|| format!("RRULE UNTIL={v} is not a date-time"))?,
                    )
                });
            }
            "BYDAY" => {
                for d in v.split(',') {
                    rule.by_day
                        .push(weekday(&d.to_ascii_uppercase()).ok_or_else(|| {
                            format!("RRULE BYDAY={v}: {d:?} is not one of MO TU WE TH FR SA SU")
                        })?);
                }
            }
            "WKST" => {}
            other => {
                return Err(format!(
                    "RRULE {other} is not supported (only FREQ, INTERVAL, COUNT, UNTIL, BYDAY)"
                ));
            }
        }
    }
    rule.daily = freq.ok_or("RRULE needs FREQ=DAILY or FREQ=WEEKLY")?;
    match (rule.count, &rule.until) {
        (Some(_), Some(_)) => return Err("RRULE has both COUNT and UNTIL; use one".into()),
        (None, None) => {
            return Err("RRULE needs COUNT or UNTIL (an endless rota cannot be imported)".into());
        }
        _ => {}
    }
    if rule.daily && !rule.by_day.is_empty() {
        return Err("RRULE BYDAY is supported with FREQ=WEEKLY only".into());
    }
    Ok(rule)
}

/// One `BEGIN:VEVENT … END:VEVENT` block into its shifts.
fn event(block: &[Line<'_>]) -> Result<Vec<ParsedShift>, LineError> {
    let begin = block[0].number;
    let err = |message: String| LineError {
        line: begin,
        message,
    };
    // Properties of the event itself, not of nested components (VALARM).
    let mut own: Vec<&Line<'_>> = Vec::new();
    let mut depth = 0usize;
    for l in &block[1..block.len() - 1] {
        match l.name.as_str() {
            "BEGIN" => depth += 1,
            "END" => depth = depth.saturating_sub(1),
            _ if depth == 0 => own.push(l),
            _ => {}
        }
    }
    let one = |name: &str| -> Result<Option<&Line<'_>>, LineError> {
        let mut it = own.iter().filter(|l| l.name == name);
        let first = it.next().copied();
        if let Some(second) = it.next() {
            return Err(LineError {
                line: second.number,
                message: format!("{name} appears twice in one event"),
            });
        }
        Ok(first)
    };
    if one("STATUS")?.is_some_and(|l| l.value.eq_ignore_ascii_case("CANCELLED")) {
        return Ok(Vec::new());
    }
    let role_line = one("X-WARD-ROLE")?.or(one("SUMMARY")?).ok_or_else(|| {
        err("event has no role: set SUMMARY (or X-WARD-ROLE) to the role name".into())
    })?;
    let role = ClinicalRoleName::parse(role_line.value.trim())
        .map_err(|e| err(format!("{}: {e}", role_line.name)))?;
    let username = match one("X-WARD-USER")? {
        Some(l) => Username::parse(l.value.trim()).map_err(|e| err(format!("X-WARD-USER: {e}")))?,
        None => {
            let attendees: Vec<&&Line<'_>> = own.iter().filter(|l| l.name == "ATTENDEE").collect();
            let [a] = attendees[..] else {
                return Err(err(
                    "event has no user: set X-WARD-USER to the username (or exactly one ATTENDEE:mailto:USERNAME@…)"
                        .into(),
                ));
            };
            let local = a
                .value
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("mailto:"))
                .and_then(|_| a.value[7..].split('@').next())
                .ok_or_else(|| err(format!("ATTENDEE {:?} is not a mailto: address", a.value)))?;
            Username::parse(&local.to_ascii_lowercase())
                .map_err(|e| err(format!("ATTENDEE: {e}")))?
        }
    };
    let start_line = one("DTSTART")?.ok_or_else(|| err("event has no DTSTART".into()))?;
    let start = stamp(start_line, start_line.value).map_err(err)?;
    let span = match (one("DTEND")?, one("DURATION")?) {
        (Some(_), Some(_)) => return Err(err("event has both DTEND and DURATION".into())),
        (None, None) => return Err(err("event has no DTEND (or DURATION)".into())),
        (Some(l), None) => {
            let end = stamp(l, l.value).map_err(err)?;
            if end.zone != start.zone {
                return Err(err(format!(
                    "DTSTART is in {} but DTEND in {}; use one time zone per event",
                    start.zone, end.zone
                )));
            }
            start.civil.duration_until(end.civil)
        }
        (None, Some(l)) => duration(l.value)
            .ok_or_else(|| err(format!("DURATION {:?} is not like PT12H or P1D", l.value)))?,
    };
    let excluded: Vec<DateTime> = own
        .iter()
        .filter(|l| l.name == "EXDATE")
        .map(|l| {
            l.value
                .split(',')
                .map(|v| stamp(l, v).map(|s| to_zone(&s, &start.tz)))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<Vec<_>>, _>>()
        .map_err(err)?
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    let rule = match one("RRULE")? {
        Some(l) => Some(rrule(l.value).map_err(err)?),
        None => None,
    };
    if own.iter().any(|l| l.name == "RDATE") {
        return Err(err(
            "RDATE is not supported; list extra shifts as events".into()
        ));
    }
    let starts = occurrences(&start, rule.as_ref()).map_err(err)?;
    let mut out = Vec::with_capacity(starts.len());
    for s in starts {
        if excluded.contains(&s) {
            continue;
        }
        let end = s
            .checked_add(span)
            .map_err(|_| err("shift end is out of range".into()))?;
        let starts_at = instant(&start, s).map_err(err)?;
        let ends_at = instant(&start, end).map_err(err)?;
        if ends_at <= starts_at {
            return Err(err(format!(
                "the shift starting {s} does not end after it starts"
            )));
        }
        if (ends_at - starts_at).whole_seconds() > MAX_SHIFT_SECS {
            return Err(err(format!(
                "the shift starting {s} is longer than {} days",
                MAX_SHIFT_SECS / 86_400
            )));
        }
        out.push(ParsedShift {
            line: begin,
            role: role.clone(),
            username: username.clone(),
            starts_at,
            ends_at,
            time_zone: start.zone.clone(),
        });
    }
    Ok(out)
}

/// An EXDATE value as a civil time in the event's zone (None when it cannot be expressed).
fn to_zone(s: &Stamp, tz: &TimeZone) -> Option<DateTime> {
    let ts = s.tz.to_timestamp(s.civil).ok()?;
    Some(tz.to_datetime(ts))
}

/// The civil start times of the event's occurrences (just DTSTART without a rule).
fn occurrences(start: &Stamp, rule: Option<&Rule>) -> Result<Vec<DateTime>, String> {
    let Some(rule) = rule else {
        return Ok(vec![start.civil]);
    };
    let past_until = |dt: DateTime| -> bool {
        match &rule.until {
            Some(RuleUntil::Civil(u)) => dt > *u,
            Some(RuleUntil::Instant(u)) => start.tz.to_timestamp(dt).is_ok_and(|t| t > *u),
            None => false,
        }
    };
    let limit = rule.count.unwrap_or(MAX_OCCURRENCES);
    let mut out = Vec::new();
    let mut hit_limit = false;
    let step = |n: i64| Span::new().days(n);
    if rule.daily || rule.by_day.is_empty() {
        let days = if rule.daily {
            rule.interval
        } else {
            7 * rule.interval
        };
        let mut k: i64 = 0;
        loop {
            let dt = start
                .civil
                .checked_add(step(k * days))
                .map_err(|_| "recurrence runs out of the calendar".to_owned())?;
            if past_until(dt) {
                break;
            }
            if out.len() >= limit {
                hit_limit = true;
                break;
            }
            out.push(dt);
            k += 1;
            if k > MAX_OCCURRENCES as i64 * 8 {
                break;
            }
        }
    } else {
        // Weeks start on Monday; DTSTART counts as the first occurrence (RFC 5545 §3.8.5.3).
        let week0 = start
            .civil
            .checked_sub(step(i64::from(
                start.civil.weekday().to_monday_zero_offset(),
            )))
            .map_err(|_| "recurrence runs out of the calendar".to_owned())?;
        let mut days: Vec<i64> = rule
            .by_day
            .iter()
            .map(|d| i64::from(d.to_monday_zero_offset()))
            .collect();
        days.sort_unstable();
        days.dedup();
        let mut week: i64 = 0;
        'weeks: loop {
            for d in &days {
                let dt = week0
                    .checked_add(step(week * 7 * rule.interval + d))
                    .map_err(|_| "recurrence runs out of the calendar".to_owned())?;
                if dt < start.civil {
                    continue;
                }
                if past_until(dt) {
                    break 'weeks;
                }
                if out.len() >= limit {
                    hit_limit = true;
                    break 'weeks;
                }
                out.push(dt);
            }
            week += 1;
            if week > MAX_OCCURRENCES as i64 {
                break;
            }
        }
        if out.first() != Some(&start.civil) {
            out.insert(0, start.civil);
            if rule.count.is_some() {
                out.truncate(limit);
            }
        }
    }
    if rule.count.is_none() && hit_limit {
        return Err(format!(
            "the recurrence expands to more than {MAX_OCCURRENCES} shifts; use an earlier UNTIL"
        ));
    }
    Ok(out)
}

/// A civil date-time in the event's zone as an instant, refusing gaps and folds.
fn instant(zone: &Stamp, civil: DateTime) -> Result<OffsetDateTime, String> {
    let ambiguous = zone.tz.to_ambiguous_zoned(civil);
    if ambiguous.is_ambiguous() {
        return Err(format!(
            "{civil} does not exist or occurs twice in {} (a daylight-saving change); \
             choose another time",
            zone.zone
        ));
    }
    let zoned = ambiguous
        .unambiguous()
        .map_err(|_| format!("{civil} is not a single instant in {}", zone.zone))?;
    OffsetDateTime::from_unix_timestamp_nanos(zoned.timestamp().as_nanosecond())
        .map_err(|_| format!("{civil} is out of range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use proptest::prelude::*;

    use super::*;

    fn cal(events: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
    }

    fn ok(text: &str) -> Vec<ParsedShift> {
        let (s, e) = parse_all(text);
        assert!(e.is_empty(), "{e:?}");
        s
    }

    fn errs(text: &str) -> Vec<String> {
        let (_, e) = parse_all(text);
        assert!(!e.is_empty());
        e.iter().map(ToString::to_string).collect()
    }

    fn utc(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn single_events_with_tzid_utc_folding_and_attendee() {
        let text = cal(
            "BEGIN:VEVENT\r\nUID:1\r\nSUMMARY:cardiology-on-call\r\nX-WARD-USER:alice\r\n\
             DTSTART;TZID=Europe/Berlin:20261202T080000\r\nDTEND;TZID=Europe/Berlin:2026120\r\n 2T200000\r\n\
             BEGIN:VALARM\r\nACTION:DISPLAY\r\nSUMMARY:not a role\r\nEND:VALARM\r\nEND:VEVENT\r\n\
             BEGIN:VEVENT\r\nSUMMARY:icu-charge-nurse\r\nATTENDEE;CN=\"Bob; RN\":mailto:Bob@hospital.example\r\n\
             DTSTART:20261202T190000Z\r\nDURATION:PT12H\r\nEND:VEVENT\r\n",
        );
        let s = ok(&text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].role.as_str(), "cardiology-on-call");
        assert_eq!(s[0].username.as_str(), "alice");
        assert_eq!(s[0].starts_at, utc("2026-12-02T07:00:00Z"));
        assert_eq!(s[0].ends_at, utc("2026-12-02T19:00:00Z"));
        assert_eq!(s[0].time_zone, "Europe/Berlin");
        assert_eq!(s[0].line, 4);
        assert_eq!(s[1].username.as_str(), "bob");
        assert_eq!(s[1].ends_at, utc("2026-12-03T07:00:00Z"));
        assert_eq!(s[1].time_zone, "UTC");
    }

    #[test]
    fn daily_and_weekly_rules_expand_in_local_time() {
        // Across the end of daylight saving in Berlin (2026-10-25): 08:00 local stays 08:00.
        let text = cal("BEGIN:VEVENT\r\nSUMMARY:ward-5\r\nX-WARD-USER:alice\r\n\
             DTSTART;TZID=Europe/Berlin:20261024T080000\r\nDTEND;TZID=Europe/Berlin:20261024T160000\r\n\
             RRULE:FREQ=DAILY;COUNT=3\r\nEXDATE;TZID=Europe/Berlin:20261025T080000\r\nEND:VEVENT\r\n");
        let s = ok(&text);
        assert_eq!(
            s.iter().map(|s| s.starts_at).collect::<Vec<_>>(),
            vec![utc("2026-10-24T06:00:00Z"), utc("2026-10-26T07:00:00Z")]
        );
        let weekly = cal("BEGIN:VEVENT\r\nSUMMARY:ward-5\r\nX-WARD-USER:bob\r\n\
             DTSTART:20261130T080000Z\r\nDTEND:20261130T100000Z\r\n\
             RRULE:FREQ=WEEKLY;BYDAY=MO,TH;UNTIL=20261210T235959Z\r\nEND:VEVENT\r\n");
        let s = ok(&weekly);
        assert_eq!(
            s.iter().map(|s| s.starts_at).collect::<Vec<_>>(),
            vec![
                utc("2026-11-30T08:00:00Z"),
                utc("2026-12-03T08:00:00Z"),
                utc("2026-12-07T08:00:00Z"),
                utc("2026-12-10T08:00:00Z"),
            ]
        );
        let every_other = cal("BEGIN:VEVENT\r\nSUMMARY:ward-5\r\nX-WARD-USER:bob\r\n\
             DTSTART:20261201T080000Z\r\nDTEND:20261201T100000Z\r\n\
             RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=2\r\nEND:VEVENT\r\n");
        assert_eq!(ok(&every_other)[1].starts_at, utc("2026-12-15T08:00:00Z"));
    }

    #[test]
    fn bad_input_is_named_with_its_line() {
        let ev = |body: &str| cal(&format!("BEGIN:VEVENT\r\n{body}END:VEVENT\r\n"));
        let cases = [
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000\r\nDTEND:20261201T090000Z\r\n",
                ),
                "floating time",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART;VALUE=DATE:20261201\r\nDTEND:20261202T090000Z\r\n",
                ),
                "all-day",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART;TZID=Mars/Olympus:20261201T080000\r\nDTEND:20261201T090000Z\r\n",
                ),
                "unknown time zone",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\nRRULE:FREQ=DAILY\r\n",
                ),
                "COUNT or UNTIL",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\nRRULE:FREQ=MONTHLY;COUNT=2\r\n",
                ),
                "FREQ=MONTHLY",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\nRRULE:FREQ=DAILY;COUNT=2;BYMONTH=1\r\n",
                ),
                "BYMONTH",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T070000Z\r\n",
                ),
                "does not end after",
            ),
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261231T070000Z\r\n",
                ),
                "longer than 14 days",
            ),
            (
                ev("SUMMARY:r\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\n"),
                "no user",
            ),
            (
                ev("X-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\n"),
                "no role",
            ),
            (
                ev(
                    "SUMMARY:Bad Role\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\nDTEND:20261201T090000Z\r\n",
                ),
                "SUMMARY",
            ),
            // 2026-03-29 02:30 does not exist in Berlin.
            (
                ev(
                    "SUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART;TZID=Europe/Berlin:20260329T023000\r\nDTEND;TZID=Europe/Berlin:20260329T080000\r\n",
                ),
                "daylight-saving",
            ),
            (cal(""), "no VEVENT"),
            (
                "BEGIN:VEVENT\r\nEND:VEVENT\r\n".to_owned(),
                "starts with BEGIN:VCALENDAR",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:r\r\n".to_owned(),
                "never closed",
            ),
        ];
        for (text, want) in cases {
            let e = errs(&text).join("; ");
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(e.starts_with("line "), "{e}");
        }
        // The error names the event's BEGIN line.
        let text = cal(
            "BEGIN:VEVENT\r\nSUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000\r\nDTEND:20261201T090000Z\r\nEND:VEVENT\r\n",
        );
        assert!(errs(&text)[0].starts_with("line 4:"));
        assert!(looks_like_ical(&text));
        assert!(!looks_like_ical("role,username,start,end,time_zone"));
    }

    #[test]
    fn unbounded_until_is_refused_beyond_the_limit() {
        let text = cal(
            "BEGIN:VEVENT\r\nSUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T080000Z\r\n\
             DTEND:20261201T090000Z\r\nRRULE:FREQ=DAILY;UNTIL=20401231T000000Z\r\nEND:VEVENT\r\n",
        );
        assert!(errs(&text)[0].contains("more than 1000 shifts"));
    }

    proptest! {
        // The parser never panics, whatever the input.
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = parse_all(&s);
        }

        // Arbitrary content lines inside a calendar never panic either.
        #[test]
        fn never_panics_on_calendar_lines(lines in proptest::collection::vec(
            "(BEGIN|END|SUMMARY|DTSTART|DTEND|RRULE|EXDATE|X-WARD-USER|DURATION)(;[A-Z]{1,5}=[A-Za-z/\"0-9]{0,12})?:[A-Za-z0-9=;,:TZ/-]{0,30}", 0..20)) {
            let _ = parse_all(&cal(&lines.join("\r\n")));
        }

        // A daily rule with COUNT expands to exactly COUNT one-day-apart shifts.
        #[test]
        fn daily_count_expands_exactly(count in 1usize..60, hour in 0u8..23) {
            let text = cal(&format!(
                "BEGIN:VEVENT\r\nSUMMARY:r\r\nX-WARD-USER:a\r\nDTSTART:20261201T{hour:02}0000Z\r\n\
                 DURATION:PT1H\r\nRRULE:FREQ=DAILY;COUNT={count}\r\nEND:VEVENT\r\n"));
            let s = ok(&text);
            prop_assert_eq!(s.len(), count);
            for w in s.windows(2) {
                prop_assert_eq!((w[1].starts_at - w[0].starts_at).whole_hours(), 24);
            }
        }
    }
}
