//! Blob bytes in an object store (ADR 0017): the local file system under the data directory
//! by default, any S3-compatible store by configuration, both through `object_store`.
//!
//! Each upload `PUT` becomes one object, `<blob>/<offset>` (the offset zero-padded so keys
//! sort by position). Nothing is ever appended or rewritten, so an interrupted request leaves
//! either a whole part or nothing, the hash is computed by streaming the parts in order, and a
//! download range maps onto the parts it overlaps. One request holds at most one part in
//! memory; downloads are streamed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

use crate::config::{BlobBackend, BlobConfig};

/// Width of the zero-padded offset in part keys (u64::MAX has 20 digits).
const OFFSET_DIGITS: usize = 20;

/// One stored part: where it starts in the blob and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// Offset of its first byte in the blob.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The object store holding blob parts.
pub struct BlobObjects {
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    part_size: u64,
    /// Blobs with a part being written now: one writer per blob at a time.
    busy: Mutex<HashSet<uuid::Uuid>>,
}

impl std::fmt::Debug for BlobObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobObjects")
            .field("store", &self.store.to_string())
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// Marks a blob as being written; cleared on drop.
pub struct WriteGuard<'a> {
    objects: &'a BlobObjects,
    blob: uuid::Uuid,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.objects
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.blob);
    }
}

