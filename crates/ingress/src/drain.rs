//! A body refused for its size, read to its end (within bounds) before the 413 is sent. hyper
//! closes an HTTP/1.1 connection whose request body is unread (hyperium/hyper#2384), and a
//! client still writing its body then gets a broken pipe or a reset instead of the answer:
//! it cannot tell a refusal from an outage, and retries. Reading the rest lets the 413 arrive
//! on a connection the client can keep using. The bytes are thrown away as they come and
//! charged to nothing; `ingress.refused_body_drain_bytes` and `body_rate_grace` bound what a
//! refused sender can make the process read.

use std::pin::Pin;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::time::Instant;

use crate::pipeline::Pipeline;

// === impl Pipeline ===

impl Pipeline {
    /// Reads and drops what is left of `body`, of which `read` bytes were read already and
    /// `declared` are announced (Content-Length), unless that is more than the drain allows.
    pub(crate) async fn drain<B>(&self, mut body: Pin<&mut B>, read: u64, declared: Option<u64>)
    where
        B: Body<Data = Bytes>,
    {
        let limit = self.refused_body_drain_bytes;
        if limit == 0 || declared.is_some_and(|d| d > limit) {
            return;
        }
        let deadline = Instant::now() + self.body_rate_grace;
        let mut total = read;
        while total <= limit {
            match tokio::time::timeout_at(deadline, body.as_mut().frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        total += data.len() as u64;
                    }
                }
                // The end, an error, or time up: nothing more to wait for.
                _ => return,
            }
        }
    }
}
