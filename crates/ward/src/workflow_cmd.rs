//! `ward admin role|schedule|escalation`: clinical roles, shift schedules and escalation
//! policies (ADR 0014), on the database directly like every `ward admin` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use ward_proto::{
    ClinicalRoleName, CreateClinicalRoleRequest, EscalationPolicyRequest, HoldingSource,
};
use ward_server::service::{Actor, Services};

use crate::client_cmd::username;
use crate::{api, parse_duration, print};

/// Largest schedule file read, bytes (10,000 lines of about 100 bytes, with room).
const MAX_SCHEDULE_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Subcommand)]
pub(crate) enum RoleCommand {
    /// Define a clinical role such as cardiology-on-call (a duty messages can be addressed to;
    /// not the account role).
    Create {
        /// Name: a-z, 0-9 and '-'.
        name: String,
        /// What the role is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List clinical roles.
    List,
    /// Assign the role to a user (on call until they opt out).
    Assign {
        /// Role name.
        name: String,
        /// Username.
        #[arg(long)]
        user: String,
    },
    /// Remove a user's assignment.
    Unassign {
        /// Role name.
        name: String,
        /// Username.
        #[arg(long)]
        user: String,
    },
    /// Who holds the role now (assignments opted in, shifts covering now) and its
    /// escalation chain.
    Who {
        /// Role name.
        name: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Import shifts from a CSV file with the header `role,username,start,end,time_zone`
    /// (civil date-times like 2026-12-02T08:00 in the row's IANA time zone), or from an
    /// iCalendar file (.ics: one VEVENT per shift, SUMMARY = role, X-WARD-USER = username,
    /// DTSTART/DTEND with TZID or UTC, RRULE FREQ=DAILY/WEEKLY with COUNT or UNTIL). All or
    /// nothing: every bad or overlapping line is reported with its number.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum EscalationCommand {
    /// Set a role's escalation policy: each tier has --ack-within to acknowledge, then the
    /// next tier (a role's holders or a user) is notified.
    Set {
        /// Role name.
        role: String,
        /// Deadline per tier, e.g. 5m (30s to 1d).
        #[arg(long, value_parser = parse_duration)]
        ack_within: u64,
        /// Re-notify an unacknowledged tier this often, e.g. 1m.
        #[arg(long, value_parser = parse_duration)]
        renotify_every: Option<u64>,
        /// Next tiers in order: role:NAME, user:NAME or a bare name.
        #[arg(long, num_args = 1.., required = true)]
        then: Vec<String>,
    },
}

fn role_name(s: &str) -> anyhow::Result<ClinicalRoleName> {
    ClinicalRoleName::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) async fn role(
    services: &Services,
    actor: &Actor,
    cmd: RoleCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match cmd {
        RoleCommand::Create { name, description } => {
            let r = services
                .create_clinical_role(
                    actor,
                    CreateClinicalRoleRequest {
                        name: role_name(&name)?,
                        description,
                    },
                )
                .await
                .map_err(api)?;
            print(
                json,
                serde_json::to_value(&r)?,
                format!("Clinical role {} created.", r.name),
            );
        }
        RoleCommand::List => {
            let roles = services.clinical_roles(actor).await.map_err(api)?;
            let text = roles
                .iter()
                .map(|r| format!("{}\t{}", r.name, r.description.clone().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n");
            print(json, serde_json::json!({ "roles": roles }), text);
        }
        RoleCommand::Assign { name, user } => {
            let (role, user) = (role_name(&name)?, username(&user)?);
            let added = services
                .assign_clinical_role(actor, &role, &user)
                .await
                .map_err(api)?;
            print(
                json,
                serde_json::json!({ "role": role, "username": user, "new": added }),
                if added {
                    format!("{user} now holds {role} (on call).")
                } else {
                    format!("{user} already held {role}; nothing changed.")
                },
            );
        }
        RoleCommand::Unassign { name, user } => {
            let (role, user) = (role_name(&name)?, username(&user)?);
            services
                .unassign_clinical_role(actor, &role, &user)
                .await
                .map_err(api)?;
            print(
                json,
                serde_json::json!({ "role": role, "username": user }),
                format!("{user} no longer holds {role}."),
            );
        }
        RoleCommand::Who { name } => {
            let h = services
                .role_holders(actor, &role_name(&name)?)
                .await
                .map_err(api)?;
            let mut text = if h.holders.is_empty() {
                format!("Nobody holds {} now.", h.role)
            } else {
                let mut t = format!("{} now:", h.role);
                for u in &h.holders {
                    match (u.source, u.until) {
                        (HoldingSource::Shift, Some(until)) => {
                            t.push_str(&format!("\n  {} (shift until {until})", u.username));
                        }
                        _ => t.push_str(&format!("\n  {} (assigned)", u.username)),
                    }
                }
                t
            };
            if h.escalation.len() > 1 {
                text.push_str("\nEscalation:");
                for (i, tier) in h.escalation.iter().enumerate() {
                    let who: Vec<&str> = tier.users.iter().map(|u| u.username.as_str()).collect();
                    let label = tier
                        .role
                        .as_ref()
                        .map_or_else(|| "user".to_owned(), |r| format!("role {r}"));
                    let deadline = tier
                        .ack_within_secs
                        .map_or_else(String::new, |s| format!(", {s} s to acknowledge"));
                    text.push_str(&format!(
                        "\n  tier {i}: {label}: {}{deadline}",
                        if who.is_empty() {
                            "nobody now".to_owned()
                        } else {
                            who.join(", ")
                        }
                    ));
                }
            }
            print(json, serde_json::to_value(&h)?, text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn schedule(
    services: &Services,
    actor: &Actor,
    cmd: ScheduleCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ScheduleCommand::Import { file } = cmd;
    let len = std::fs::metadata(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if len > MAX_SCHEDULE_FILE_BYTES {
        anyhow::bail!(
            "{} is {len} bytes; a schedule file has at most {MAX_SCHEDULE_FILE_BYTES} bytes",
            file.display()
        );
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
    let ical = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ics"))
        || ward_server::service::workflow::ical::looks_like_ical(&text);
    let r = if ical {
        services.import_ical_schedule(actor, &text).await
    } else {
        services.import_schedule(actor, &text).await
    }
    .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message))?;
    let roles: Vec<String> = r.roles.iter().map(ToString::to_string).collect();
    print(
        json,
        serde_json::to_value(&r)?,
        format!("Imported {} shifts for {}.", r.imported, roles.join(", ")),
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn escalation(
    services: &Services,
    actor: &Actor,
    cmd: EscalationCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let EscalationCommand::Set {
        role,
        ack_within,
        renotify_every,
        then,
    } = cmd;
    let p = services
        .set_escalation_policy(
            actor,
            &role_name(&role)?,
            EscalationPolicyRequest {
                ack_within_secs: ack_within,
                renotify_every_secs: renotify_every,
                then,
            },
        )
        .await
        .map_err(api)?;
    let tiers: Vec<String> = p.then.iter().map(ToString::to_string).collect();
    print(
        json,
        serde_json::to_value(&p)?,
        format!(
            "Escalation for {}: {} s to acknowledge{}, then {}.",
            p.role,
            p.ack_within_secs,
            p.renotify_every_secs
                .map_or_else(String::new, |r| format!(" (re-notified every {r} s)")),
            tiers.join(", then ")
        ),
    );
    Ok(ExitCode::SUCCESS)
}
