//! `ward compliance …`: the compliance officer's offline tools for the journal (ADR 0010).
//!
//! - `keygen --out DIR` makes the organisation's journal key pair: `DIR/journal-private.key`
//!   (the secret, encrypted under `WARD_JOURNAL_PASSPHRASE` or a prompted passphrase, mode
//!   0600) and `DIR/journal-public.json` (to install with `ward admin org set-journal-key`).
//! - `export --key FILE… --data DIR [filters] --out DIR` reads the journal archive straight
//!   from the server's database, opens every copy one of the keys can open (several `--key`
//!   for copies made before a rotation), and writes per conversation `<id>.json` and a
//!   human-readable `<id>.html` transcript. Every export is written to the audit log
//!   (`compliance.export`: filters and counts, never content).
//!
//! Decryption happens here, on the officer's machine; the server never holds a journal private
//! key. `--server URL` instead downloads the archive (ciphertext) over
//! `GET /v1/compliance/journal` with the compliance account of `--profile`; the server audits
//! every page it serves (`journal.archive_read`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use ward_core::attachment::AttachmentDescriptor;
use ward_core::journal::{JournalKeyPair, JournalPublicKey};
use ward_core::{Body, MessageContent, PatientContext};
use ward_proto::{ConversationId, Role, UserId, Username};
use ward_server::Services;
use ward_server::service::Actor;
use ward_store::JournalQuery;

/// File names `keygen` writes.
pub const PRIVATE_KEY_FILE: &str = "journal-private.key";
/// See [`PRIVATE_KEY_FILE`].
pub const PUBLIC_KEY_FILE: &str = "journal-public.json";
/// Archive entries read per database query.
const PAGE: usize = 500;

