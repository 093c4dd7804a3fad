//! Deliveries of events whose body is in object storage (the claim check): the body itself,
//! streamed from the store and never held whole, or, for a subscription that asks for it
//! (`large_body: reference`), a signed JSON reference with a pre-signed URL.
//!
//! A streamed body is read twice: once to sign it (a Standard Webhooks signature covers the
//! body and goes in a header, before the body), once as it is sent. Both reads are checked
//! against the SHA-256 the ingress took; a body that does not match fails the request it is
//! in, so a subscriber never gets a changed body under a valid signature.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{header, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use spillway_config::ResolvedSubscription;
use spillway_core::ObjectRef;
use spillway_objects::{Objects, ObjectsError};
use spillway_signature::{sign_streamed, unix_seconds, Scheme};

use super::{
    active_keys, head, signed_whole, BoxError, DeliveryOutcome, HttpDeliverer, OutBody,
    OutboundEvent,
};

/// The content type of a reference delivered in place of a body.
pub const REFERENCE_CONTENT_TYPE: &str = "application/vnd.spillway.object-reference+json";

/// What a subscription with `large_body: reference` gets.
#[derive(Debug, serde::Serialize)]
struct ReferenceBody<'a> {
    /// Where the body is, as the record names it (`s3://bucket/key`).
    uri: &'a str,
    /// A GET of this URL returns the body until `expires_at`.
    url: String,
    /// RFC 3339.
    expires_at: String,
    size: u64,
    /// Hex SHA-256 of the body: the subscriber checks what it fetched against it.
    sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
}

// === impl HttpDeliverer ===

impl HttpDeliverer {
    /// The request delivering `event`, whose body is `stored`; the outcome that ends the
    /// delivery when it cannot be made.
    pub(super) async fn stored_request(
        &self,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        stored: &ObjectRef,
        attempt: u32,
    ) -> Result<Request<OutBody>, DeliveryOutcome> {
        let Some(objects) = &self.objects else {
            return Err(failed(
                "the event's body is in object storage and this worker has no `objects:`".into(),
            ));
        };
        let now = SystemTime::now();
        let timestamp = unix_seconds(now);
        let (signed, body, content_type) = match subscription.reference_expiry {
            Some(expiry) => {
                let body = reference_body(objects, stored, now, expiry)
                    .await
                    .map_err(|e| store_outcome(&e))?;
                let signed = signed_whole(subscription, &event.event_id, now, timestamp, &body);
                (signed, super::whole(body), REFERENCE_CONTENT_TYPE)
            }
            None => {
                let keys: Vec<&[u8]> = active_keys(subscription, now).collect();
                let signed = signed_over(objects, stored, &keys, &event.event_id, timestamp)
                    .await
                    .map_err(|e| store_outcome(&e))?;
                let body = sent_from(objects, stored)
                    .await
                    .map_err(|e| store_outcome(&e))?;
                let content_type = event.content_type.as_deref();
                (
                    signed,
                    body,
                    content_type.unwrap_or("application/octet-stream"),
                )
            }
        };
        let mut head = head(subscription, event, attempt, timestamp, signed)
            .map_err(super::BuildError::refused)?
            .header(header::CONTENT_TYPE, content_type);
        if subscription.reference_expiry.is_none() {
            head = head.header(header::CONTENT_LENGTH, stored.size);
        }
        head.body(body)
            .map_err(|e| super::BuildError::Http(e).refused())
    }
}

/// The headers `keys` sign the stored body with, read through once (and checked).
async fn signed_over(
    objects: &Objects,
    stored: &ObjectRef,
    keys: &[&[u8]],
    id: &str,
    timestamp: i64,
) -> Result<Vec<Vec<(String, String)>>, ObjectsError> {
    if keys.is_empty() {
        // No key signs: the request is refused for it by `head`.
        return Ok(Vec::new());
    }
    let scheme = Scheme::standard_webhooks();
    // Standard Webhooks always signs in pieces.
    let Ok(mut signer) = sign_streamed(&scheme, keys, id, timestamp) else {
        return Ok(Vec::new());
    };
    let mut chunks = objects.stream(stored).await?;
    while let Some(chunk) = chunks.next().await {
        signer.update(&chunk?);
    }
    Ok(signer.finish().unwrap_or_default())
}

/// The stored body as a request body, read as it is sent; it breaks off (and the request
/// fails) if the bytes do not match the reference.
async fn sent_from(objects: &Objects, stored: &ObjectRef) -> Result<OutBody, ObjectsError> {
    let chunks = objects.stream(stored).await?;
    let frames = chunks
        .map_ok(Frame::data)
        .map_err(|e| -> BoxError { Box::new(e) });
    Ok(StreamBody::new(frames).boxed_unsync())
}

/// The JSON reference to `stored`, with a URL that lets its holder read it for `expiry`.
async fn reference_body(
    objects: &Objects,
    stored: &ObjectRef,
    now: SystemTime,
    expiry: Duration,
) -> Result<Bytes, ObjectsError> {
    let url = objects.signed_url(stored, expiry).await?;
    let expires_at = time::OffsetDateTime::from(now + expiry)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = ReferenceBody {
        uri: &stored.uri,
        url,
        expires_at,
        size: stored.size,
        sha256: &stored.sha256,
        content_type: stored.content_type.as_deref(),
    };
    Ok(serde_json::to_vec(&body).unwrap_or_default().into())
}

/// What a store's failure means for the delivery: a body that is gone or does not match
/// will not come back (dead letter); a store that did not answer may (retry).
fn store_outcome(e: &ObjectsError) -> DeliveryOutcome {
    match e {
        e if e.is_gone() => DeliveryOutcome::Refused {
            reason: format!(
                "the event's body is no longer in object storage (deleted, or past its retention): {e}"
            ),
        },
        ObjectsError::Mismatch { .. } | ObjectsError::Foreign { .. } | ObjectsError::CannotSign { .. } => {
            DeliveryOutcome::Refused {
                reason: e.to_string(),
            }
        }
        _ => failed(format!("object storage: {e}")),
    }
}

fn failed(reason: String) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        reason,
        status: None,
        retry_after: None,
    }
}
