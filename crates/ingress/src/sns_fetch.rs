//! The ingress's only outbound requests: AWS SNS signing certificates and subscription
//! confirmations. Both go to a URL the message names, so both are HTTPS only, only to
//! `ingress.sns.hosts`, through the SSRF guard, bounded in time and in size. Certificates are
//! cached by URL, and concurrent requests for one URL share one fetch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spillway_config::SnsConfig;
use spillway_egress::{
    error_chain, guarded_connector, literal_ip, refused_by_guard, AddressPolicy, GuardedConnector,
    Roots, TlsError,
};

/// Fetches SNS certificates and confirms subscriptions; one per process.
#[derive(Debug, Clone)]
pub(crate) struct SnsFetcher {
    config: Arc<SnsConfig>,
    client: Client<GuardedConnector, Empty<Bytes>>,
    policy: AddressPolicy,
    /// Certificates (DER) by URL.
    certificates: moka::future::Cache<String, Arc<Vec<u8>>>,
}

/// Why a URL named by a message is not fetched: the sender's mistake or an attack (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {url:?} is refused: {reason}")]
pub(crate) struct UrlRefused {
    what: &'static str,
    url: String,
    reason: String,
}

/// Why a fetch failed: nothing the sender did wrong, so the message is answered 503 and
/// retried (or, for a certificate that is not one, refused as unverifiable).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0} answered {1}")]
    Status(String, StatusCode),
    #[error("{0} could not be reached: {1}")]
    Unreachable(String, String),
    #[error("{0} sent more than {1} bytes")]
    TooLarge(String, usize),
    /// What was served is not a certificate: 401, the message cannot be verified with it.
    #[error("{0}: {1}")]
    NotACertificate(String, String),
    /// The host answered 400, 404 or 410: AWS names only URLs it serves, so the message made
    /// it up.
    #[error("{0} answered {1}")]
    Refused(String, StatusCode),
    #[error("{0} could not be read: {1}")]
    Unreadable(String, String),
}

// === impl SnsFetcher ===

impl SnsFetcher {
    pub(crate) fn new(config: &SnsConfig) -> Result<Self, TlsError> {
        let policy = AddressPolicy::new(config.allow_cidrs.clone());
        let roots = Roots::System {
            extra: config.extra_roots.clone(),
        };
        let connector = guarded_connector(policy.clone(), &roots, true)?;
        Ok(Self {
            config: Arc::new(config.clone()),
            client: Client::builder(TokioExecutor::new()).build(connector),
            policy,
            certificates: moka::future::Cache::builder()
                .max_capacity(config.max_certificates)
                .time_to_live(config.certificate_ttl)
                .build(),
        })
    }

