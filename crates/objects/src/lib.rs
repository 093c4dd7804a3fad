//! Large bodies in object storage (the claim check): a body is written in parts while it
//! arrives, its SHA-256 and size computed on the way, and a reference to it ([`ObjectRef`])
//! goes into the Kafka record in its place; a reader streams it back and checks it against
//! the reference.
//!
//! The stores themselves are the `object_store` crate's (S3 and S3-compatible, Google Cloud
//! Storage, Azure Blob Storage, a filesystem path). What is Spillway's here is the reference,
//! the check, and keeping a write's memory to a few parts.

mod open;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

pub use open::ObjectsConfig;
pub use spillway_core::ObjectRef;
pub use writer::ObjectWriter;

/// An object store under a root: where the bodies of one deployment go.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The same store, for stores that can sign URLs (S3, GCS, Azure).
    signer: Option<Arc<dyn Signer>>,
    /// `<scheme>://<bucket>`: an [`ObjectRef::uri`] is this, `/`, and the object's path.
    base: String,
    /// The key prefix every object is written under.
    root: Path,
    /// The size of each part of a write: what a write holds in memory, times the parts in
    /// flight.
    part_bytes: usize,
}

/// The store's own Debug may print its credentials: only where it points is printed.
impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("base", &self.base)
            .field("root", &self.root.as_ref())
            .field("part_bytes", &self.part_bytes)
            .finish_non_exhaustive()
    }
}

/// Why an object could not be written, read, signed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("objects.url {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("objects.options: {key:?} is not an option of this store: {source}")]
    BadOption {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("the object store: {source}")]
    Store {
        #[source]
        source: object_store::Error,
    },
    #[error("{uri} is not in this store ({base}/{root})")]
    Foreign {
        uri: String,
        base: String,
        root: String,
    },
    #[error("{uri} does not match its reference: {found}, expected {expected}")]
    Mismatch {
        uri: String,
        expected: String,
        found: String,
    },
    #[error("this store ({base}) cannot sign URLs")]
    CannotSign { base: String },
}

// === impl ObjectsError ===

impl ObjectsError {
    /// The object is not in the store (deleted, or expired by the store's lifecycle rules).
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            Self::Store {
                source: object_store::Error::NotFound { .. }
            }
        )
    }
}

fn store_error(source: object_store::Error) -> ObjectsError {
    ObjectsError::Store { source }
}

// === impl Objects ===

impl Objects {
    /// Starts writing the object `name` (a `/`-separated key under the root).
    pub async fn writer(
        &self,
        name: &str,
        content_type: Option<String>,
    ) -> Result<ObjectWriter, ObjectsError> {
        let path = self.path_of(name);
        let upload = self.store.put_multipart(&path).await.map_err(store_error)?;
        let uri = format!("{}/{}", self.base, path);
        Ok(ObjectWriter::new(
            upload,
            self.part_bytes,
            uri,
            content_type,
        ))
    }

    /// What one write holds in memory at most: the parts uploading and the one filling.
    pub fn upload_bytes(&self) -> u64 {
        writer::upload_bytes(self.part_bytes)
    }

