//! Attachment blobs over HTTP (ADR 0015, the contract in `ward_proto::blobs`): resumable
//! upload of a prepared ciphertext file in parts, and ranged download streamed into
//! [`decrypt_to_dir`].
//!
//! Memory stays bounded whatever the file size: an upload holds one part (at most
//! [`MAX_PART_BYTES`]), a download a few network chunks in a bounded channel plus the
//! decryptor's one chunk. Nothing but ciphertext leaves this process.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use ward_core::attachment::AttachmentDescriptor;
use ward_proto::{
    BlobUpload, BlobUploadState, CompleteBlobRequest, ConversationId, CreateBlobRequest, ErrorCode,
};

use crate::attachments::{AttachmentFileError, PreparedAttachment, decrypt_to_dir};
use crate::{AttachmentInfo, StoredMessage, WardClient, WardError};

/// The most bytes one upload `PUT` carries, whatever larger part size the server allows: it
/// bounds the memory an upload needs.
pub const MAX_PART_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes asked for by one ranged download `GET`.
const RANGE_BYTES: u64 = 8 * 1024 * 1024;
/// Network chunks buffered between the download and the decryptor.
const CHANNEL_CHUNKS: usize = 8;
/// Consecutive network failures tolerated (each followed by asking the server where to
/// resume) before a transfer gives up.
const MAX_RETRIES: u32 = 4;
/// Time one part or range may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Which way an attachment is moving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ciphertext going to the server.
    Upload,
    /// Ciphertext coming from the server.
    Download,
}

/// Progress of one attachment transfer, reported after every part or network chunk.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Which way.
    pub direction: Direction,
    /// The attachment's file name (show it only to the user; it can be PHI).
    pub file_name: &'a str,
    /// Ciphertext bytes transferred so far (including what an earlier attempt sent).
    pub done: u64,
    /// Ciphertext bytes in all.
    pub total: u64,
}

