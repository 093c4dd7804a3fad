//! One object being written: its bytes go out in parts as they come, a bounded number of
//! parts in flight, while its size and SHA-256 are worked out.

use bytes::Bytes;
use object_store::{MultipartUpload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::{store_error, ObjectRef, ObjectsError};

/// Parts uploading at once: a write holds at most this many parts, plus the one filling.
const PARTS_IN_FLIGHT: usize = 2;

/// What one write of parts of `part_bytes` holds in memory at most: the parts uploading and
/// the one filling.
pub(crate) fn upload_bytes(part_bytes: usize) -> u64 {
    u64::try_from(part_bytes.saturating_mul(PARTS_IN_FLIGHT + 1)).unwrap_or(u64::MAX)
}

/// A write in progress. Drop it unfinished and the upload is left for the store's own
/// cleanup of incomplete uploads; [`ObjectWriter::abort`] removes the parts at once.
#[derive(Debug)]
pub struct ObjectWriter {
    upload: WriteMultipart,
    hasher: Sha256,
    size: u64,
    uri: String,
    content_type: Option<String>,
}

impl ObjectWriter {
    pub(crate) fn new(
        upload: Box<dyn MultipartUpload>,
        part_bytes: usize,
        uri: String,
        content_type: Option<String>,
    ) -> Self {
        Self {
            upload: WriteMultipart::new_with_chunk_size(upload, part_bytes),
            hasher: Sha256::new(),
            size: 0,
            uri,
            content_type,
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds `chunk`, waiting first while [`PARTS_IN_FLIGHT`] parts are uploading, so that a
    /// sender faster than the store is slowed to the store's pace instead of filling memory.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectsError> {
        self.upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(store_error)?;
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        self.upload.put(chunk);
        Ok(())
    }

    /// Completes the object; its reference.
    pub async fn finish(self) -> Result<ObjectRef, ObjectsError> {
        self.upload.finish().await.map_err(store_error)?;
        Ok(ObjectRef {
            uri: self.uri,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            content_type: self.content_type,
        })
    }

    /// Gives the write up, removing what was uploaded.
    pub async fn abort(self) -> Result<(), ObjectsError> {
        self.upload.abort().await.map_err(store_error)
    }
}
