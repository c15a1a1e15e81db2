//! Client commands: enroll, login, send, sync, conversations, groups, receipts.
//!
//! Secrets never come from argv: the profile passphrase from `WARD_PASSPHRASE`, the password
//! from `WARD_PASSWORD`, the TOTP code from `WARD_TOTP`, the enrollment code from
//! `WARD_ENROLLMENT_CODE`, or a prompt without echo.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ward_client::{EnrollParams, ProgressFn, StoredMessage, Target, WardClient};
use ward_core::Priority;
use ward_proto::{ConversationId, MessageId, Username};
use zeroize::Zeroizing;

/// `ward enroll`.
#[derive(Args)]
pub struct EnrollArgs {
    /// Server URL, e.g. https://ward.hospital.example:8443.
    #[arg(long)]
    server: String,
    /// The server's CA certificate (PEM), e.g. ward-data/tls/ca.pem.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Expected SHA-256 fingerprint of that CA (as `ward serve` prints it).
    #[arg(long, value_name = "FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// Your username.
    #[arg(long)]
    username: String,
    /// A name for this device.
    #[arg(long, default_value = "ward cli")]
    device_name: String,
}

/// `ward send`.
#[derive(Args)]
pub struct SendArgs {
    /// Recipient's username (direct conversation).
    #[arg(long, conflicts_with_all = ["conversation", "to_role"])]
    to: Option<String>,
    /// Conversation id.
    #[arg(long, conflicts_with = "to_role")]
    conversation: Option<String>,
    /// A clinical role (`cardiology-on-call`): whoever holds it now, with its escalation
    /// chain; urgent and STAT ask for acknowledgement and escalate.
    #[arg(long)]
    to_role: Option<String>,
    /// routine, urgent or stat (default routine, or the template's).
    #[arg(long)]
    priority: Option<String>,
    /// Send although the organisation's DLP check warns that the text looks like PHI.
    #[arg(long)]
    confirm_phi: bool,
    /// Bind the conversation to a patient before sending (see `ward group create`).
    #[command(flatten)]
    patient: crate::clinical_cmd::PatientArgs,
    /// Send the organisation's template NAME instead of a text (`ward admin template list`).
    #[arg(long, value_name = "NAME", conflicts_with = "text")]
    template: Option<String>,
    /// A template variable, KEY=VALUE (repeat for each variable).
    #[arg(long = "var", value_name = "KEY=VALUE", requires = "template")]
    vars: Vec<String>,
    /// Attach a file (repeatable): checked by content against the organisation's policy,
    /// stripped of image metadata, encrypted on this device and uploaded.
    #[arg(long = "attach", value_name = "FILE")]
    attach: Vec<PathBuf>,
    /// The text (read from stdin when absent and nothing is attached).
    text: Option<String>,
}

/// `ward sync`.
#[derive(Args)]
pub struct SyncArgs {
    /// Keep running and print messages as they arrive (with --download-dir, saving their
    /// attachments as they come).
    #[arg(long)]
    follow: bool,
    /// Download, verify and decrypt the new messages' attachments into this directory
    /// (never overwriting: a taken name gets ` (1)`, ` (2)`, …), each image's thumbnail
    /// beside it as `NAME.thumb.jpg`; prints the paths written.
    #[arg(long, value_name = "DIR")]
    download_dir: Option<PathBuf>,
}

/// `ward group …`.
#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        /// Group name.
        #[arg(long)]
        name: String,
        /// Members (usernames).
        #[arg(long = "member", required = true, num_args = 1..)]
        members: Vec<String>,
        /// Bind the group to a patient (shown as a banner on every member's client; the
        /// server keeps only a tag sealed to the compliance journal key).
        #[command(flatten)]
        patient: crate::clinical_cmd::PatientArgs,
    },
    /// Add members.
    Add {
        /// Conversation id.
        #[arg(long)]
        conversation: String,
        /// Members to add.
        #[arg(long = "member", required = true, num_args = 1..)]
        members: Vec<String>,
    },
    /// Remove members.
    Remove {
        /// Conversation id.
        #[arg(long)]
        conversation: String,
        /// Members to remove.
        #[arg(long = "member", required = true, num_args = 1..)]
        members: Vec<String>,
    },
}