/// `ward compliance …`.
#[derive(Subcommand)]
pub enum ComplianceCommand {
    /// Make the organisation's journal key pair (offline). The passphrase comes from
    /// WARD_JOURNAL_PASSPHRASE or a prompt.
    Keygen {
        /// Directory to write journal-private.key and journal-public.json into (created 0700).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Decrypt the journal archive offline into JSON and HTML transcripts per conversation.
    Export(Box<ExportArgs>),
    /// Find every conversation about a patient: download the blinded patient index with the
    /// compliance account of --profile (audited) and open it offline with the journal key.
    PatientSearch(crate::clinical_cmd::PatientSearchArgs),
}

/// `ward compliance export`.
#[derive(Args)]
pub struct ExportArgs {
    /// A journal private key file (repeat for keys used before a rotation).
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    /// The server's data directory (SQLite at DIR/ward.db unless --database-url).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Database URL (sqlite://PATH or postgres://…).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Download the archive from this server with the compliance account of `--profile`
    /// (its passphrase from WARD_PASSPHRASE); the server audits every page.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only messages sent by this user.
    #[arg(long, value_name = "USERNAME")]
    user: Option<String>,
    /// Only this conversation.
    #[arg(long, value_name = "ID")]
    conversation: Option<String>,
    /// Only messages the server accepted at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only messages the server accepted before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only messages about this patient: the identifier value, or `system|value`.
    #[arg(long, value_name = "REF")]
    patient: Option<String>,
    /// Output directory (created 0700; must be empty if it exists).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The public key file `keygen` writes.
#[derive(Serialize, Deserialize)]
pub struct PublicKeyFile {
    /// Key id.
    pub key_id: String,
    /// HPKE suite, for people reading the file.
    pub suite: String,
    /// The X-Wing public key, standard base64.
    pub public_key: String,
}

/// One exported message.
#[derive(Serialize)]
struct ExportedMessage {
    message_id: String,
    seq: u64,
    server_time: String,
    sender_sent_at_ms: i64,
    sender_user_id: UserId,
    sender_username: Option<String>,
    sender_device_id: String,
    priority: String,
    text: Option<String>,
    patient: Option<PatientJson>,
    journal_key_id: String,
    /// The message's attachments, fetched, verified and decrypted into
    /// `attachments/<message_id>/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<ExportedAttachment>,
    #[serde(skip)]
    descriptors: Vec<AttachmentDescriptor>,
}

/// One attachment of an exported message (never its key).
#[derive(Serialize)]
struct ExportedAttachment {
    file_name: String,
    media_type: String,
    size: u64,
    blob_id: String,
    ciphertext_sha256: String,
    /// Where the decrypted file is, relative to the output directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// Why the file is not in the export.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct PatientJson {
    system: String,
    value: String,
    display: Option<String>,
    birth_date: Option<String>,
}

/// Run a compliance command.
pub async fn run(cmd: ComplianceCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    match cmd {
        ComplianceCommand::Keygen { out } => keygen(&out, json),
        ComplianceCommand::Export(args) => export(*args, profile, json).await,
        ComplianceCommand::PatientSearch(args) => {
            crate::clinical_cmd::patient_search(args, profile, json).await
        }
    }
}

fn passphrase(prompt: &str) -> anyhow::Result<String> {
    crate::client_cmd::secret("WARD_JOURNAL_PASSPHRASE", prompt)
}

fn keygen(out: &Path, json: bool) -> anyhow::Result<()> {
    let private = out.join(PRIVATE_KEY_FILE);
    let public = out.join(PUBLIC_KEY_FILE);
    if private.exists() || public.exists() {
        bail!(
            "{} already holds a journal key; choose another directory (keys are never overwritten)",
            out.display()
        );
    }
    let pass = passphrase("journal key passphrase")?;
    if pass.chars().count() < ward_client::JOURNAL_PASSPHRASE_MIN {
        bail!(
            "the journal key passphrase must be at least {} characters",
            ward_client::JOURNAL_PASSPHRASE_MIN
        );
    }
    ward_server::create_private_dir(out)?;
    let pair = JournalKeyPair::generate(&mut rand::rngs::OsRng)?;
    ward_client::write_journal_key_file(&private, &pair, &pass)?;
    let file = PublicKeyFile {
        key_id: pair.public().key_id().to_owned(),
        suite: "HPKE base: X-Wing (0x647A), HKDF-SHA256, ChaCha20-Poly1305".to_owned(),
        public_key: base64::engine::general_purpose::STANDARD.encode(pair.public().as_bytes()),
    };
    std::fs::write(&public, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write {}", public.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"key_id": file.key_id, "private_key_file": private, "public_key_file": public})
        );
    } else {
        println!("Journal key {} created.", file.key_id);
        println!("Private key (keep offline): {}", private.display());
        println!(
            "Public key (install with `ward admin org set-journal-key`): {}",
            public.display()
        );
    }
    Ok(())
}

/// Reads and checks a public key file written by `keygen`.
pub fn read_public_key_file(path: &Path) -> anyhow::Result<JournalPublicKey> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: PublicKeyFile = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a journal public key file (written by `ward compliance keygen`)",
            path.display()
        )
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file.public_key.trim())
        .with_context(|| format!("{}: public_key is not base64", path.display()))?;
    let key = JournalPublicKey::from_bytes(bytes)
        .with_context(|| format!("{} holds no valid journal key", path.display()))?;
    if key.key_id() != file.key_id {
        bail!(
            "{}: key_id {} does not match the key (its id is {})",
            path.display(),
            file.key_id,
            key.key_id()
        );
    }
    Ok(key)
}

