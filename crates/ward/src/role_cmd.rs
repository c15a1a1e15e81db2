//! `ward send --to-role`, `ward ack`, `ward status` and the alert lines of
//! `ward sync --follow` (ADR 0018).

use std::path::Path;

use anyhow::Context;
use time::format_description::well_known::Rfc3339;
use ward_client::{AckChoice, RoleSent};
use ward_proto::{AlertKind, ClinicalRoleName, MessageAlert, MessageDelivery};

fn ts(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `ward send --to-role NAME …`.
pub async fn send_to_role(
    dir: &Path,
    role: &str,
    text: &str,
    attach: &[std::path::PathBuf],
    priority: ward_core::Priority,
    confirm_phi: bool,
    json: bool,
) -> anyhow::Result<()> {
    let role = ClinicalRoleName::parse(role).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = crate::client_cmd::open(dir)?;
    let mut bar = crate::progress::Bar::new();
    let mut draw = bar.drawer();
    let sent: RoleSent = client
        .send_to_role_with_attachments(
            &role,
            text,
            attach,
            priority,
            confirm_phi,
            draw.as_mut().map(|f| f as ward_client::ProgressFn<'_>),
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string(&sent)?);
        return Ok(());
    }
    println!(
        "Sent message {} to {role} ({}) in conversation {}.",
        sent.sent.message_id,
        priority.as_str(),
        sent.sent.conversation_id
    );
    if let Some(o) = &sent.sent.to_role {
        if o.nobody_on_call {
            println!("Nobody holds {role} now: the escalation chain was notified instead.");
        }
        let names: Vec<String> = sent
            .holders
            .escalation
            .iter()
            .flat_map(|t| t.users.iter())
            .filter(|h| o.notified.contains(&h.user_id))
            .map(|h| h.username.to_string())
            .collect();
        if names.is_empty() {
            println!("Nobody could be notified: no tier of the chain has anyone on call.");
        } else {
            println!("Notified (tier {}): {}.", o.tier, names.join(", "));
        }
        if o.awaiting_ack {
            println!(
                "Waiting for an acknowledgement; follow with `ward sync --follow` or `ward status {}`.",
                sent.sent.message_id
            );
        }
    }
    Ok(())
}

/// `ward ack MESSAGE_ID [--response accept|decline|call-me|TEXT]`.
pub async fn ack(dir: &Path, id: &str, response: &str, json: bool) -> anyhow::Result<()> {
    let message_id = id
        .parse()
        .with_context(|| format!("{id:?} is not a message id"))?;
    let mut client = crate::client_cmd::open(dir)?;
    let delivery = client
        .acknowledge(message_id, AckChoice::parse(response))
        .await?;
    if json {
        println!("{}", serde_json::to_string(&delivery)?);
    } else {
        println!("Acknowledged message {message_id}.");
        print_delivery(&delivery);
    }
    Ok(())
}

/// `ward status MESSAGE_ID`: per-device states with timestamps.
pub async fn status(dir: &Path, id: &str, json: bool) -> anyhow::Result<()> {
    let message_id = id
        .parse()
        .with_context(|| format!("{id:?} is not a message id"))?;
    let mut client = crate::client_cmd::open(dir)?;
    let delivery = client.delivery(message_id).await?;
    if json {
        println!("{}", serde_json::to_string(&delivery)?);
    } else {
        print_delivery(&delivery);
    }
    Ok(())
}

fn print_delivery(d: &MessageDelivery) {
    println!(
        "Message {} (seq {} in {}), accepted {}:",
        d.message_id,
        d.seq,
        d.conversation_id,
        ts(d.sent_at)
    );
    if let Some(e) = &d.escalation {
        let mut line = format!(
            "  to {} ({}) from {}: {}, tier {} of {}",
            e.role,
            e.priority,
            e.sender,
            e.outcome.as_str().replace('_', " "),
            e.tier,
            e.tiers
        );
        if let (Some(by), Some(r)) = (&e.acknowledged_by, e.response) {
            line.push_str(&format!(" — {by} answered {r}"));
            if let Some(role) = &e.acknowledged_as {
                line.push_str(&format!(" as {role}"));
            }
            if let Some(at) = e.acknowledged_at {
                line.push_str(&format!(" at {}", ts(at)));
            }
        }
        if let Some(next) = e.next_step_at {
            line.push_str(&format!("; next step {}", ts(next)));
        }
        println!("{line}");
    }
    for dev in &d.devices {
        println!("  {} device {}: {}", dev.username, dev.device_id, dev.state);
        for c in &dev.states {
            let mut extra = String::new();
            if let Some(t) = c.tier {
                extra.push_str(&format!(" (tier {t})"));
            }
            if let Some(r) = c.response {
                extra.push_str(&format!(" response {r}"));
            }
            println!("    {} {}{extra}", ts(c.at), c.state);
        }
    }
}

/// One line (or JSON object) for an alert in `ward sync [--follow]`.
pub fn print_alert(a: &MessageAlert, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "alert": a }));
        return;
    }
    let p = a.priority.as_str().to_uppercase();
    let what = match a.kind {
        AlertKind::Notify => format!("{p} message to {} needs your acknowledgement", a.role),
        AlertKind::Renotify => format!("REMINDER: {p} message to {} is not acknowledged", a.role),
        AlertKind::Escalated => format!(
            "ESCALATED: {p} message to {} moved to tier {}{}",
            a.role,
            a.tier,
            a.tier_role
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        AlertKind::NoResponse => format!(
            "NO RESPONSE: nobody acknowledged your {p} message to {}",
            a.role
        ),
        AlertKind::Acknowledged => format!(
            "{p} message to {} answered: {}",
            a.role,
            a.response.map_or("acknowledged", |r| r.as_str())
        ),
        AlertKind::NobodyOnCall => {
            format!("Nobody holds {} now; the escalation chain is asked", a.role)
        }
    };
    let deadline = a
        .deadline
        .filter(|_| {
            matches!(
                a.kind,
                AlertKind::Notify | AlertKind::Renotify | AlertKind::Escalated
            )
        })
        .map(|d| format!(", acknowledge before {}", ts(d)))
        .unwrap_or_default();
    println!(
        "{} {what}{deadline}  (message {}; ward ack {})",
        ts(a.at),
        a.message_id,
        a.message_id
    );
}
