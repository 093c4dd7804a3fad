//! The baseline: a bare hyper server that reads each POST's body and answers 202, doing no other
//! work. What the HTTP stack and the machine manage at all; Spillway's figures are reported
//! relative to it.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const ACCEPTED: &[u8] = br#"{"id":"00000000-0000-4000-8000-000000000000","status":"accepted"}"#;

/// Serves until the task is dropped (HTTP/1.1 and HTTP/2).
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req: http::Request<Incoming>| async move {
                // Read the body, as the ingress must before it can verify a signature.
                let _ = req.into_body().collect().await;
                let mut answer = Response::new(Full::new(Bytes::from_static(ACCEPTED)));
                *answer.status_mut() = StatusCode::ACCEPTED;
                Ok::<_, Infallible>(answer)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