/// The profile directory: `--profile`, `WARD_PROFILE`, or `~/.ward`.
pub fn profile_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("WARD_PROFILE").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ward")))
        .unwrap_or_else(|| PathBuf::from("ward-profile"))
}

pub(crate) fn secret(var: &str, prompt: &str) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{var} is not set and there is no terminal to ask ({prompt})");
    }
    rpassword::prompt_password(format!("{prompt}: "))
        .with_context(|| format!("could not read {prompt}"))
}

pub(crate) fn open(dir: &Path) -> anyhow::Result<WardClient> {
    let passphrase = secret("WARD_PASSPHRASE", "profile passphrase")?;
    Ok(WardClient::open(dir, &passphrase)?)
}

pub(crate) fn username(s: &str) -> anyhow::Result<Username> {
    Username::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) fn conversation(s: &str) -> anyhow::Result<ConversationId> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a conversation id (a UUID)"))
}

fn priority(s: &str) -> anyhow::Result<Priority> {
    match s {
        "routine" => Ok(Priority::Routine),
        "urgent" => Ok(Priority::Urgent),
        "stat" => Ok(Priority::Stat),
        other => bail!("priority {other:?} is not one of routine, urgent, stat"),
    }
}

fn check_fingerprint(ca_pem: &str, expected: Option<&str>) -> anyhow::Result<()> {
    if let Some(expected) = expected {
        let actual = ward_client::ca_fingerprint(ca_pem)?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            bail!(
                "the CA certificate's fingerprint is {actual}, not the expected {expected}; do not trust it"
            );
        }
    }
    Ok(())
}

/// `ward enroll`.
pub async fn enroll(dir: &Path, args: EnrollArgs, json: bool) -> anyhow::Result<()> {
    let ca_path = args
        .ca_cert
        .context("--ca-cert FILE is required: the server's CA certificate (ward-data/tls/ca.pem on the server)")?;
    let ca_pem = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("cannot read {}", ca_path.display()))?;
    check_fingerprint(&ca_pem, args.ca_fingerprint.as_deref())?;
    let username = username(&args.username)?;
    let code = secret("WARD_ENROLLMENT_CODE", "enrollment code")?;
    let password = secret("WARD_PASSWORD", "new password (12 characters or more)")?;
    let passphrase = secret(
        "WARD_PASSPHRASE",
        "passphrase to protect this device's profile",
    )?;
    let (client, enrolled) = WardClient::enroll(EnrollParams {
        profile_dir: dir,
        passphrase: &passphrase,
        server_url: &args.server,
        ca_pem: &ca_pem,
        username,
        enrollment_code: &code,
        password: &password,
        device_name: &args.device_name,
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string(&enrolled)?);
    } else {
        println!(
            "Enrolled {} on device {}.",
            client.username(),
            enrolled.device_id
        );
        println!("Add this to your authenticator app (you need it to log in):");
        println!("  secret: {}", enrolled.totp_secret);
        println!("  {}", enrolled.otpauth_uri);
        println!("Profile: {}", dir.display());
    }
    Ok(())
}

/// `ward login`: renew the session of this profile's device, or, with `--server`, register
/// a new device of an enrolled account into a new profile.
#[derive(Args)]
pub struct LoginArgs {
    /// Register this machine as a new device: the server URL.
    #[arg(long, requires_all = ["username"])]
    server: Option<String>,
    /// With --server: the server's CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// With --server: expected SHA-256 fingerprint of that CA.
    #[arg(long, value_name = "FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// With --server: your username.
    #[arg(long)]
    username: Option<String>,
    /// With --server: a name for this device.
    #[arg(long, default_value = "ward cli")]
    device_name: String,
}