async fn export(a: ExportArgs, profile: &Path, json: bool) -> anyhow::Result<()> {
    // Check every input before touching the database or the output directory.
    let parse_time = |s: &Option<String>, flag: &str| -> anyhow::Result<Option<OffsetDateTime>> {
        s.as_deref()
            .map(|t| {
                OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                    anyhow::anyhow!(
                        "--{flag} {t:?} is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z)"
                    )
                })
            })
            .transpose()
    };
    let since = parse_time(&a.since, "since")?;
    let until = parse_time(&a.until, "until")?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        bail!("--since must be before --until");
    }
    let conversation = a
        .conversation
        .as_deref()
        .map(|c| {
            c.parse::<ConversationId>().map_err(|_| {
                anyhow::anyhow!("--conversation {c:?} is not a conversation id (a UUID)")
            })
        })
        .transpose()?;
    let username = a
        .user
        .as_deref()
        .map(|u| Username::parse(u).map_err(|e| anyhow::anyhow!("--user: {e}")))
        .transpose()?;
    if let Some(p) = &a.patient
        && p.trim().is_empty()
    {
        bail!("--patient must not be empty");
    }
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .with_context(|| format!("cannot read {}", a.out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; export into a new directory",
            a.out.display()
        );
    }
    let pass = passphrase("journal key passphrase")?;
    let mut keys: BTreeMap<String, JournalKeyPair> = BTreeMap::new();
    for path in &a.keys {
        let pair = ward_client::read_journal_key_file(path, &pass)
            .with_context(|| format!("cannot open the journal key {}", path.display()))?;
        keys.insert(pair.public().key_id().to_owned(), pair);
    }

    let mut source = Source::open(&a, profile).await?;
    let installed = source.installed_keys().await?;
    for id in keys.keys() {
        if !installed.contains(id) {
            bail!(
                "journal key {id} is not a journal key of this organisation (installed: {}); \
                 wrong key file?",
                if installed.is_empty() {
                    "none".to_owned()
                } else {
                    installed.join(", ")
                }
            );
        }
    }
    let filter = Filter {
        conversation,
        user: username.clone(),
        since,
        until,
    };
    let mut after = 0;
    let mut by_conversation: BTreeMap<ConversationId, Vec<ExportedMessage>> = BTreeMap::new();
    let (mut exported, mut other_key, mut unopened, mut sender_mismatch) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let page = source.page(after, &filter).await?;
        let Some(last) = page.last() else { break };
        after = last.archive_seq;
        for entry in page {
            let Some(pair) = keys.get(&entry.copy.key_id) else {
                other_key += 1;
                continue;
            };
            let Ok(record) = pair.open(entry.copy.ciphertext.as_slice()) else {
                unopened += 1;
                continue;
            };
            if record.sender_user_id != entry.sender_user_id
                || record.sender_device_id != entry.sender_device_id
                || record.conversation_id != entry.conversation_id
            {
                sender_mismatch += 1;
                continue;
            }
            let Ok(content) = MessageContent::from_bytes(&record.content) else {
                unopened += 1;
                continue;
            };
            if let Some(p) = &a.patient
                && !patient_matches(content.patient.as_ref(), p)
            {
                continue;
            }
            by_conversation
                .entry(entry.conversation_id)
                .or_default()
                .push(ExportedMessage {
                    message_id: entry.message_id.to_string(),
                    seq: entry.seq,
                    server_time: entry.sent_at.format(&Rfc3339).unwrap_or_default(),
                    sender_sent_at_ms: content.sent_at_ms,
                    sender_user_id: entry.sender_user_id,
                    sender_username: entry.sender_username.as_ref().map(|u| u.to_string()),
                    sender_device_id: entry.sender_device_id.to_string(),
                    priority: content.priority.as_str().to_owned(),
                    text: match &content.body {
                        Body::Text { text } => Some(text.clone()),
                        Body::Unsupported => None,
                    },
                    patient: content.patient.as_ref().map(|p| PatientJson {
                        system: p.system.clone(),
                        value: p.value.clone(),
                        display: p.display.clone(),
                        birth_date: p.birth_date.clone(),
                    }),
                    journal_key_id: entry.copy.key_id.clone(),
                    attachments: Vec::new(),
                    descriptors: content.attachments.clone(),
                });
            exported += 1;
        }
    }

    ward_server::create_private_dir(&a.out)?;
    let (mut files, mut files_missing) = (0u64, 0u64);
    for messages in by_conversation.values_mut() {
        for m in messages.iter_mut() {
            if m.descriptors.is_empty() {
                continue;
            }
            let rel = Path::new("attachments").join(&m.message_id);
            let dir = a.out.join(&rel);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for d in std::mem::take(&mut m.descriptors) {
                let saved = source.save_attachment(&d, &dir).await;
                let (path, error) = match saved {
                    Ok(p) => {
                        files += 1;
                        let name = p.file_name().map(|n| rel.join(n));
                        (name.map(|n| n.to_string_lossy().into_owned()), None)
                    }
                    Err(e) => {
                        files_missing += 1;
                        (None, Some(e))
                    }
                };
                m.attachments.push(ExportedAttachment {
                    file_name: d.file_name.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                    blob_id: d.blob_id.to_string(),
                    ciphertext_sha256: d.ciphertext_sha256.clone(),
                    path,
                    error,
                });
            }
        }
    }
    for (id, messages) in &by_conversation {
        let doc = serde_json::json!({ "conversation_id": id, "messages": messages });
        let json_path = a.out.join(format!("{id}.json"));
        std::fs::write(&json_path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", json_path.display()))?;
        let html_path = a.out.join(format!("{id}.html"));
        std::fs::write(&html_path, transcript_html(*id, messages))
            .with_context(|| format!("cannot write {}", html_path.display()))?;
    }
    let details = serde_json::json!({
        "filters": {
            "user": username.as_ref().map(|u| u.to_string()),
            "conversation": conversation,
            "since": a.since, "until": a.until,
            "patient": a.patient.is_some(),
        },
        "key_ids": keys.keys().collect::<Vec<_>>(),
        "messages": exported,
        "conversations": by_conversation.len(),
        "other_key": other_key,
        "unopened": unopened,
        "sender_mismatch": sender_mismatch,
        "attachments": files,
        "attachments_missing": files_missing,
    });
    source.audit_export(details.clone()).await?;
    if json {
        println!("{details}");
    } else {
        println!(
            "Exported {exported} messages in {} conversations and {files} attachments to {}.",
            by_conversation.len(),
            a.out.display()
        );
        if files_missing > 0 {
            println!(
                "{files_missing} attachments could not be exported (see `error` in the JSON): \
                 retention or erasure deleted their blobs, or they failed verification."
            );
        }
        if other_key + unopened + sender_mismatch > 0 {
            println!(
                "Not exported: {other_key} sealed to other journal keys (add their --key), \
                 {unopened} that did not open, {sender_mismatch} whose sender does not match."
            );
        }
    }
    Ok(())
}

