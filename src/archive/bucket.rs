//! The object store behind the archive: S3 or an S3-compatible store through object_store's
//! S3 client (whose requests go through this crate's one HTTP client, [`crate::client`]:
//! reqwest on rustls with AWS-LC, trusting the configured CA), or a local directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::client::{ClientOptions, HttpClient, HttpConnector};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use secrecy::{ExposeSecret, SecretString};

use super::ArchiveError;

/// Where the archive is and how to reach it.
#[derive(Clone)]
pub struct BucketSettings {
    /// `s3://<bucket>[/<prefix>]`, or `file:///<directory>`.
    pub url: String,
    /// The S3-compatible endpoint (`https://s3.example:9000`); `None`: AWS's, for `region`.
    pub endpoint: Option<String>,
    /// The S3 region (any value for most S3-compatible stores).
    pub region: String,
    /// PEM file of the CA(s) the endpoint's TLS certificate is checked against; `None`: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The access key id; `None`: anonymous requests.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<SecretString>,
    /// Longest wait for one request (retries included).
    pub timeout: Duration,
    /// Retries of a request that failed for a reason worth retrying (5xx, a dropped
    /// connection) within `timeout`.
    pub retries: usize,
}

impl std::fmt::Debug for BucketSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSettings")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("ca_file", &self.ca_file)
            .field("access_key_id", &self.access_key_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BucketSettings {
    /// Settings for `url` with the defaults: region `us-east-1`, no endpoint, no CA file,
    /// credentials from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` when set, 30 s per
    /// request, 3 retries.
    pub fn new(url: &str) -> Self {
        BucketSettings {
            url: url.to_owned(),
            endpoint: None,
            region: "us-east-1".into(),
            ca_file: None,
            access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
            secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY")
                .ok()
                .map(SecretString::from),
            timeout: Duration::from_secs(30),
            retries: 3,
        }
    }
}

/// Hands object_store this crate's HTTP client (its TLS set-up and CA files) instead of
/// building one of its own.
#[derive(Debug)]
struct OwnClient(reqwest::Client);

impl HttpConnector for OwnClient {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.0.clone()))
    }
}

/// How the checkpoint object is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// Conditional on the ETag of the one this appliance last wrote (S3).
    IfMatch,
    /// Unconditionally (a directory: the state directory's lock keeps one writer).
    Overwrite,
}

/// An archive bucket: the objects under one prefix.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    /// What it is, for messages: `s3://bucket/prefix` or `file:///dir`.
    describe: String,
    replace: Replace,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("at", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Whether an object written create-only was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written now.
    New,
    /// Already there with the same bytes (written by an earlier try).
    Present,
}

fn config(message: impl Into<String>) -> ArchiveError {
    ArchiveError::Config(message.into())
}