/// `ward login`.
pub async fn login(dir: &Path, args: LoginArgs, json: bool) -> anyhow::Result<()> {
    if let (Some(server), Some(user)) = (&args.server, &args.username) {
        let ca_path = args
            .ca_cert
            .as_ref()
            .context("--ca-cert FILE is required with --server")?;
        let ca_pem = std::fs::read_to_string(ca_path)
            .with_context(|| format!("cannot read {}", ca_path.display()))?;
        check_fingerprint(&ca_pem, args.ca_fingerprint.as_deref())?;
        let password = secret("WARD_PASSWORD", "password")?;
        let totp = secret("WARD_TOTP", "authenticator code")
            .ok()
            .filter(|t| !t.is_empty());
        let passphrase = secret(
            "WARD_PASSPHRASE",
            "passphrase to protect this device's profile",
        )?;
        let client = WardClient::register_device(
            EnrollParams {
                profile_dir: dir,
                passphrase: &passphrase,
                server_url: server,
                ca_pem: &ca_pem,
                username: username(user)?,
                enrollment_code: "",
                password: &password,
                device_name: &args.device_name,
            },
            totp,
        )
        .await?;
        if json {
            println!(
                "{}",
                serde_json::json!({"username": client.username(), "device_id": client.device_id()})
            );
        } else {
            println!(
                "Registered device {} for {}; members add it to your conversations when they next sync.",
                client.device_id(),
                client.username()
            );
        }
        return Ok(());
    }
    let mut client = open(dir)?;
    let password = secret("WARD_PASSWORD", "password")?;
    let totp = secret("WARD_TOTP", "authenticator code")
        .ok()
        .filter(|t| !t.is_empty());
    client.login(&password, totp).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"username": client.username(), "device_id": client.device_id()})
        );
    } else {
        println!(
            "Logged in as {} on device {}.",
            client.username(),
            client.device_id()
        );
    }
    Ok(())
}

/// `ward send`.
pub async fn send(dir: &Path, args: SendArgs, json: bool) -> anyhow::Result<()> {
    let target = match (&args.to, &args.conversation, &args.to_role) {
        (Some(u), None, None) => Some(Target::User(username(u)?)),
        (None, Some(c), None) => Some(Target::Conversation(conversation(c)?)),
        (None, None, Some(_)) => None,
        _ => bail!("give --to USERNAME, --conversation ID or --to-role NAME"),
    };
    let explicit_priority = args.priority.as_deref().map(priority).transpose()?;
    let priority = explicit_priority.unwrap_or(Priority::Routine);
    let patient = args.patient.patient()?;
    if let Some(name) = &args.template {
        let vars = crate::clinical_cmd::template_vars(&args.vars)?;
        let Some(target) = target else {
            bail!("--template sends to --to USERNAME or --conversation ID, not to a role");
        };
        let mut client = open(dir)?;
        let target = match patient {
            Some(p) => Target::Conversation(client.bind_patient_to(target, p).await?),
            None => target,
        };
        let sent = client
            .send_template(target, name, &vars, explicit_priority, args.confirm_phi)
            .await?;
        return print_sent(&sent, json);
    }
    let text = match args.text {
        Some(t) => t,
        None if !args.attach.is_empty() => String::new(),
        None => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .context("could not read the message from stdin")?;
            t.trim_end_matches('\n').to_owned()
        }
    };
    if text.trim().is_empty() && args.attach.is_empty() {
        bail!("the message is empty");
    }
    let (Some(target), None) = (target, &args.to_role) else {
        let role = args.to_role.as_deref().unwrap_or_default();
        for f in &args.attach {
            if !f.is_file() {
                bail!("cannot attach {}: no such file", f.display());
            }
        }
        return crate::role_cmd::send_to_role(
            dir,
            role,
            &text,
            &args.attach,
            priority,
            args.confirm_phi,
            json,
        )
        .await;
    };
    for f in &args.attach {
        if !f.is_file() {
            bail!("cannot attach {}: no such file", f.display());
        }
    }
    let mut client = open(dir)?;
    let target = match (patient, target) {
        (Some(p), target) => Target::Conversation(client.bind_patient_to(target, p).await?),
        (None, Target::User(u)) if args.attach.is_empty() => {
            let c = client
                .send_direct_covered(&u, &text, priority, args.confirm_phi)
                .await?;
            return crate::clinical_cmd::print_covered(&c, json);
        }
        (None, target) => target,
    };
    let sent = if args.attach.is_empty() {
        client
            .send_message(target, &text, priority, args.confirm_phi)
            .await?
    } else {
        let mut bar = crate::progress::Bar::new();
        let mut draw = bar.drawer();
        client
            .send_with_attachments(
                target,
                &text,
                &args.attach,
                priority,
                args.confirm_phi,
                draw.as_mut().map(|f| f as ProgressFn<'_>),
            )
            .await?
    };
    print_sent(&sent, json)
}