impl BlobObjects {
    /// Open the configured store (creating the local directory with mode 0700).
    pub fn open(config: &BlobConfig) -> anyhow::Result<Self> {
        let (store, prefix): (Arc<dyn ObjectStore>, Option<Path>) = match &config.backend {
            BlobBackend::Local { path } => {
                crate::create_private_dir(path)?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .with_context(|| format!("could not open blob directory {}", path.display()))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), None)
            }
            BlobBackend::S3(s3) => {
                // The AWS environment (credentials, session token) first; `[blobs]` wins.
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_allow_http(s3.allow_http);
                if let Some(e) = &s3.endpoint {
                    // S3-compatible servers are addressed by path, not by bucket host name.
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(&secret.0);
                }
                let store = b
                    .build()
                    .context("could not configure the S3 blob store (check [blobs])")?;
                (Arc::new(store), s3.prefix.as_deref().map(Path::from))
            }
        };
        Ok(Self {
            store,
            prefix,
            part_size: config.part_size,
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// Most bytes one `PUT` may carry.
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Claim the blob for one write; `None` while another write to it runs.
    pub fn begin_write(&self, blob: uuid::Uuid) -> Option<WriteGuard<'_>> {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(blob)
            .then_some(WriteGuard {
                objects: self,
                blob,
            })
    }

    fn dir(&self, blob: uuid::Uuid) -> Path {
        match &self.prefix {
            Some(p) => p.child(blob.to_string()),
            None => Path::from(blob.to_string()),
        }
    }

    fn part_path(&self, blob: uuid::Uuid, offset: u64) -> Path {
        self.dir(blob)
            .child(format!("{offset:0width$}", width = OFFSET_DIGITS))
    }

    /// Store one part (replacing a leftover at the same offset from an interrupted write).
    pub async fn put_part(
        &self,
        blob: uuid::Uuid,
        offset: u64,
        payload: PutPayload,
    ) -> object_store::Result<()> {
        self.store
            .put_opts(
                &self.part_path(blob, offset),
                payload,
                PutOptions::default(),
            )
            .await?;
        Ok(())
    }

    /// The stored parts of a blob, by offset.
    pub async fn parts(&self, blob: uuid::Uuid) -> object_store::Result<Vec<Part>> {
        let dir = self.dir(blob);
        let mut parts: Vec<Part> = self
            .store
            .list(Some(&dir))
            .try_filter_map(|m| async move {
                Ok(m.location
                    .filename()
                    .and_then(|f| f.parse().ok())
                    .map(|offset| Part {
                        offset,
                        len: m.size,
                    }))
            })
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.offset);
        Ok(parts)
    }

    /// The parts that cover `0..size` exactly, in order, or `None` when they do not (a
    /// gap, an overlap, or a part left by a write that was not recorded).
    pub fn contiguous(parts: &[Part], size: u64) -> Option<Vec<Part>> {
        let mut out = Vec::new();
        let mut at = 0;
        for p in parts {
            if p.offset < at {
                continue;
            }
            if p.offset != at || p.len == 0 {
                return None;
            }
            out.push(*p);
            at += p.len;
            if at == size {
                return Some(out);
            }
        }
        (at == size).then_some(out)
    }

    /// SHA-256 of the parts, streamed in order.
    pub async fn sha256(&self, blob: uuid::Uuid, parts: &[Part]) -> object_store::Result<[u8; 32]> {
        let mut hasher = Sha256::new();
        let mut body = self.read(blob, parts.to_vec(), 0, parts.iter().map(|p| p.len).sum());
        while let Some(chunk) = body.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finalize().into())
    }

    /// Bytes `start..end` of the blob made of `parts`, as a stream.
    pub fn read(
        &self,
        blob: uuid::Uuid,
        parts: Vec<Part>,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, object_store::Result<Bytes>> {
        let store = self.store.clone();
        let paths: Vec<(Path, std::ops::Range<u64>)> = parts
            .into_iter()
            .filter(|p| p.offset < end && p.offset + p.len > start)
            .map(|p| {
                let from = start.saturating_sub(p.offset);
                let to = (end - p.offset).min(p.len);
                (self.part_path(blob, p.offset), from..to)
            })
            .collect();
        futures_util::stream::iter(paths)
            .then(move |(path, range)| {
                let store = store.clone();
                async move {
                    let opts = GetOptions {
                        range: Some(GetRange::Bounded(range)),
                        ..Default::default()
                    };
                    Ok::<_, object_store::Error>(store.get_opts(&path, opts).await?.into_stream())
                }
            })
            .try_flatten()
            .boxed()
    }

    /// Every blob with objects in the store and when its newest part was written (Unix
    /// seconds). Keys that are not `<uuid>/<offset>` are not ours and are skipped.
    pub async fn stored_blobs(&self) -> object_store::Result<Vec<(uuid::Uuid, i64)>> {
        let mut newest: std::collections::HashMap<uuid::Uuid, i64> = Default::default();
        let depth = self.prefix.as_ref().map_or(0, |p| p.parts().count());
        let mut listing = self.store.list(self.prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let mut parts = meta.location.parts().skip(depth);
            let Some(id) = parts
                .next()
                .and_then(|p| uuid::Uuid::parse_str(p.as_ref()).ok())
            else {
                continue;
            };
            let written = meta.last_modified.timestamp();
            newest
                .entry(id)
                .and_modify(|t| *t = (*t).max(written))
                .or_insert(written);
        }
        Ok(newest.into_iter().collect())
    }

    /// Remove every part of a blob (nothing to remove is fine).
    pub async fn delete(&self, blob: uuid::Uuid) -> object_store::Result<()> {
        let dir = self.dir(blob);
        let locations = self.store.list(Some(&dir)).map_ok(|m| m.location).boxed();
        self.store
            .delete_stream(locations)
            .try_for_each(|_| async { Ok(()) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(offset: u64, len: u64) -> Part {
        Part { offset, len }
    }

    #[test]
    fn contiguous_parts() {
        assert_eq!(
            BlobObjects::contiguous(&[p(0, 4), p(4, 2)], 6),
            Some(vec![p(0, 4), p(4, 2)])
        );
        assert_eq!(BlobObjects::contiguous(&[p(0, 4)], 6), None);
        assert_eq!(BlobObjects::contiguous(&[p(0, 4), p(5, 1)], 6), None);
        assert_eq!(BlobObjects::contiguous(&[], 0), Some(vec![]));
        // A leftover beyond the recorded size is ignored.
        assert_eq!(
            BlobObjects::contiguous(&[p(0, 6), p(6, 3)], 6),
            Some(vec![p(0, 6)])
        );
    }
}
