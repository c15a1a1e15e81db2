//! Patient context, templates and the patient search (ADR 0019):
//! - `--patient-system/--patient-mrn/--patient-name/--patient-birth-date` on `ward group
//!   create` and `ward send` bind the conversation to a patient (inside MLS) and store a
//!   sealed tag in the server's blinded index; clients show a patient banner;
//! - `ward send --template NAME --var KEY=VALUE …` renders an organisation template;
//! - `ward admin template create|list|delete` on the database directly, like every `ward
//!   admin` command;
//! - `ward compliance patient-search --key FILE… --identifier SYSTEM|VALUE` downloads the
//!   index with the compliance account of `--profile` (audited) and opens it offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ward_core::PatientContext;
use ward_core::patient_index::PatientIdentifier;
use ward_proto::{CreateTemplateRequest, TemplateName, TemplatePriority};
use ward_server::service::{Actor, Services};

use crate::{api, print};

/// Patient flags of `ward group create` and `ward send`.
#[derive(Args, Clone, Default)]
pub struct PatientArgs {
    /// Identifier system of the MRN (an absolute URI such as urn:oid:… or
    /// https://hospital.example/mrn); default from WARD_PATIENT_ID_SYSTEM.
    #[arg(long, value_name = "URI", env = "WARD_PATIENT_ID_SYSTEM")]
    pub patient_system: Option<String>,
    /// The patient's identifier (e.g. the MRN): binds the conversation to this patient.
    #[arg(long, value_name = "ID")]
    pub patient_mrn: Option<String>,
    /// The patient's name, shown in the banner.
    #[arg(long, value_name = "NAME", requires = "patient_mrn")]
    pub patient_name: Option<String>,
    /// The patient's birth date, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", requires = "patient_mrn")]
    pub patient_birth_date: Option<String>,
}

