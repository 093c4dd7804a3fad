//! A small HTTP client over hyper-util for tests: HTTP/1.1 with keep-alive, or HTTP/2 with
//! prior knowledge.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A string field of the JSON body.
    pub fn field(&self, name: &str) -> Option<String> {
        self.json()
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

impl Client {
    pub fn http1() -> Self {
        Self {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn http2() -> Self {
        Self {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, String> {
        self.send(Method::POST, url, headers, body).await
    }

    pub async fn get(&self, url: &str) -> Result<Reply, String> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }
}