/// A progress callback.
pub type ProgressFn<'a> = &'a mut (dyn FnMut(&Progress<'_>) + Send);

/// An attachment saved by [`WardClient::download_attachments`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct SavedAttachment {
    /// What it is.
    #[serde(flatten)]
    pub info: AttachmentInfo,
    /// Where it was written.
    pub saved_path: PathBuf,
    /// Where its thumbnail was written, if it has one and it was fetched
    /// ([`WardClient::save_thumbnail`]; [`WardClient::download_attachments`] leaves it `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_path: Option<PathBuf>,
}

/// Lends the callback for one transfer of several (the trait object's lifetime shortens).
pub(crate) fn lend<'s>(progress: &'s mut Option<ProgressFn<'_>>) -> Option<ProgressFn<'s>> {
    match progress {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

fn report(progress: &mut Option<ProgressFn<'_>>, p: Progress<'_>) {
    if let Some(f) = progress.as_mut() {
        f(&p);
    }
}

/// A clearer message for the refusals a blob request can meet.
fn blob_error(blob: uuid::Uuid, e: WardError) -> WardError {
    let message = match &e {
        WardError::Api {
            code: ErrorCode::NotFound,
            ..
        } => format!(
            "attachment blob {blob} is not on the server (never uploaded, abandoned, or deleted \
             by retention)"
        ),
        WardError::Api {
            code: ErrorCode::Forbidden,
            ..
        } => format!(
            "this device may not access attachment blob {blob}: it is not a member of the \
             blob's conversation"
        ),
        _ => return e,
    };
    match e {
        WardError::Api {
            code,
            current_epoch,
            ..
        } => WardError::Api {
            code,
            message,
            current_epoch,
        },
        other => other,
    }
}

impl WardClient {
    /// Uploads a prepared attachment into `conversation` and returns its descriptor for the
    /// message. The ciphertext file is read part by part; a network failure mid-way is
    /// retried from where the server says it stopped. If it keeps failing the answer is
    /// [`WardError::UploadInterrupted`] (continue with [`Self::resume_upload`]); any other
    /// refusal abandons the upload on the server.
    ///
    /// An image's thumbnail is uploaded after it as its own blob of the same conversation and
    /// set as the descriptor's `thumbnail`; if that upload fails the attachment goes without
    /// a thumbnail (the failure is logged at debug level).
    pub async fn upload_attachment(
        &self,
        conversation: ConversationId,
        prepared: &PreparedAttachment,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<AttachmentDescriptor, WardError> {
        let mut d = self.upload_blob(conversation, prepared, progress).await?;
        self.attach_thumbnail(conversation, prepared, &mut d).await;
        Ok(d)
    }

    /// Uploads `prepared.thumbnail`, if any, and sets it in `d`; best effort.
    async fn attach_thumbnail(
        &self,
        conversation: ConversationId,
        prepared: &PreparedAttachment,
        d: &mut AttachmentDescriptor,
    ) {
        let Some(thumbnail) = &prepared.thumbnail else {
            return;
        };
        match self.upload_blob(conversation, thumbnail, None).await {
            Ok(t) => d.thumbnail = Some(Box::new(t)),
            Err(e) => {
                if let WardError::UploadInterrupted { blob_id, .. } = &e
                    && let Err(d) = self.api.delete(&format!("/v1/blobs/{blob_id}")).await
                {
                    tracing::debug!(%blob_id, error = %d, "could not abandon a thumbnail upload");
                }
                tracing::debug!(error = %e, "thumbnail upload failed; sent without a thumbnail");
            }
        }
    }

    /// Uploads one ciphertext file as a blob of `conversation` (see
    /// [`Self::upload_attachment`]), without its thumbnail.
    async fn upload_blob(
        &self,
        conversation: ConversationId,
        prepared: &PreparedAttachment,
        mut progress: Option<ProgressFn<'_>>,
    ) -> Result<AttachmentDescriptor, WardError> {
        let size = prepared.blob.ciphertext_len;
        let upload: BlobUpload = self
            .api
            .post(
                &format!("/v1/conversations/{conversation}/blobs"),
                &CreateBlobRequest { size },
            )
            .await
            .map_err(|e| match e {
                // The server answers 404 to a user who is not a member (no existence leak).
                WardError::Api {
                    code: code @ (ErrorCode::Forbidden | ErrorCode::NotFound),
                    message,
                    current_epoch,
                } => WardError::Api {
                    code,
                    message: format!(
                        "this device may not upload attachments to conversation \
                         {conversation} (it is not a member): {message}"
                    ),
                    current_epoch,
                },
                other => other,
            })?;
        let blob_id = upload.blob_id;
        match self.push_blob(upload, prepared, &mut progress).await {
            Ok(()) => Ok(prepared
                .descriptor(blob_id)
                .map_err(|e| WardError::Attachment(e.into()))?),
            Err(e @ WardError::UploadInterrupted { .. }) => Err(e),
            Err(e) => {
                // Best effort: the server also collects abandoned uploads.
                if let Err(d) = self.api.delete(&format!("/v1/blobs/{blob_id}")).await {
                    tracing::debug!(%blob_id, error = %d, "could not abandon an upload");
                }
                Err(e)
            }
        }
    }

    /// Continues an interrupted upload of `prepared` as blob `blob_id` from the offset the
    /// server reports (`GET /v1/blobs/{id}/upload`): bytes already received are not sent
    /// again. The thumbnail, if any, is uploaded afterwards (best effort, as in
    /// [`Self::upload_attachment`]).
    pub async fn resume_upload(
        &self,
        blob_id: uuid::Uuid,
        prepared: &PreparedAttachment,
        mut progress: Option<ProgressFn<'_>>,
    ) -> Result<AttachmentDescriptor, WardError> {
        let upload: BlobUpload = self
            .api
            .get(&format!("/v1/blobs/{blob_id}/upload"))
            .await
            .map_err(|e| blob_error(blob_id, e))?;
        if upload.size != prepared.blob.ciphertext_len {
            return Err(WardError::InvalidInput(format!(
                "blob {blob_id} was announced with {} bytes, but this attachment's ciphertext \
                 has {}; it is not the same upload",
                upload.size, prepared.blob.ciphertext_len
            )));
        }
        let conversation = upload.conversation_id;
        self.push_blob(upload, prepared, &mut progress).await?;
        let mut d = prepared
            .descriptor(blob_id)
            .map_err(|e| WardError::Attachment(e.into()))?;
        self.attach_thumbnail(conversation, prepared, &mut d).await;
        Ok(d)
    }

    /// Sends the rest of the ciphertext from `upload.received` on, then completes the blob
    /// with the ciphertext's SHA-256 (the server checks it).
    async fn push_blob(
        &self,
        mut upload: BlobUpload,
        prepared: &PreparedAttachment,
        progress: &mut Option<ProgressFn<'_>>,
    ) -> Result<(), WardError> {
        let blob_id = upload.blob_id;
        let path = &prepared.ciphertext_path;
        let io = |what: &'static str| {
            move |source: io::Error| {
                WardError::Attachment(AttachmentFileError::Io {
                    what,
                    path: path.clone(),
                    source,
                })
            }
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(io("cannot open"))?;
        let on_disk = file
            .metadata()
            .await
            .map_err(io("cannot read the size of"))?
            .len();
        if on_disk != upload.size {
            return Err(WardError::InvalidInput(format!(
                "the ciphertext file has {on_disk} bytes but blob {blob_id} expects {}",
                upload.size
            )));
        }
        let part = upload.part_size.clamp(1, MAX_PART_BYTES);
        let mut buf = Vec::with_capacity(part as usize);
        let mut failures = 0u32;
        let mut last_error;
        while upload.state == BlobUploadState::Uploading && upload.received < upload.size {
            let offset = upload.received;
            report(
                progress,
                Progress {
                    direction: Direction::Upload,
                    file_name: &prepared.file_name,
                    done: offset,
                    total: upload.size,
                },
            );
            buf.clear();
            file.seek(io::SeekFrom::Start(offset))
                .await
                .map_err(io("cannot seek in"))?;
            (&mut file)
                .take(part.min(upload.size - offset))
                .read_to_end(&mut buf)
                .await
                .map_err(io("cannot read"))?;
            let body = std::mem::replace(&mut buf, Vec::with_capacity(part as usize));
            let put = self
                .api
                .put_bytes::<BlobUpload>(
                    &format!("/v1/blobs/{blob_id}?offset={offset}"),
                    body,
                    REQUEST_TIMEOUT,
                )
                .await;
            match put {
                Ok(u) => {
                    upload = u;
                    failures = 0;
                    continue;
                }
                // The connection broke (the part may or may not have landed), or the server
                // already has bytes past `offset` (an earlier attempt's part did land): ask
                // where to resume.
                Err(e)
                    if matches!(e, WardError::Transport(_))
                        || e.is(ErrorCode::Conflict)
                        || e.is(ErrorCode::Unavailable) =>
                {
                    last_error = e.to_string();
                }
                Err(e) => return Err(blob_error(blob_id, e)),
            }
            loop {
                failures += 1;
                if failures > MAX_RETRIES {
                    return Err(WardError::UploadInterrupted {
                        blob_id,
                        received: upload.received,
                        size: upload.size,
                        reason: last_error,
                    });
                }
                tracing::debug!(%blob_id, offset, failures, "upload part failed; asking where to resume");
                tokio::time::sleep(Duration::from_millis(100 << failures)).await;
                match self.api.get(&format!("/v1/blobs/{blob_id}/upload")).await {
                    Ok(u) => {
                        upload = u;
                        break;
                    }
                    Err(e @ WardError::Transport(_)) => last_error = e.to_string(),
                    Err(e) => return Err(blob_error(blob_id, e)),
                }
            }
        }
        if upload.state == BlobUploadState::Uploading {
            let done: BlobUpload = self
                .api
                .post(
                    &format!("/v1/blobs/{blob_id}/complete"),
                    &CompleteBlobRequest {
                        sha256: hex::encode(prepared.blob.ciphertext_sha256),
                    },
                )
                .await
                .map_err(|e| blob_error(blob_id, e))?;
            if done.state != BlobUploadState::Complete {
                return Err(WardError::Transport(format!(
                    "the server did not complete blob {blob_id}"
                )));
            }
        }
        report(
            progress,
            Progress {
                direction: Direction::Upload,
                file_name: &prepared.file_name,
                done: upload.size,
                total: upload.size,
            },
        );
        Ok(())
    }

    /// Downloads an attachment with ranged requests, verifies and decrypts it into `dir`
    /// (see [`decrypt_to_dir`]: the ciphertext hash and every chunk are checked, the file
    /// appears under a free name only when all checks passed). Returns the path written.
    pub async fn download_attachment(
        &self,
        descriptor: &AttachmentDescriptor,
        dir: &Path,
        mut progress: Option<ProgressFn<'_>>,
    ) -> Result<PathBuf, WardError> {
        descriptor
            .validate()
            .map_err(|e| WardError::Attachment(e.into()))?;
        if !dir.is_dir() {
            return Err(WardError::InvalidInput(format!(
                "the download directory {} does not exist or is not a directory",
                dir.display()
            )));
        }
        let blob = descriptor.blob_id;
        let total = descriptor.ciphertext_len();
        let (tx, decrypt) = spawn_decrypt(descriptor, dir);
        let fetched = self
            .fetch_ranges(blob, total, &descriptor.file_name, &tx, &mut progress)
            .await;
        if fetched.is_err() {
            // Make the decryptor fail (and delete its temporary file) rather than finish.
            let _ = tx
                .send(Err(io::Error::other("the download was interrupted")))
                .await;
        }
        drop(tx);
        let decrypted = decrypt
            .await
            .map_err(|e| WardError::Transport(format!("the decryption task failed: {e}")))?;
        match (fetched, decrypted) {
            (Ok(()), Ok(path)) => Ok(path),
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e.into()),
        }
    }

    /// Streams `total` bytes of blob `blob` into `tx`, one range request at a time, resuming
    /// a broken range at the first byte not yet received. Stops early (Ok) if the decryptor
    /// hung up: it failed and says why.
    async fn fetch_ranges(
        &self,
        blob: uuid::Uuid,
        total: u64,
        file_name: &str,
        tx: &tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>,
        progress: &mut Option<ProgressFn<'_>>,
    ) -> Result<(), WardError> {
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < total {
            let last = (offset + RANGE_BYTES).min(total) - 1;
            let attempt: Result<bool, WardError> = async {
                let mut resp = self
                    .api
                    .get_range(&format!("/v1/blobs/{blob}"), offset, last, REQUEST_TIMEOUT)
                    .await
                    .map_err(|e| blob_error(blob, e))?;
                let whole = resp.status() == reqwest::StatusCode::OK;
                if whole && offset != 0 {
                    return Err(WardError::Transport(
                        "the server ignored the Range header".into(),
                    ));
                }
                let end = if whole { total } else { last + 1 };
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| WardError::Transport(e.to_string()))?
                {
                    // A longer blob than announced: the decryptor refuses the extra bytes.
                    offset += chunk.len() as u64;
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(false);
                    }
                    report(
                        progress,
                        Progress {
                            direction: Direction::Download,
                            file_name,
                            done: offset.min(total),
                            total,
                        },
                    );
                }
                if offset < end {
                    return Err(WardError::Transport(format!(
                        "the download of blob {blob} ended at byte {offset} of {end}"
                    )));
                }
                Ok(true)
            }
            .await;
            match attempt {
                Ok(true) => failures = 0,
                Ok(false) => return Ok(()),
                Err(e @ WardError::Transport(_)) if failures < MAX_RETRIES => {
                    failures += 1;
                    tracing::debug!(%blob, offset, error = %e, "download range failed; resuming");
                    tokio::time::sleep(Duration::from_millis(100 << failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Downloads, verifies and decrypts an attachment's thumbnail into memory, so a user
    /// interface can show a preview without fetching the file. `None` when the attachment has
    /// no thumbnail. The thumbnail is a JPEG of at most 320x320 pixels and
    /// [`MAX_THUMBNAIL_BYTES`](ward_core::attachment::MAX_THUMBNAIL_BYTES) (a larger one is
    /// refused before anything is fetched); every chunk and the ciphertext hash are checked.
    pub async fn download_thumbnail(
        &self,
        descriptor: &AttachmentDescriptor,
    ) -> Result<Option<Vec<u8>>, WardError> {
        descriptor
            .validate()
            .map_err(|e| WardError::Attachment(e.into()))?;
        let Some(t) = descriptor.thumbnail.as_deref() else {
            return Ok(None);
        };
        let total = t.ciphertext_len();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(CHANNEL_CHUNKS);
        let collect = async move {
            let mut ct = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            while let Some(Ok(chunk)) = rx.recv().await {
                // A longer blob than announced is refused by the decryptor; stop reading.
                if ct.len() as u64 + chunk.len() as u64 > total {
                    return Err(ward_core::attachment::AttachmentError::TrailingData {
                        expected: total,
                    });
                }
                ct.extend_from_slice(&chunk);
            }
            Ok(ct)
        };
        let fetch = async {
            let r = self
                .fetch_ranges(t.blob_id, total, &t.file_name, &tx, &mut None)
                .await;
            drop(tx);
            r
        };
        let (fetched, collected) = tokio::join!(fetch, collect);
        fetched?;
        let ct = collected.map_err(|e| WardError::Attachment(e.into()))?;
        let jpeg = crate::attachments::decrypt_in_memory(t, &ct)
            .map_err(|e| WardError::Attachment(e.into()))?;
        Ok(Some(jpeg))
    }

    /// Downloads an attachment's thumbnail (see [`Self::download_thumbnail`]) into the
    /// directory of `saved`, the path the attachment itself was saved to, as
    /// `NAME.thumb.jpg` ([`thumbnail_file_name`](crate::attachments::thumbnail_file_name);
    /// never overwriting: a taken name gets ` (1)`, …). `None` when it has no thumbnail.
    pub async fn save_thumbnail(
        &self,
        descriptor: &AttachmentDescriptor,
        saved: &Path,
    ) -> Result<Option<PathBuf>, WardError> {
        let Some(t) = descriptor.thumbnail.as_deref() else {
            return Ok(None);
        };
        let name = saved
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(crate::attachments::THUMBNAIL_FILE_NAME);
        let dir = match saved.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut named = t.clone();
        named.file_name = crate::attachments::thumbnail_file_name(name);
        self.download_attachment(&named, dir, None).await.map(Some)
    }

    /// Downloads every attachment of `message` into `dir` (see
    /// [`Self::download_attachment`]); stops at the first failure. Files saved before it
    /// stay (each was verified in full).
    pub async fn download_attachments(
        &self,
        message: &StoredMessage,
        dir: &Path,
        mut progress: Option<ProgressFn<'_>>,
    ) -> Result<Vec<SavedAttachment>, WardError> {
        let mut saved = Vec::new();
        for d in &message.attachment_descriptors {
            let path = self
                .download_attachment(d, dir, lend(&mut progress))
                .await?;
            saved.push(SavedAttachment {
                info: AttachmentInfo::of(d),
                saved_path: path,
                thumbnail_path: None,
            });
        }
        Ok(saved)
    }
}

/// A blocking reader over the chunks a download task sends (`decrypt_to_dir` runs on a
/// blocking thread). An `Err` item or a closed channel ends it.
/// Starts [`decrypt_to_dir`] on a blocking thread; the caller feeds the ciphertext into the
/// sender (an `Err` makes the decryption fail and leave nothing), drops it at the end, and
/// awaits the handle for the path written.
fn spawn_decrypt(
    descriptor: &AttachmentDescriptor,
    dir: &Path,
) -> (
    tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<PathBuf, AttachmentFileError>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(CHANNEL_CHUNKS);
    let (d, out) = (descriptor.clone(), dir.to_path_buf());
    let decrypt = tokio::task::spawn_blocking(move || {
        decrypt_to_dir(
            &d,
            ChannelReader {
                rx,
                current: bytes::Bytes::new(),
            },
            &out,
        )
    });
    (tx, decrypt)
}

/// Verifies and decrypts a ciphertext stream (from the server's object store, say) into `dir`
/// as [`decrypt_to_dir`] does, without holding it in memory. Stops at the stream's first error
/// and leaves nothing behind then.
pub async fn decrypt_stream_to_dir<S>(
    descriptor: &AttachmentDescriptor,
    mut ciphertext: S,
    dir: &Path,
) -> Result<PathBuf, AttachmentFileError>
where
    S: futures_util::Stream<Item = io::Result<bytes::Bytes>> + Unpin,
{
    use futures_util::StreamExt as _;
    let (tx, decrypt) = spawn_decrypt(descriptor, dir);
    while let Some(chunk) = ciphertext.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    decrypt.await.map_err(|e| AttachmentFileError::Io {
        what: "the decryption task failed in",
        path: dir.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
