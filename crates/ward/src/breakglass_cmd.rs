//! `ward break-glass`: open emergency access to a conversation, or list grants (ADR 0016).

use std::path::Path;

use clap::{Args, Subcommand};
use ward_proto::BreakGlassGrant;

use crate::client_cmd;

/// `ward break-glass --conversation ID --reason TEXT [--minutes N]` or `ward break-glass list`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BreakGlassArgs {
    #[command(subcommand)]
    command: Option<BreakGlassCommand>,
    /// The conversation to open (its id).
    #[arg(long, required = true)]
    conversation: Option<String>,
    /// Why, 10 to 500 characters, without patient identifiers (it is stored in clear in the
    /// audit log).
    #[arg(long, required = true)]
    reason: Option<String>,
    /// How long, in minutes (default 60, at most the organisation's maximum).
    #[arg(long)]
    minutes: Option<u32>,
}

/// `ward break-glass …` subcommands.
#[derive(Subcommand)]
enum BreakGlassCommand {
    /// List grants: every grant for compliance officers and admins, otherwise those of your
    /// conversations.
    List,
}

/// Run `ward break-glass`.
pub async fn run(dir: &Path, args: BreakGlassArgs, json: bool) -> anyhow::Result<()> {
    let mut client = client_cmd::open(dir)?;
    match (args.command, args.conversation, args.reason) {
        (Some(BreakGlassCommand::List), _, _) => {
            let grants = client.break_glass_grants().await?;
            if json {
                println!("{}", serde_json::json!({ "grants": grants }));
            } else if grants.is_empty() {
                println!("No break-glass grants.");
            } else {
                for g in &grants {
                    println!("{}", line(g));
                }
            }
        }
        (None, Some(c), Some(reason)) => {
            let grant = client
                .break_glass(client_cmd::conversation(&c)?, &reason, args.minutes)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&grant)?);
            } else {
                println!(
                    "Break-glass access to {} granted until {}. Every member, and the \
                     compliance team, are notified; a member's device adds you when it next \
                     syncs (run `ward sync` to join). Messages from before you joined are not \
                     readable.",
                    grant.conversation_id, grant.expires_at
                );
            }
        }
        _ => anyhow::bail!("give --conversation and --reason, or `list`"),
    }
    Ok(())
}

/// The visible notice for one grant.
pub fn notice(g: &BreakGlassGrant) -> String {
    format!(
        "BREAK-GLASS: {} has emergency access to conversation {} until {} (granted {}). Reason: {}",
        g.username, g.conversation_id, g.expires_at, g.granted_at, g.reason
    )
}

fn line(g: &BreakGlassGrant) -> String {
    let state = match (g.ended_at, g.added_at) {
        (Some(t), _) => format!("ended {t}"),
        (None, Some(t)) => format!("active, added {t}"),
        (None, None) => "active, not yet added".to_owned(),
    };
    format!(
        "{}\t{}\t{}\t{} to {}\t{}\t{}",
        g.grant_id, g.conversation_id, g.username, g.granted_at, g.expires_at, state, g.reason
    )
}
