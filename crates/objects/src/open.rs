//! Opening a store from the config: its URL names the kind of store, the bucket and the key
//! prefix; credentials come from the environment each cloud's tools use (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), and `options` set anything else by the store's own key names.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::ObjectStore;
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
}

/// The options' values are not printed: a key given there by mistake must not reach a log.
impl std::fmt::Debug for ObjectsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsConfig")
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("part_bytes", &self.part_bytes)
            .finish()
    }
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
                let opened = cloud(&url, &config.options)?;
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
fn cloud(url: &Url, options: &BTreeMap<String, String>) -> Result<Opened, ObjectsError> {
    // The bucket alone: the key prefix is Spillway's root, not the store's.
    let bucket_url = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    match url.scheme() {
        "s3" => {
            let builder = AmazonS3Builder::from_env().with_url(bucket_url);
            let builder = configured(builder, options, AmazonS3Builder::with_config)?;
            signing(builder.build())
        }
        "gs" => {
            let builder = GoogleCloudStorageBuilder::from_env().with_url(bucket_url);
            let builder = configured(builder, options, GoogleCloudStorageBuilder::with_config)?;
            signing(builder.build())
        }
        _ => {
            let builder = MicrosoftAzureBuilder::from_env().with_url(bucket_url);
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