/// Whether `endpoint` (`http://host:port`) names a loopback host.
fn is_loopback_url(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Bucket {
    /// Opens the bucket of `settings` (nothing is requested yet). A plain-HTTP endpoint is
    /// accepted only on a loopback address; a `file://` directory is created if missing.
    pub fn open(settings: &BucketSettings) -> Result<Bucket, ArchiveError> {
        let url = settings.url.trim_end_matches('/');
        if let Some(rest) = url.strip_prefix("s3://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(config(format!(
                    "{url:?} names no bucket; write s3://<bucket>[/<prefix>]"
                )));
            }
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(name)
                .with_region(&settings.region)
                .with_retry(RetryConfig {
                    max_retries: settings.retries,
                    retry_timeout: settings.timeout,
                    ..RetryConfig::default()
                });
            if let Some(endpoint) = &settings.endpoint {
                if endpoint.starts_with("http://") {
                    if !is_loopback_url(endpoint) {
                        return Err(config(format!(
                            "endpoint {endpoint:?}: plain HTTP only to a loopback address; use https://"
                        )));
                    }
                    builder = builder.with_allow_http(true);
                } else if !endpoint.starts_with("https://") {
                    return Err(config(format!(
                        "endpoint {endpoint:?}: give https://host[:port]"
                    )));
                }
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            match (&settings.access_key_id, &settings.secret_access_key) {
                (Some(id), Some(secret)) => {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret.expose_secret());
                }
                (None, None) => builder = builder.with_skip_signature(true),
                _ => {
                    return Err(config(
                        "give both the access key id and the secret access key, or neither",
                    ))
                }
            }
            let tls = crate::client::ClientTls {
                trust: match &settings.ca_file {
                    Some(ca) => crate::client::Trust::Only(vec![ca.clone()]),
                    None => crate::client::Trust::System,
                },
                identity: None,
            };
            let client = crate::client::builder(&tls, settings.timeout)
                .and_then(|b| b.build().map_err(crate::client::ClientError::Build))
                .map_err(|e| config(format!("the HTTPS client: {e}")))?;
            let store = builder
                .with_http_connector(OwnClient(client))
                .build()
                .map_err(|e| config(format!("{url}: {e}")))?;
            let prefix = if prefix.is_empty() {
                None
            } else {
                Some(Path::parse(prefix).map_err(|e| config(format!("{url}: {e}")))?)
            };
            return Ok(Bucket {
                store: Arc::new(store),
                prefix,
                describe: url.to_owned(),
                replace: Replace::IfMatch,
            });
        }
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(config(format!(
                    "{url:?}: give an absolute directory, file:///path"
                )));
            }
            std::fs::create_dir_all(dir).map_err(|e| config(format!("{dir}: {e}")))?;
            let store =
                LocalFileSystem::new_with_prefix(dir).map_err(|e| config(format!("{dir}: {e}")))?;
            return Ok(Bucket {
                store: Arc::new(store),
                prefix: None,
                describe: url.to_owned(),
                replace: Replace::Overwrite,
            });
        }
        Err(config(format!(
            "{url:?}: give s3://<bucket>[/<prefix>] or file:///<directory>"
        )))
    }

    /// What the bucket is, for messages (`s3://bucket/prefix`).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn path(&self, rel: &str) -> Path {
        let parts = rel.split('/').filter(|p| !p.is_empty());
        match &self.prefix {
            Some(p) => parts.fold(p.clone(), |acc, part| acc.clone().join(part)),
            None => Path::from_iter(parts),
        }
    }

    fn location(&self, rel: &str) -> String {
        format!("{}/{rel}", self.describe)
    }

    fn failed(
        &self,
        operation: &'static str,
        rel: &str,
        source: object_store::Error,
    ) -> ArchiveError {
        ArchiveError::Store {
            operation,
            location: self.location(rel),
            source,
        }
    }

    /// The object at `rel` (a path under the prefix) and its ETag, or `None` when it is not
    /// there.
    pub async fn get_tagged(
        &self,
        rel: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, ArchiveError> {
        let got = match self.store.get(&self.path(rel)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("GET", rel, e)),
        };
        let etag = got.meta.e_tag.clone();
        let bytes = got.bytes().await.map_err(|e| self.failed("GET", rel, e))?;
        Ok(Some((bytes, etag)))
    }

    /// The object at `rel`, or `None` when it is not there.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>, ArchiveError> {
        Ok(self.get_tagged(rel).await?.map(|(b, _)| b))
    }

    /// Writes `bytes` at `rel` unless an object is there: one with the same bytes is
    /// [`Written::Present`], one with other bytes an [`ArchiveError::Conflict`] (left as it
    /// is).
    pub async fn put_new(&self, rel: &str, bytes: Bytes) -> Result<Written, ArchiveError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(Written::New),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => match self.get(rel).await? {
                Some(there) if there == bytes => Ok(Written::Present),
                Some(_) => Err(ArchiveError::Conflict {
                    location: self.location(rel),
                }),
                // Refused as present, then gone: someone deletes objects; try again later.
                None => Err(ArchiveError::Invalid(format!(
                    "{} was refused as already present, then not found",
                    self.location(rel)
                ))),
            },
            Err(e) => Err(self.failed("PUT", rel, e)),
        }
    }

    /// Writes the checkpoint object: created if `current` is `None`, else replaced only if
    /// the object's ETag is still `current` (on a directory, replaced). The new ETag; a
    /// [`ArchiveError::Conflict`] when another writer changed it.
    pub async fn put_checkpoint(
        &self,
        bytes: Bytes,
        current: Option<&str>,
    ) -> Result<Option<String>, ArchiveError> {
        let mode = match (self.replace, current) {
            (Replace::Overwrite, _) => PutMode::Overwrite,
            (Replace::IfMatch, None) => PutMode::Create,
            (Replace::IfMatch, Some(etag)) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.to_owned()),
                version: None,
            }),
        };
        let rel = super::CHECKPOINT;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(r) => Ok(r.e_tag),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                match self.get_tagged(rel).await? {
                    // A retried request that had gone through.
                    Some((there, etag)) if there == bytes => Ok(etag),
                    _ => Err(ArchiveError::Conflict {
                        location: self.location(rel),
                    }),
                }
            }
            Err(e) => Err(self.failed("PUT", rel, e)),
        }
    }

    /// The paths (relative to the prefix) of every object under `dir`, at any depth.
    pub async fn list_all(&self, dir: &str) -> Result<Vec<String>, ArchiveError> {
        let path = self.path(dir);
        let found: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| self.failed("LIST", dir, e))?;
        let base = self.prefix.clone();
        let mut paths: Vec<String> = found
            .into_iter()
            .filter_map(|m| match &base {
                Some(p) => Some(
                    m.location
                        .prefix_match(p)?
                        .map(|part| part.as_ref().to_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                ),
                None => Some(m.location.as_ref().to_owned()),
            })
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Moves the object at `rel` to `<aside>/<rel>` (a copy, then the delete): kept as
    /// evidence, out of the log's layout.
    pub async fn set_aside(&self, rel: &str, aside: &str) -> Result<(), ArchiveError> {
        let to = format!("{aside}/{rel}");
        self.store
            .copy(&self.path(rel), &self.path(&to))
            .await
            .map_err(|e| self.failed("COPY", rel, e))?;
        self.store
            .delete(&self.path(rel))
            .await
            .map_err(|e| self.failed("DELETE", rel, e))
    }

    /// The names of the objects directly under `dir` (`blocks`, `chain-keys`).
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, ArchiveError> {
        let within = format!("{}/", dir.trim_end_matches('/'));
        Ok(self
            .list_all(dir)
            .await?
            .into_iter()
            .filter_map(|p| {
                let name = p.strip_prefix(&within)?;
                (!name.contains('/')).then(|| name.to_owned())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback_url("http://127.0.0.1:9000"));
        assert!(is_loopback_url("http://localhost:9000/"));
        assert!(is_loopback_url("http://[::1]:9000"));
        assert!(!is_loopback_url("http://s3.example:9000"));
        assert!(!is_loopback_url("http://10.0.0.1"));
    }
}