fn print_sent(sent: &ward_client::Sent, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&sent)?);
    } else {
        println!(
            "Sent message {} (seq {}) in conversation {}.",
            sent.message_id, sent.seq, sent.conversation_id
        );
        for a in &sent.attachments {
            println!("  attached {}", describe(a));
        }
    }
    Ok(())
}

fn describe(a: &ward_client::AttachmentInfo) -> String {
    let thumb = match &a.thumbnail {
        Some(t) => format!(", thumbnail {} bytes, blob {}", t.size, t.blob_id),
        None => String::new(),
    };
    format!(
        "{} ({}, {} bytes, blob {}{thumb})",
        a.file_name, a.media_type, a.size, a.blob_id
    )
}

/// Downloads a message's attachments into `dir`, each image's thumbnail beside it as
/// `NAME.thumb.jpg`. A thumbnail that cannot be fetched is a warning on stderr, not a failure:
/// the file itself was saved and verified.
async fn download_all(
    client: &WardClient,
    m: &StoredMessage,
    dir: &Path,
) -> anyhow::Result<Vec<ward_client::SavedAttachment>> {
    let mut bar = crate::progress::Bar::new();
    let mut draw = bar.drawer();
    let progress = draw.as_mut().map(|f| f as ProgressFn<'_>);
    let mut saved = client.download_attachments(m, dir, progress).await?;
    for (s, d) in saved.iter_mut().zip(&m.attachment_descriptors) {
        match client.save_thumbnail(d, &s.saved_path).await {
            Ok(p) => s.thumbnail_path = p,
            Err(e) => eprintln!(
                "warning: the thumbnail of {} was not saved: {e}",
                s.saved_path.display()
            ),
        }
    }
    Ok(saved)
}

/// One message; `saved` holds where its attachments were written to, in order (empty when
/// they were not downloaded).
fn print_message_with(m: &StoredMessage, saved: &[ward_client::SavedAttachment], json: bool) {
    let attachments = m.attachments();
    if json {
        let list: Vec<serde_json::Value> = attachments
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut v = serde_json::json!(a);
                if let Some(s) = saved.get(i) {
                    v["saved_path"] = s.saved_path.display().to_string().into();
                    if let Some(t) = &s.thumbnail_path {
                        v["thumbnail_path"] = t.display().to_string().into();
                    }
                }
                v
            })
            .collect();
        let mut v = serde_json::json!({
            "conversation_id": m.conversation_id, "message_id": m.message_id, "seq": m.seq,
            "sender": m.sender, "sent_at": m.sent_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "priority": m.priority, "text": m.text,
        });
        if !list.is_empty() {
            v["attachments"] = list.into();
        }
        println!("{v}");
    } else {
        let flag = if m.priority == "routine" {
            String::new()
        } else {
            format!("[{}] ", m.priority.to_uppercase())
        };
        println!(
            "{} {flag}{}: {}  ({} #{})",
            m.sent_at,
            m.sender,
            m.text,
            m.conversation_id,
            m.seq.unwrap_or(0)
        );
        for (i, a) in attachments.iter().enumerate() {
            match saved.get(i) {
                Some(s) => {
                    println!(
                        "  attachment {} saved to {}",
                        describe(a),
                        s.saved_path.display()
                    );
                    if let Some(t) = &s.thumbnail_path {
                        println!("    thumbnail saved to {}", t.display());
                    }
                }
                None => println!("  attachment {}", describe(a)),
            }
        }
    }
}