/// The local CLI acting for the compliance officer (it holds the database and master key).
fn compliance_actor() -> Actor {
    Actor {
        role: Role::Compliance,
        ..Actor::cli()
    }
}

/// Archive filters, applied by the database or the server.
struct Filter {
    conversation: Option<ConversationId>,
    user: Option<Username>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
}

/// Where the archive comes from: the server's database (`--data`, as the operator with the
/// master key), or the API with a compliance session (`--server`, the server audits each page).
enum Source {
    Data { services: Arc<Services> },
    Server(Box<ward_client::WardClient>),
}

impl Source {
    async fn open(a: &ExportArgs, profile: &Path) -> anyhow::Result<Source> {
        let local = a.data.is_some() || a.database_url.is_some() || a.config.is_some();
        match (&a.server, local) {
            (Some(_), true) => bail!("use either --server or --data/--database-url, not both"),
            (None, false) => {
                bail!(
                    "say where the archive is: --data DIR (or --database-url URL) or --server URL"
                )
            }
            (Some(url), false) => {
                let pass = crate::client_cmd::secret("WARD_PASSPHRASE", "profile passphrase")?;
                let client = ward_client::WardClient::open(profile, &pass)?;
                if client.server_url().trim_end_matches('/') != url.trim_end_matches('/') {
                    bail!(
                        "the profile {} belongs to {}, not {url}; pass --profile of a \
                         compliance account on that server",
                        profile.display(),
                        client.server_url()
                    );
                }
                Ok(Source::Server(Box::new(client)))
            }
            (None, true) => {
                let loc = crate::Location {
                    config: a.config.clone(),
                    data: a.data.clone(),
                    database_url: a.database_url.clone(),
                };
                Ok(Source::Data {
                    services: crate::open_services(&loc).await?,
                })
            }
        }
    }