    /// `url` checked as a URL the SNS fetches may visit for a message of a topic in `region`:
    /// `https`, an allowed host (on AWS's domains, the topic's own regional endpoint:
    /// `sns.s3.amazonaws.com` is an S3 bucket's, not SNS's), and for a certificate (`pem`) a
    /// path ending in `.pem` and no query.
    pub(crate) fn check_url(
        &self,
        what: &'static str,
        url: &str,
        region: &str,
        pem: bool,
    ) -> Result<Uri, UrlRefused> {
        let refused = |reason: &str| UrlRefused {
            what,
            url: url.chars().take(256).collect(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| refused("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(refused("not https"));
        }
        let authority = uri.authority().ok_or_else(|| refused("no host"))?;
        if authority.as_str().contains('@') {
            return Err(refused("credentials in the URL"));
        }
        if !self.config.allows(authority.as_str()) {
            return Err(refused("the host is not one of ingress.sns.hosts"));
        }
        let host = authority.host().to_ascii_lowercase();
        let on_aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
        let regional = format!("sns.{region}.amazonaws.com");
        if on_aws && host != regional && host != format!("{regional}.cn") {
            return Err(refused(&format!(
                "the host is not {regional}, the endpoint of the topic's region"
            )));
        }
        if pem && (!uri.path().ends_with(".pem") || uri.query().is_some()) {
            return Err(refused("the path does not end in .pem, or has a query"));
        }
        Ok(uri)
    }

    /// The DER of the certificate at `uri` (checked by [`Self::check_url`]), from the cache
    /// or fetched once for every request that wants it meanwhile.
    pub(crate) async fn certificate(&self, uri: &Uri) -> Result<Arc<Vec<u8>>, Arc<FetchError>> {
        let url = uri.to_string();
        let fetch = async {
            let pem = self.get(uri, self.config.max_certificate_bytes).await?;
            // Checked as X.509 before it is cached: a file that is not one is not kept.
            spillway_signature::sns::certificate_der(&pem)
                .map(Arc::new)
                .map_err(|e| FetchError::NotACertificate(url.clone(), e.to_string()))
        };
        self.certificates.try_get_with(url.clone(), fetch).await
    }

    /// Visits a subscription's `SubscribeURL` (checked by [`Self::check_url`]); AWS answers
    /// 200 once the subscription is confirmed.
    pub(crate) async fn confirm(&self, uri: &Uri) -> Result<(), FetchError> {
        self.get(uri, 64 * 1024).await.map(|_| ())
    }

    /// GETs `uri`, its whole answer within the timeout and `limit` bytes.
    async fn get(&self, uri: &Uri, limit: usize) -> Result<Bytes, FetchError> {
        let url = uri.to_string();
        // hyper's connector does not resolve IP literals, so they are checked here.
        if let Some(ip) = uri.host().and_then(literal_ip) {
            if let Err(refused) = self.policy.check(ip) {
                return Err(FetchError::Unreachable(url, refused.to_string()));
            }
        }
        let request = Request::get(uri.clone())
            .header(http::header::USER_AGENT, "spillway-ingress")
            .body(Empty::new())
            .map_err(|e| FetchError::Unreachable(url.clone(), e.to_string()))?;
        let timeout = self.config.timeout;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let why = match refused_by_guard(&e) {
                    Some(refused) => refused.to_string(),
                    None => error_chain(&e),
                };
                FetchError::Unreachable(url.clone(), why)
            })?;
            let status = response.status();
            // Only "nothing here" is the message's fault; a throttle (429), a timeout (408)
            // or a denial may pass, and SNS does not retry a 4xx: those are 503 to retry.
            if matches!(status.as_u16(), 400 | 404 | 410) {
                return Err(FetchError::Refused(url.clone(), status));
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(url.clone(), status));
            }
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        FetchError::TooLarge(url.clone(), limit)
                    } else {
                        FetchError::Unreadable(url.clone(), e.to_string())
                    }
                })?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(FetchError::Timeout(url.clone(), timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher() -> SnsFetcher {
        SnsFetcher::new(&SnsConfig::default()).expect("fetcher")
    }

    #[tokio::test]
    async fn only_https_pem_urls_on_the_allowed_hosts_are_fetched() {
        let f = fetcher();
        let good = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem";
        assert!(f
            .check_url("SigningCertURL", good, "us-east-1", true)
            .is_ok());
        for (url, reason) in [
            ("http://sns.us-east-1.amazonaws.com/x.pem", "not https"),
            (
                "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
                "the host is not one of",
            ),
            (
                "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
                "the host is not one of",
            ),
            (
                "https://sns.us-east-1.amazonaws.com/x.txt",
                "the path does not end in .pem",
            ),
            (
                "https://user@sns.us-east-1.amazonaws.com/x.pem",
                "credentials in the URL",
            ),
            (
                "https://sns.us-east-1.amazonaws.com:8443/x.pem",
                "the host is not one of",
            ),
            ("not a url at all", "not"),
            // An S3 bucket named sns, on the old regional S3 endpoint: not SNS's.
            (
                "https://sns.s3-external-1.amazonaws.com/x.pem",
                "the host is not sns.us-east-1",
            ),
            (
                "https://sns.eu-west-1.amazonaws.com/x.pem",
                "the host is not sns.us-east-1",
            ),
            (
                "https://sns.us-east-1.amazonaws.com/x.pem?v=2",
                "the path does not end in .pem, or has a query",
            ),
        ] {
            let refused = f
                .check_url("SigningCertURL", url, "us-east-1", true)
                .expect_err(url);
            assert!(refused.reason.starts_with(reason), "{url}: {refused}");
        }
        let confirm = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x";
        assert!(f
            .check_url("SubscribeURL", confirm, "us-east-1", false)
            .is_ok());
        let china = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem";
        assert!(f
            .check_url("SigningCertURL", china, "cn-north-1", true)
            .is_ok());
    }

    #[tokio::test]
    async fn a_guarded_address_is_not_fetched() {
        let f = SnsFetcher::new(&SnsConfig {
            hosts: vec!["127.0.0.1:9".into()],
            ..SnsConfig::default()
        })
        .expect("fetcher");
        let uri = f
            .check_url(
                "SigningCertURL",
                "https://127.0.0.1:9/x.pem",
                "us-east-1",
                true,
            )
            .expect("allowed host");
        let err = f.certificate(&uri).await.expect_err("guarded");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