/// `ward sync`.
pub async fn sync(dir: &Path, args: SyncArgs, json: bool) -> anyhow::Result<()> {
    let mut client = open(dir)?;
    if let Some(d) = &args.download_dir {
        std::fs::create_dir_all(d)
            .with_context(|| format!("cannot create the download directory {}", d.display()))?;
    }
    if args.follow {
        let download_dir = args.download_dir.clone();
        client
            .follow_reports(move |client, report| {
                let download_dir = download_dir.clone();
                Box::pin(async move {
                    for m in &report.messages {
                        let saved = match &download_dir {
                            Some(d) if !m.attachment_descriptors.is_empty() => {
                                // A failed file does not stop following: said, and the
                                // message is still shown.
                                download_all(client, m, d).await.unwrap_or_else(|e| {
                                    eprintln!(
                                        "error: the attachments of message {} were not all \
                                         saved: {e}",
                                        m.message_id.map(|i| i.to_string()).unwrap_or_default()
                                    );
                                    Vec::new()
                                })
                            }
                            _ => Vec::new(),
                        };
                        print_message_with(m, &saved, json);
                    }
                    for a in &report.alerts {
                        crate::role_cmd::print_alert(a, json);
                    }
                })
            })
            .await?;
        return Ok(());
    }
    let report = client.sync().await?;
    let mut bannered = std::collections::BTreeSet::new();
    let mut failed = 0usize;
    for m in &report.messages {
        if let Some(p) = client.conversation_patient(m.conversation_id)
            && bannered.insert(m.conversation_id)
        {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "conversation_id": m.conversation_id,
                                        "patient": crate::clinical_cmd::patient_json(p) })
                );
            } else {
                println!("{}", crate::clinical_cmd::banner(p));
            }
        }
        let saved = match &args.download_dir {
            Some(d) if !m.attachment_descriptors.is_empty() => {
                match download_all(&client, m, d).await {
                    Ok(s) => s,
                    Err(e) => {
                        failed += 1;
                        eprintln!(
                            "error: the attachments of message {} (conversation {}, seq {}) \
                             were not all saved: {e}",
                            m.message_id.map(|i| i.to_string()).unwrap_or_default(),
                            m.conversation_id,
                            m.seq.unwrap_or(0)
                        );
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        print_message_with(m, &saved, json);
    }
    for a in &report.alerts {
        crate::role_cmd::print_alert(a, json);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for g in &report.break_glass {
        if json {
            println!("{}", serde_json::json!({ "break_glass": g }));
        } else {
            println!("{}", crate::breakglass_cmd::notice(g));
        }
    }
    if report.messages.is_empty() && report.alerts.is_empty() && !json {
        println!("No new messages.");
    }
    if failed > 0 {
        bail!("{failed} message(s) had attachments that could not be saved (see above)");
    }
    Ok(())
}

/// `ward conversations`.
pub async fn conversations(dir: &Path, json: bool) -> anyhow::Result<()> {
    let mut client = open(dir)?;
    let list = client.conversations().await?;
    if json {
        println!("{}", serde_json::json!({ "conversations": list }));
    } else if list.is_empty() {
        println!("No conversations.");
    } else {
        for c in list {
            let members: Vec<String> = c.members.iter().map(ToString::to_string).collect();
            println!(
                "{}\t{:?}\t{}\t{}",
                c.conversation_id,
                c.kind,
                c.name.clone().unwrap_or_default(),
                members.join(",")
            );
            if let Some(p) = &c.patient {
                println!("  {}", crate::clinical_cmd::banner(p));
            }
        }
    }
    Ok(())
}

/// `ward group …`.
pub async fn group(dir: &Path, cmd: GroupCommand, json: bool) -> anyhow::Result<()> {
    let mut client = open(dir)?;
    let names = |v: &[String]| {
        v.iter()
            .map(|m| username(m))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    match cmd {
        GroupCommand::Create {
            name,
            members,
            patient,
        } => {
            let id = match patient.patient()? {
                Some(p) => {
                    client
                        .create_patient_group(&name, &names(&members)?, p)
                        .await?
                }
                None => client.create_group(&name, &names(&members)?).await?,
            };
            if json {
                println!("{}", serde_json::json!({"conversation_id": id}));
            } else {
                println!("Created group {name:?}: {id}");
            }
        }
        GroupCommand::Add {
            conversation: c,
            members,
        } => {
            client
                .add_members(conversation(&c)?, &names(&members)?)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"conversation_id": c, "added": members})
                );
            } else {
                println!("Added {}.", members.join(", "));
            }
        }
        GroupCommand::Remove {
            conversation: c,
            members,
        } => {
            client
                .remove_members(conversation(&c)?, &names(&members)?)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"conversation_id": c, "removed": members})
                );
            } else {
                println!("Removed {}.", members.join(", "));
            }
        }
    }
    Ok(())
}