    async fn installed_keys(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Source::Data { services, .. } => services
                .store
                .journal_keys()
                .await?
                .into_iter()
                .map(|k| k.key_id)
                .collect(),
            Source::Server(client) => client.journal_key_ids().await?,
        })
    }

    async fn page(
        &mut self,
        after: u64,
        f: &Filter,
    ) -> anyhow::Result<Vec<ward_proto::JournalArchiveEntry>> {
        match self {
            Source::Server(client) => Ok(client
                .journal_archive(
                    after,
                    PAGE,
                    f.conversation,
                    f.user.as_ref(),
                    f.since.map(OffsetDateTime::unix_timestamp),
                    f.until.map(OffsetDateTime::unix_timestamp),
                )
                .await?
                .entries),
            Source::Data { services } => {
                let sender_user_id = match &f.user {
                    Some(u) => Some(
                        services
                            .store
                            .user_by_name(u)
                            .await?
                            .ok_or_else(|| anyhow::anyhow!("--user: no user {u}"))?
                            .id,
                    ),
                    None => None,
                };
                let rows = services
                    .store
                    .journal_entries(&JournalQuery {
                        after,
                        limit: PAGE,
                        conversation_id: f.conversation,
                        sender_user_id,
                        since: f.since,
                        until: f.until,
                    })
                    .await?;
                services
                    .archive_entries(rows)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message))
            }
        }
    }

    /// Fetches one attachment's ciphertext, verifies and decrypts it into `dir` (nothing is
    /// left there on failure); the server audits the read (`blob.download`, compliance
    /// access). The error is a sentence for the export's JSON, without the file name.
    async fn save_attachment(
        &self,
        d: &AttachmentDescriptor,
        dir: &Path,
    ) -> Result<PathBuf, String> {
        d.validate()
            .map_err(|e| format!("invalid attachment descriptor: {e}"))?;
        match self {
            Source::Server(client) => client
                .download_attachment(d, dir, None)
                .await
                .map_err(|e| e.to_string()),
            Source::Data { services } => {
                let download = services
                    .export_blob(&compliance_actor(), d.blob_id, None)
                    .await
                    .map_err(|e| e.message)?;
                ward_client::decrypt_stream_to_dir(d, download.body, dir)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Data mode writes `compliance.export` into the database's audit log itself; in server
    /// mode the server has recorded every page it served (`journal.archive_read`).
    async fn audit_export(&self, details: serde_json::Value) -> anyhow::Result<()> {
        if let Source::Data { services, .. } = self {
            services
                .audit
                .record(&compliance_actor(), "compliance.export", None, details)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            services.audit.checkpoint().await.ok();
        }
        Ok(())
    }
}

fn patient_matches(patient: Option<&PatientContext>, wanted: &str) -> bool {
    let Some(p) = patient else { return false };
    match wanted.split_once('|') {
        Some((system, value)) => p.system == system && p.value == value,
        None => p.value == wanted,
    }
}

/// A self-contained HTML transcript. Every value is escaped: message text is untrusted input
/// and must not become markup in the officer's browser.
fn transcript_html(id: ConversationId, messages: &[ExportedMessage]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>Ward journal: conversation {id}</title>\
         <style>body{{font-family:sans-serif}}td,th{{border:1px solid #999;padding:4px;vertical-align:top}}\
         table{{border-collapse:collapse}}.text{{white-space:pre-wrap}}</style></head><body>\n\
         <h1>Conversation {id}</h1>\n<p>{} messages, decrypted from the compliance journal.</p>\n\
         <table><tr><th>Seq</th><th>Server time</th><th>Sender</th><th>Priority</th>\
         <th>Patient</th><th>Message</th></tr>\n",
        messages.len()
    );
    for m in messages {
        let sender = m
            .sender_username
            .clone()
            .unwrap_or_else(|| m.sender_user_id.to_string());
        let patient = m
            .patient
            .as_ref()
            .map(|p| {
                format!(
                    "{} ({}|{})",
                    p.display.clone().unwrap_or_default(),
                    p.system,
                    p.value
                )
            })
            .unwrap_or_default();
        let text = m
            .text
            .clone()
            .unwrap_or_else(|| "[a message type this version cannot show]".to_owned());
        let mut files = String::new();
        for f in &m.attachments {
            match &f.path {
                Some(p) => {
                    let _ = write!(
                        files,
                        "<br>📎 <a href=\"{}\">{}</a> ({}, {} bytes)",
                        escape(p),
                        escape(&f.file_name),
                        escape(&f.media_type),
                        f.size
                    );
                }
                None => {
                    let _ = write!(
                        files,
                        "<br>📎 {} ({}, {} bytes): not exported: {}",
                        escape(&f.file_name),
                        escape(&f.media_type),
                        f.size,
                        escape(f.error.as_deref().unwrap_or(""))
                    );
                }
            }
        }
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}<br><small>device {}</small></td><td>{}</td>\
             <td>{}</td><td class=\"text\">{}{}</td></tr>",
            m.seq,
            escape(&m.server_time),
            escape(&sender),
            escape(&m.sender_device_id),
            escape(&m.priority),
            escape(&patient),
            escape(&text),
            files
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

/// HTML-escapes text for element content and quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_everything() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn patient_filter_by_value_or_system_and_value() {
        let p = PatientContext {
            system: "urn:mrn".into(),
            value: "123".into(),
            display: None,
            birth_date: None,
        };
        assert!(patient_matches(Some(&p), "123"));
        assert!(patient_matches(Some(&p), "urn:mrn|123"));
        assert!(!patient_matches(Some(&p), "other|123"));
        assert!(!patient_matches(None, "123"));
    }
}