impl PatientArgs {
    /// The validated patient, or `None` without `--patient-mrn`.
    pub fn patient(&self) -> anyhow::Result<Option<PatientContext>> {
        let Some(mrn) = &self.patient_mrn else {
            return Ok(None);
        };
        let system = self.patient_system.as_deref().context(
            "--patient-mrn needs the identifier system: --patient-system URI \
             (or WARD_PATIENT_ID_SYSTEM), e.g. urn:oid:1.2.36.146.595.217.0.1",
        )?;
        let today = time::OffsetDateTime::now_utc().date();
        PatientContext::new(
            system,
            mrn,
            self.patient_name.as_deref(),
            self.patient_birth_date.as_deref(),
            today,
        )
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The one-line patient banner shown above a conversation's messages.
pub fn banner(p: &PatientContext) -> String {
    let mut s = String::from("== Patient: ");
    s.push_str(p.display.as_deref().unwrap_or("(no name)"));
    if let Some(b) = &p.birth_date {
        s.push_str(&format!(" | born {b}"));
    }
    s.push_str(&format!(" | {}|{} ==", p.system, p.value));
    s
}

/// The patient as JSON for `--json` output.
pub fn patient_json(p: &PatientContext) -> serde_json::Value {
    serde_json::json!({
        "system": p.system, "value": p.value, "display": p.display, "birth_date": p.birth_date,
    })
}

/// Parses repeated `--var KEY=VALUE`.
pub fn template_vars(vars: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in vars {
        let (k, val) = v
            .split_once('=')
            .with_context(|| format!("--var {v:?} must be KEY=VALUE, e.g. --var room=12"))?;
        if out.insert(k.trim().to_owned(), val.to_owned()).is_some() {
            bail!("--var {} is given twice", k.trim());
        }
    }
    Ok(out)
}

/// `ward admin template …`.
#[derive(Subcommand)]
pub(crate) enum TemplateCommand {
    /// Define a message template, e.g. `code-blue --text "Code Blue, room {room}" --priority
    /// stat`. `{name}` is a variable the sender fills in with --var name=VALUE; {{ and }} are
    /// literal braces. Templates are organisation configuration: put no patient data in them.
    Create {
        /// Name: a-z, 0-9 and '-'.
        name: String,
        /// Text with {variables}.
        #[arg(long)]
        text: String,
        /// routine, urgent or stat.
        #[arg(long, default_value = "routine")]
        priority: String,
    },
    /// List templates.
    List,
    /// Delete a template.
    Delete {
        /// Name.
        name: String,
    },
}

fn template_name(s: &str) -> anyhow::Result<TemplateName> {
    TemplateName::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) async fn template(
    services: &Services,
    actor: &Actor,
    cmd: TemplateCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match cmd {
        TemplateCommand::Create {
            name,
            text,
            priority,
        } => {
            let priority = TemplatePriority::parse(&priority).with_context(|| {
                format!("priority {priority:?} is not one of routine, urgent, stat")
            })?;
            let t = services
                .create_template(
                    actor,
                    CreateTemplateRequest {
                        name: template_name(&name)?,
                        text,
                        priority,
                    },
                )
                .await
                .map_err(api)?;
            print(
                json,
                serde_json::to_value(&t)?,
                format!(
                    "Template {} created ({}; variables: {}).",
                    t.name,
                    t.priority.as_str(),
                    if t.variables.is_empty() {
                        "none".to_owned()
                    } else {
                        t.variables.join(", ")
                    }
                ),
            );
        }
        TemplateCommand::List => {
            let list = services.templates(actor).await.map_err(api)?;
            let text = if list.is_empty() {
                "No templates.".to_owned()
            } else {
                list.iter()
                    .map(|t| format!("{}\t{}\t{}", t.name, t.priority.as_str(), t.text))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            print(json, serde_json::json!({ "templates": list }), text);
        }
        TemplateCommand::Delete { name } => {
            let name = template_name(&name)?;
            services.delete_template(actor, &name).await.map_err(api)?;
            print(
                json,
                serde_json::json!({ "deleted": name }),
                format!("Template {name} deleted."),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ward compliance patient-search`.
#[derive(Args)]
pub struct PatientSearchArgs {
    /// A journal private key file (repeat for keys used before a rotation).
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    /// The patient identifier as SYSTEM|VALUE, e.g. urn:oid:1.2.3|MRN-001.
    #[arg(long, value_name = "SYSTEM|VALUE")]
    identifier: String,
}

/// Downloads the patient index (audited) and lists the conversations about the patient.
pub async fn patient_search(
    a: PatientSearchArgs,
    profile: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let identifier = PatientIdentifier::parse_token(&a.identifier)
        .map_err(|e| anyhow::anyhow!("--identifier: {e}"))?;
    let pass = crate::client_cmd::secret("WARD_JOURNAL_PASSPHRASE", "journal key passphrase")?;
    let mut keys = Vec::new();
    for path in &a.keys {
        keys.push(
            ward_client::read_journal_key_file(path, &pass)
                .with_context(|| format!("cannot open the journal key {}", path.display()))?,
        );
    }
    let client = crate::client_cmd::open(profile)?;
    let found = client.search_patient(&keys, &identifier).await?;
    if json {
        println!("{}", serde_json::to_string(&found)?);
    } else {
        if found.conversations.is_empty() {
            println!("No conversation about this patient.");
        }
        for c in &found.conversations {
            println!("{c}");
        }
        eprintln!(
            "{} index entries examined; {} sealed to other keys; {} did not open.",
            found.examined, found.other_key, found.unopened
        );
    }
    Ok(())
}

/// `ward dnd …`.
#[derive(Subcommand)]
pub enum DndCommand {
    /// Turn do-not-disturb on: role messages and direct messages to you reach --cover.
    On {
        /// The covering colleague (username).
        #[arg(long)]
        cover: String,
        /// When it ends by itself (RFC 3339, e.g. 2026-12-03T19:00:00Z).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Turn do-not-disturb off.
    Off,
    /// Show a user's do-not-disturb (default: yours), as the directory shows it.
    Show {
        /// Username.
        user: Option<String>,
    },
}

fn dnd_text(d: &ward_proto::DndInfo) -> String {
    let mut s = format!("{} is on do-not-disturb; {} covers", d.username, d.cover);
    if d.effective_cover != d.cover {
        s.push_str(&format!(
            " (away too: messages reach {})",
            d.effective_cover
        ));
    }
    match d.until {
        Some(u) => s.push_str(&format!(" until {u}.")),
        None => s.push_str(" until it is turned off."),
    }
    s
}

/// `ward dnd …`.
pub async fn dnd(profile: &Path, cmd: DndCommand, json: bool) -> anyhow::Result<()> {
    let client = crate::client_cmd::open(profile)?;
    match cmd {
        DndCommand::On { cover, until } => {
            let until = until
                .as_deref()
                .map(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "--until {t:?} is not an RFC 3339 time (e.g. 2026-12-03T19:00:00Z)"
                            )
                        })
                })
                .transpose()?;
            let info = client
                .set_dnd(&crate::client_cmd::username(&cover)?, until)
                .await?;
            print(json, serde_json::to_value(&info)?, dnd_text(&info));
        }
        DndCommand::Off => {
            client.clear_dnd().await?;
            print(
                json,
                serde_json::json!({ "do_not_disturb": false }),
                "Do-not-disturb is off.".into(),
            );
        }
        DndCommand::Show { user } => {
            let user = match user {
                Some(u) => crate::client_cmd::username(&u)?,
                None => client.username().clone(),
            };
            let entry = client.directory_entry(&user).await?;
            print(
                json,
                serde_json::json!({ "username": user, "do_not_disturb": entry.do_not_disturb }),
                entry
                    .do_not_disturb
                    .as_ref()
                    .map_or_else(|| format!("{user} is not on do-not-disturb."), dnd_text),
            );
        }
    }
    Ok(())
}

/// After a direct send: tell the sender who covers.
pub fn print_covered(c: &ward_client::CoveredSend, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(c)?);
        return Ok(());
    }
    println!(
        "Sent message {} (seq {}) in conversation {}.",
        c.sent.message_id, c.sent.seq, c.sent.conversation_id
    );
    if let Some(d) = &c.do_not_disturb {
        println!("{}", dnd_text(d));
        if let Some(s) = &c.cover_sent {
            println!(
                "Also sent to {} (message {} in conversation {}).",
                d.effective_cover, s.message_id, s.conversation_id
            );
        }
    }
    Ok(())
}