fn message_id(s: &str) -> anyhow::Result<MessageId> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a message id (a UUID)"))
}

/// `ward download`.
pub async fn download(dir: &Path, id: &str, out: &Path, json: bool) -> anyhow::Result<()> {
    let client = open(dir)?;
    let id = message_id(id)?;
    let m = client
        .history()
        .iter()
        .find(|m| m.message_id == Some(id))
        .cloned()
        .with_context(|| format!("message {id} is not in this device's history"))?;
    if m.attachment_descriptors.is_empty() {
        bail!("message {id} has no attachments");
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the download directory {}", out.display()))?;
    let saved = download_all(&client, &m, out).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "message_id": id, "attachments": saved })
        );
    } else {
        for s in saved {
            println!("{} saved to {}", describe(&s.info), s.saved_path.display());
            if let Some(t) = &s.thumbnail_path {
                println!("  thumbnail saved to {}", t.display());
            }
        }
    }
    Ok(())
}

/// `ward read`.
pub async fn read(dir: &Path, id: &str, json: bool) -> anyhow::Result<()> {
    let mut client = open(dir)?;
    let id = message_id(id)?;
    client.mark_read(id).await?;
    if json {
        println!("{}", serde_json::json!({"message_id": id, "read": true}));
    } else {
        println!("Marked {id} as read.");
    }
    Ok(())
}

/// `ward status`.
pub async fn passwd(dir: &Path, json: bool) -> anyhow::Result<()> {
    let mut client = open(dir)?;
    let current = Zeroizing::new(secret("WARD_PASSWORD", "current password")?);
    let new = match std::env::var("WARD_NEW_PASSWORD") {
        Ok(v) => Zeroizing::new(v),
        Err(_) => {
            let first = Zeroizing::new(secret("WARD_NEW_PASSWORD", "new password")?);
            let again = Zeroizing::new(secret("WARD_NEW_PASSWORD", "new password again")?);
            if *first != *again {
                bail!("the two new passwords differ; nothing was changed");
            }
            first
        }
    };
    let ended = client.change_password(&current, &new).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"changed": true, "sessions_ended": ended})
        );
    } else {
        println!("Password changed; {ended} session(s) on other devices ended.");
    }
    Ok(())
}
