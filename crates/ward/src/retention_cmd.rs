//! `ward admin retention|hold|erasure` (ADR 0013): argument parsing and printing only; the
//! logic is `ward_server::service::retention`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::{api, print};
use clap::Subcommand;
use ward_proto::{
    AddHoldRequest, ErasureRequestBody, HoldInfo, HoldTarget, RetentionRulesInfo,
    SetRetentionRequest,
};
use ward_server::service::{Actor, Services};

/// `ward admin retention …`
#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Show the retention policy.
    Show,
    /// Change retention rules. Durations are a whole number and a unit: m, h, d, w or y
    /// (a year is 365 days), e.g. 30d or 7y; `none` clears a rule.
    Set {
        /// Change the rules of this conversation kind (direct, group, …) instead of the
        /// organisation default.
        #[arg(long)]
        kind: Option<String>,
        /// Delete messages (server and devices) this long after they were sent.
        #[arg(long)]
        lifespan: Option<String>,
        /// Keep messages at least this long, even against lifespan and erasure requests.
        #[arg(long)]
        statutory: Option<String>,
        /// Purge compliance journal archive entries this long after the message was sent.
        #[arg(long)]
        journal: Option<String>,
        /// Seconds between automatic purge runs of `ward serve` (60 to 86400).
        #[arg(long)]
        interval_secs: Option<u64>,
    },
    /// Run the purge now and print what it did.
    Run,
}

/// `ward admin hold …`
#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold on a user or a conversation.
    Add {
        /// The held user.
        #[arg(
            long,
            conflicts_with = "conversation",
            required_unless_present = "conversation"
        )]
        user: Option<String>,
        /// The held conversation (id).
        #[arg(long)]
        conversation: Option<String>,
        /// Why (no patient data).
        #[arg(long)]
        reason: String,
        /// Case or matter reference.
        #[arg(long = "case")]
        case_ref: Option<String>,
    },
    /// List every hold, released ones included.
    List,
    /// Release a hold.
    Release {
        /// The hold id.
        hold_id: String,
    },
}

/// `ward admin erasure …`
#[derive(Subcommand)]
pub enum ErasureCommand {
    /// Honour a GDPR/APPI erasure request for a user and print the report.
    Request {
        /// The data subject.
        #[arg(long)]
        user: String,
    },
}

fn rules_text(r: &RetentionRulesInfo) -> String {
    format!(
        "lifespan {}, statutory retention {}",
        r.message_lifespan.as_deref().unwrap_or("none"),
        r.statutory_retention.as_deref().unwrap_or("none")
    )
}

fn hold_text(h: &HoldInfo) -> String {
    let target = match h.target {
        HoldTarget::User(u) => format!("user {u}"),
        HoldTarget::Conversation(c) => format!("conversation {c}"),
    };
    let state = match h.released_at {
        Some(t) => format!("released {t}"),
        None => "in force".to_owned(),
    };
    format!(
        "{}\t{target}\tcase {}\t{state}\t{}",
        h.id,
        h.case_ref.as_deref().unwrap_or("-"),
        h.reason
    )
}

/// Run a retention command.
pub async fn retention(
    services: &Arc<Services>,
    actor: &Actor,
    cmd: RetentionCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let info = match cmd {
        RetentionCommand::Show => services.retention_policy(actor).map_err(api)?,
        RetentionCommand::Set {
            kind,
            lifespan,
            statutory,
            journal,
            interval_secs,
        } => {
            if lifespan.is_none()
                && statutory.is_none()
                && journal.is_none()
                && interval_secs.is_none()
            {
                anyhow::bail!(
                    "nothing to change: give --lifespan, --statutory, --journal or --interval-secs"
                );
            }
            services
                .set_retention(
                    actor,
                    SetRetentionRequest {
                        kind,
                        message_lifespan: lifespan,
                        statutory_retention: statutory,
                        journal_retention: journal,
                        purge_interval_secs: interval_secs,
                    },
                )
                .await
                .map_err(api)?
        }
        RetentionCommand::Run => {
            let r = services.run_retention(actor).await.map_err(api)?;
            print(
                json,
                serde_json::to_value(&r)?,
                format!(
                    "envelopes deleted: {} (kept by legal hold {}, by statutory retention {})\n\
                     journal entries deleted: {} (kept by legal hold {}, by statutory retention {})\n\
                     deletion orders to devices: {}",
                    r.envelopes_deleted,
                    r.envelopes_kept_hold,
                    r.envelopes_kept_statutory,
                    r.journal_deleted,
                    r.journal_kept_hold,
                    r.journal_kept_statutory,
                    r.deletion_orders
                ),
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut text = format!("default: {}", rules_text(&info.default));
    for (k, r) in &info.per_kind {
        text.push_str(&format!("\n{k}: {}", rules_text(r)));
    }
    text.push_str(&format!(
        "\njournal archive retention: {}\npurge every {} s",
        info.journal_retention.as_deref().unwrap_or("none"),
        info.purge_interval_secs
    ));
    print(json, serde_json::to_value(&info)?, text);
    Ok(ExitCode::SUCCESS)
}

/// Run a hold command.
pub async fn hold(
    services: &Arc<Services>,
    actor: &Actor,
    cmd: HoldCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match cmd {
        HoldCommand::Add {
            user,
            conversation,
            reason,
            case_ref,
        } => {
            let conversation = conversation
                .map(|c| {
                    c.parse()
                        .map_err(|_| anyhow::anyhow!("{c:?} is not a conversation id (a UUID)"))
                })
                .transpose()?;
            let h = services
                .add_hold(
                    actor,
                    AddHoldRequest {
                        user,
                        conversation,
                        reason,
                        case_ref,
                    },
                )
                .await
                .map_err(api)?;
            print(
                json,
                serde_json::to_value(&h)?,
                format!("Hold placed: {}", hold_text(&h)),
            );
        }
        HoldCommand::List => {
            let l = services.list_holds(actor).await.map_err(api)?;
            let text = l.holds.iter().map(hold_text).collect::<Vec<_>>().join("\n");
            print(json, serde_json::to_value(&l)?, text);
        }
        HoldCommand::Release { hold_id } => {
            let id = hold_id
                .parse()
                .map_err(|_| anyhow::anyhow!("{hold_id:?} is not a hold id (a UUID)"))?;
            let h = services.release_hold(actor, id).await.map_err(api)?;
            print(
                json,
                serde_json::to_value(&h)?,
                format!("Released: {}", hold_text(&h)),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run an erasure command.
pub async fn erasure(
    services: &Arc<Services>,
    actor: &Actor,
    cmd: ErasureCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ErasureCommand::Request { user } = cmd;
    let r = services
        .request_erasure(actor, ErasureRequestBody { user })
        .await
        .map_err(api)?;
    let mut text = format!(
        "Erasure request {} for user {}: {}\nerased: {} envelopes, {} journal entries",
        r.id, r.user_id, r.status, r.envelopes_erased, r.journal_entries_erased
    );
    for k in &r.kept {
        text.push_str(&format!(
            "\nkept: {} {} ({}: {})",
            k.count, k.what, k.rule, k.detail
        ));
    }
    print(json, serde_json::to_value(&r)?, text);
    Ok(ExitCode::SUCCESS)
}
