//! Opening a store from the config: its URL names the kind of store, the bucket and the key
//! prefix; credentials come from the environment each cloud's tools use (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), and `options` set anything else by the store's own key names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, RetryConfig};
use url::Url;

use crate::{store_error, Objects, ObjectsError};

/// Where bodies go, as configured.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///absolute/directory`.
    pub url: String,
    /// The store's own options by name (`aws_endpoint`, `aws_region`, `aws_allow_http`,
    /// `google_service_account`, `azure_storage_account_name`...). Secrets belong in the
    /// environment, not here.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The size of each uploaded part; a write holds about three in memory. S3 takes parts
    /// of 5 MiB and more (but the last).
    #[serde(default = "default_part_bytes")]
    pub part_bytes: usize,
    /// How long a request to the store is retried (failed connections, 5xx answers) before
    /// the request that needs it is answered 503: under a sender's timeout, so that the sender
    /// hears the refusal and retries, rather than timing out.
    #[serde(default = "default_retry_timeout", with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// The most retries of one request to the store.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

/// The options' values are not printed: a key given there by mistake must not reach a log.
impl std::fmt::Debug for ObjectsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsConfig")
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("part_bytes", &self.part_bytes)
            .field("retry_timeout", &self.retry_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl ObjectsConfig {
    /// The store at `url`, every other setting its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: BTreeMap::new(),
            part_bytes: default_part_bytes(),
            retry_timeout: default_retry_timeout(),
            max_retries: default_max_retries(),
        }
    }

    /// What one write holds in memory at most: the parts uploading and the one filling.
    pub fn upload_bytes(&self) -> u64 {
        crate::writer::upload_bytes(self.part_bytes)
    }
}

fn default_retry_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_retries() -> usize {
    3
}

fn default_part_bytes() -> usize {
    5 * 1024 * 1024
}

type Opened = (Arc<dyn ObjectStore>, Option<Arc<dyn Signer>>);

impl Objects {
    /// Opens the store `config` names. Nothing is contacted yet.
    pub fn open(config: &ObjectsConfig) -> Result<Self, ObjectsError> {
        let bad_url = |why: &str| ObjectsError::BadUrl {
            url: config.url.clone(),
            why: why.to_owned(),
        };
        let url = Url::parse(&config.url).map_err(|e| bad_url(&e.to_string()))?;
        // reqwest is built without a bundled crypto provider: the process's one is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (opened, base, root): (Opened, String, &str) = match url.scheme() {
            "s3" | "gs" | "az" => {
                let bucket = url.host_str().ok_or_else(|| bad_url("no bucket"))?;
                let retry = RetryConfig {
                    max_retries: config.max_retries,
                    retry_timeout: config.retry_timeout,
                    ..RetryConfig::default()
                };
                let opened = cloud(&url, &config.options, retry)?;
                (opened, format!("{}://{bucket}", url.scheme()), url.path())
            }
            "file" => {
                if !config.options.is_empty() {
                    return Err(bad_url("a file store takes no options"));
                }
                let dir = url
                    .to_file_path()
                    .map_err(|()| bad_url("not an absolute path"))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad_url(&e.to_string()))?;
                let local = LocalFileSystem::new_with_prefix(&dir).map_err(store_error)?;
                let store: Arc<dyn ObjectStore> = Arc::new(local);
                (
                    (store, None),
                    config.url.trim_end_matches('/').to_owned(),
                    "",
                )
            }
            other => {
                return Err(bad_url(&format!(
                    "{other}: is not a store (s3, gs, az or file)"
                )))
            }
        };
        if config.part_bytes < 1024 {
            return Err(bad_url("part_bytes is under 1 KiB"));
        }
        let root = Path::parse(root.trim_matches('/')).map_err(|e| bad_url(&e.to_string()))?;
        let (store, signer) = opened;
        Ok(Self {
            store,
            signer,
            base,
            root,
            part_bytes: config.part_bytes,
        })
    }
}

/// A cloud store from the environment, the URL and the options.
fn cloud(
    url: &Url,
    options: &BTreeMap<String, String>,
    retry: RetryConfig,
) -> Result<Opened, ObjectsError> {
    // The bucket alone: the key prefix is Spillway's root, not the store's.
    let bucket_url = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    match url.scheme() {
        "s3" => {
            let builder = AmazonS3Builder::from_env()
                .with_url(bucket_url)
                .with_retry(retry);
            let builder = configured(builder, options, AmazonS3Builder::with_config)?;
            signing(builder.build())
        }
        "gs" => {
            let builder = GoogleCloudStorageBuilder::from_env()
                .with_url(bucket_url)
                .with_retry(retry);
            let builder = configured(builder, options, GoogleCloudStorageBuilder::with_config)?;
            signing(builder.build())
        }
        _ => {
            let builder = MicrosoftAzureBuilder::from_env()
                .with_url(bucket_url)
                .with_retry(retry);
            let builder = configured(builder, options, MicrosoftAzureBuilder::with_config)?;
            signing(builder.build())
        }
    }
}

/// `builder` with each option set by its key, parsed as the store's own key type.
fn configured<B, K>(
    builder: B,
    options: &BTreeMap<String, String>,
    with_config: fn(B, K, String) -> B,
) -> Result<B, ObjectsError>
where
    K: std::str::FromStr<Err = object_store::Error>,
{
    options.iter().try_fold(builder, |builder, (key, value)| {
        let parsed = key.parse().map_err(|source| ObjectsError::BadOption {
            key: key.clone(),
            source,
        })?;
        Ok(with_config(builder, parsed, value.clone()))
    })
}

/// A built cloud store, which signs URLs too.
fn signing<S: ObjectStore + Signer>(
    built: object_store::Result<S>,
) -> Result<Opened, ObjectsError> {
    let store = Arc::new(built.map_err(store_error)?);
    Ok((store.clone(), Some(store)))
}