    fn path_of(&self, name: &str) -> Path {
        name.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// The path of a reference's object, which must be under this store's root.
    fn resolve(&self, reference: &ObjectRef) -> Result<Path, ObjectsError> {
        self.resolve_uri(&reference.uri)
    }

    fn resolve_uri(&self, uri: &str) -> Result<Path, ObjectsError> {
        let foreign = || ObjectsError::Foreign {
            uri: uri.to_owned(),
            base: self.base.clone(),
            root: self.root.to_string(),
        };
        let key = uri
            .strip_prefix(&self.base)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(foreign)?;
        let path = Path::parse(key).map_err(|_| foreign())?;
        if !path.prefix_matches(&self.root) {
            return Err(foreign());
        }
        Ok(path)
    }

    /// The object's bytes as they are read, in the store's chunks, checked against the
    /// reference's size and SHA-256: the chunk that completes the reference's size is replaced
    /// by the error if the bytes do not match, so whoever forwards the stream (with a
    /// `Content-Length` of that size, after which nothing more is read) fails what it sends
    /// rather than completes it. Bytes past the size, or a stream that ends short, are errors
    /// too.
    pub async fn stream(
        &self,
        reference: &ObjectRef,
    ) -> Result<BoxStream<'static, Result<Bytes, ObjectsError>>, ObjectsError> {
        let path = self.resolve(reference)?;
        let got = self.store.get(&path).await.map_err(store_error)?;
        let expected = reference.clone();
        let mut check = Some(Check::default());
        let chunks = got.into_stream().map_err(store_error);
        let checked = chunks
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .filter_map(move |item| {
                let out = match (item, check.as_mut()) {
                    (Some(Ok(chunk)), Some(c)) => {
                        c.update(&chunk);
                        if c.size < expected.size {
                            Some(Ok(chunk))
                        } else {
                            let verdict = check.take().map_or(Ok(()), |c| c.finish(&expected));
                            Some(verdict.map(|()| chunk))
                        }
                    }
                    (Some(Ok(chunk)), None) if chunk.is_empty() => None,
                    // Past the reference's size: the object is longer than it.
                    (Some(Ok(chunk)), None) => Some(Err(ObjectsError::Mismatch {
                        uri: expected.uri.clone(),
                        expected: format!("{} bytes", expected.size),
                        found: format!("{} bytes more", chunk.len()),
                    })),
                    (Some(Err(e)), _) => Some(Err(e)),
                    // The end: an object shorter than the reference fails here.
                    (None, _) => check
                        .take()
                        .and_then(|c| c.finish(&expected).err())
                        .map(Err),
                };
                futures::future::ready(out)
            });
        Ok(checked.boxed())
    }

    /// Reads the whole object through, checking it against the reference, holding one chunk
    /// at a time.
    pub async fn check(&self, reference: &ObjectRef) -> Result<(), ObjectsError> {
        let mut stream = self.stream(reference).await?;
        while let Some(chunk) = stream.next().await {
            chunk?;
        }
        Ok(())
    }

    /// A URL that lets its holder GET the object until `expires_in` has passed.
    pub async fn signed_url(
        &self,
        reference: &ObjectRef,
        expires_in: Duration,
    ) -> Result<String, ObjectsError> {
        let path = self.resolve(reference)?;
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| ObjectsError::CannotSign {
                base: self.base.clone(),
            })?;
        let url = signer
            .signed_url(object_store::signer::Method::GET, &path, expires_in)
            .await
            .map_err(store_error)?;
        Ok(url.to_string())
    }

    /// Deletes the object; one already gone is not an error.
    pub async fn delete(&self, reference: &ObjectRef) -> Result<(), ObjectsError> {
        self.delete_uri(&reference.uri).await
    }

    /// Deletes the object at `uri` (an [`ObjectRef::uri`] or a [`Listed::uri`]); one already
    /// gone is not an error.
    pub async fn delete_uri(&self, uri: &str) -> Result<(), ObjectsError> {
        let path = self.resolve_uri(uri)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(store_error(source)),
        }
    }

    /// Every object under the root: its reference's URI, size and last modification.
    pub async fn list(&self) -> Result<Vec<Listed>, ObjectsError> {
        self.store
            .list(Some(&self.root))
            .map_ok(|meta| Listed {
                uri: format!("{}/{}", self.base, meta.location),
                size: meta.size,
                modified: meta.last_modified.into(),
            })
            .try_collect()
            .await
            .map_err(store_error)
    }
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub uri: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The size and SHA-256 of bytes as they pass.
#[derive(Default)]
struct Check {
    hasher: Sha256,
    size: u64,
}

impl Check {
    fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    fn finish(self, expected: &ObjectRef) -> Result<(), ObjectsError> {
        let sha256 = hex::encode(self.hasher.finalize());
        if self.size == expected.size && sha256 == expected.sha256 {
            return Ok(());
        }
        Err(ObjectsError::Mismatch {
            uri: expected.uri.clone(),
            expected: format!("{} bytes, sha256 {}", expected.size, expected.sha256),
            found: format!("{} bytes, sha256 {sha256}", self.size),
        })
    }
}

#[cfg(test)]
mod tests;
