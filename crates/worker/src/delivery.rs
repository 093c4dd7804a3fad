//! Outbound delivery: one signed HTTP POST of an event to a subscriber, and what came of it.
//!
//! Requests carry the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`) signed with every active secret of the subscription, so a subscriber
//! mid-rotation verifies with either. The body is the event's exact bytes.
//!
//! [`Deliverer`] is HTTP in a worker and, in unit tests, a [`MemoryDeliverer`] that answers as
//! scripted and records what it was asked to deliver.

mod memory;
mod stored;

pub use memory::{MemoryAnswer, MemoryDeliverer, MemoryDelivery};

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spillway_config::ResolvedSubscription;
use spillway_core::{headers, ObjectRef};
use spillway_objects::Objects;
use spillway_signature::{sign, unix_seconds, Scheme};

use spillway_egress::{
    error_chain, guarded_connector, literal_ip, refused_by_guard, AddressPolicy, GuardedConnector,
    Roots,
};

/// The part of an answer body read before the connection is reused; the rest is not waited for.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long the answer body is read after its status arrived. The status decides the
/// outcome; the body is read only so the connection can be reused (L-15: a 200 whose body
/// stalls is a success, not a failure retried later).
const ANSWER_BODY_WAIT: Duration = Duration::from_secs(1);

/// Bytes kept as they are in `spillway-dedupe-key`; everything else is percent-encoded, so
/// any key (control characters, non-ASCII) makes a valid header, and one key one value.
const DEDUPE_KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':')
    .remove(b'/')
    .remove(b'@');

/// An event on its way to a subscriber.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    /// The ingress's event id; the `webhook-id` the subscriber dedupes on.
    pub event_id: String,
    pub source: String,
    pub event_type: Option<String>,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    /// The source's dedupe key (the provider's delivery or event id), when the source
    /// deduplicates: the same for every copy of an event that at-least-once may deliver,
    /// where `event_id` is not (a sender's retry after a lost answer gets a new one).
    pub dedupe_key: Option<String>,
    /// Deliveries this event has already been through; sent incremented.
    pub hops: u32,
    pub body: Bytes,
    /// A Protobuf record in its JSON mapping, for subscriptions that take JSON
    /// (`protobuf_body: json`); None for other sources' events.
    pub json_body: Option<Bytes>,
    /// Where the body is when it is in object storage (`body` is then empty).
    pub stored: Option<ObjectRef>,
    /// For a test event the console sent (`spillway-test-event`): the one subscription it is
    /// for. None for the events providers sent.
    pub test_for: Option<String>,
}

// === impl OutboundEvent ===

impl OutboundEvent {
    /// Does `subscription` get this event? A test event goes to its subscription only;
    /// others by source and event type ([`wants`]).
    pub fn is_for(&self, subscription: &ResolvedSubscription) -> bool {
        match &self.test_for {
            Some(id) => *id == subscription.id,
            None => wants(subscription, &self.source, self.event_type.as_deref()),
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx within the timeout.
    Delivered { status: u16 },
    /// Anything else: worth another attempt later.
    Failed {
        reason: String,
        status: Option<u16>,
        /// The subscriber's Retry-After, on 429 and 503.
        retry_after: Option<Duration>,
    },
    /// The target is forbidden by the SSRF guard: retrying cannot help.
    Refused { reason: String },
}

/// An attempt's outcome and the first bytes of the subscriber's answer body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub outcome: DeliveryOutcome,
    /// Up to [`spillway_core::attempt::RESPONSE_HEAD_BYTES`] of the answer body; None when
    /// there was no answer or its body did not come within [`ANSWER_BODY_WAIT`].
    pub response_head: Option<Bytes>,
}

/// A request body: held whole, or streamed from object storage.
pub(crate) type OutBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why a streamed request body broke off.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type HttpsClient = Client<GuardedConnector, OutBody>;

/// Delivers events; one per worker process, cheap to clone.
///
/// An enum rather than a trait, as `spillway_kafka::EventProducer` is: the handling keeps one
/// concrete type (no boxed futures for an async trait object, no type parameter running
/// through `Handling`, the lanes and the worker), and the memory variant answers through the
/// very `deliver` call the HTTP one does.
#[derive(Debug, Clone)]
pub enum Deliverer {
    /// Signed POSTs over HTTP(S), through the SSRF guard. Boxed: its client is large and the
    /// memory variant tiny.
    Http(Box<HttpDeliverer>),
    /// Scripted outcomes, for unit tests.
    Memory(MemoryDeliverer),
}

/// Signed POSTs over HTTP(S), through the SSRF guard.
#[derive(Debug, Clone)]
pub struct HttpDeliverer {
    client: HttpsClient,
    policy: AddressPolicy,
    /// Where the bodies of events over their source's `inline_max_bytes` are.
    pub(crate) objects: Option<Objects>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for deliveries")]
pub struct SetupError(#[from] spillway_egress::TlsError);

// === impl Deliverer ===

impl Deliverer {
    /// The HTTP deliverer, refusing targets `policy` forbids and trusting `roots`.
    pub fn new(policy: AddressPolicy, roots: &Roots) -> Result<Self, SetupError> {
        HttpDeliverer::new(policy, roots).map(|http| Self::Http(Box::new(http)))
    }

    /// The roots `worker.extra_roots` asks for: the built-in bundle, and the file's
    /// certificates when it is set.
    pub fn roots(extra: Option<&std::path::Path>) -> Roots {
        extra.map_or(Roots::BuiltIn, |extra| Roots::BuiltInAnd {
            extra: extra.to_owned(),
        })
    }

    /// The deliverer reading stored bodies from `objects`.
    pub fn with_objects(self, objects: Option<Objects>) -> Self {
        match self {
            Self::Http(mut http) => {
                http.objects = objects;
                Self::Http(http)
            }
            memory => memory,
        }
    }

    /// A deliverer that answers as `memory` is told (see [`MemoryDeliverer`]).
    pub fn memory(memory: MemoryDeliverer) -> Self {
        Self::Memory(memory)
    }

    /// Delivers `event` to the subscription, attempt number `attempt` (1 for the first).
    pub async fn deliver(
        &self,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
    ) -> DeliveryOutcome {
        self.deliver_answered(subscription, event, attempt)
            .await
            .outcome
    }

    /// As [`Self::deliver`], with the head of the subscriber's answer for the attempt record.
    pub async fn deliver_answered(
        &self,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
    ) -> Answered {
        match self {
            Self::Http(http) => http.deliver(subscription, event, attempt).await,
            Self::Memory(memory) => Answered {
                outcome: memory.deliver(subscription, event, attempt).await,
                response_head: None,
            },
        }
    }
}

// === impl HttpDeliverer ===

impl HttpDeliverer {
    pub fn new(policy: AddressPolicy, roots: &Roots) -> Result<Self, SetupError> {
        let https = guarded_connector(policy.clone(), roots, false)?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            policy,
            objects: None,
        })
    }

    /// POSTs `event` to the subscription's URL, attempt number `attempt` (1 for the first).
    pub async fn deliver(
        &self,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
    ) -> Answered {
        let mut response_head = None;
        let outcome = self
            .exchange(subscription, event, attempt, &mut response_head)
            .await;
        Answered {
            outcome,
            response_head,
        }
    }

    async fn exchange(
        &self,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
        response_head: &mut Option<Bytes>,
    ) -> DeliveryOutcome {
        // hyper's connector does not resolve IP literals, so they are checked here.
        if let Some(ip) = subscription.url.host().and_then(literal_ip) {
            if let Err(refused) = self.policy.check(ip) {
                return DeliveryOutcome::Refused {
                    reason: refused.to_string(),
                };
            }
        }
        let built = match &event.stored {
            Some(stored) => {
                self.stored_request(subscription, event, stored, attempt)
                    .await
            }
            None => build_request(subscription, event, attempt).map_err(BuildError::refused),
        };
        let request = match built {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, response))
        };
        let answered = match tokio::time::timeout(subscription.timeout, exchange).await {
            Ok(Ok((status, retry_after, response))) => {
                // Read (a bounded part of) the answer so the connection can be reused; a
                // body that does not come is given up, the status stands.
                let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect();
                if let Ok(Ok(body)) = tokio::time::timeout(ANSWER_BODY_WAIT, body).await {
                    let mut body = body.to_bytes();
                    body.truncate(spillway_core::attempt::RESPONSE_HEAD_BYTES);
                    *response_head = Some(body);
                }
                Ok(Ok((status, retry_after)))
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(elapsed) => Err(elapsed),
        };
        match answered {
            Err(_) => DeliveryOutcome::Failed {
                reason: format!("no answer within {:?}", subscription.timeout),
                status: None,
                retry_after: None,
            },
            Ok(Err(e)) => match refused_by_guard(&e) {
                Some(refused) => DeliveryOutcome::Refused {
                    reason: refused.to_string(),
                },
                None => DeliveryOutcome::Failed {
                    reason: error_chain(&e),
                    status: None,
                    retry_after: None,
                },
            },
            Ok(Ok((status, _))) if status.is_success() => DeliveryOutcome::Delivered {
                status: status.as_u16(),
            },
            // A Spillway ingress (this cluster's or another's) refusing an event that went
            // round too often: retrying would only go round again.
            Ok(Ok((StatusCode::LOOP_DETECTED, _))) => DeliveryOutcome::Refused {
                reason: "answered 508 Loop Detected: the subscription feeds events back into a Spillway ingress".into(),
            },
            Ok(Ok((status, retry_after))) => DeliveryOutcome::Failed {
                reason: format!("answered {status}"),
                status: Some(status.as_u16()),
                retry_after: if matches!(status.as_u16(), 429 | 503) {
                    retry_after
                } else {
                    None
                },
            },
        }
    }
}

fn build_request(
    subscription: &ResolvedSubscription,
    event: &OutboundEvent,
    attempt: u32,
) -> Result<Request<OutBody>, BuildError> {
    let now = SystemTime::now();
    let timestamp = unix_seconds(now);
    // The body as this subscription takes it: what is signed is what is sent.
    let (body, content_type) = match (&event.json_body, subscription.protobuf_json) {
        (Some(json), true) => (json, Some("application/json")),
        _ => (&event.body, event.content_type.as_deref()),
    };
    let signatures = signed_whole(subscription, &event.event_id, now, timestamp, body);
    let head = head(subscription, event, attempt, timestamp, signatures)?;
    let head = head.header(
        header::CONTENT_TYPE,
        content_type.unwrap_or("application/json"),
    );
    Ok(head.body(whole(body.clone()))?)
}

/// The headers each of the subscription's secrets active at `now` signs `body` with, as
/// event `id` at `timestamp`.
pub(crate) fn signed_whole(
    subscription: &ResolvedSubscription,
    id: &str,
    now: SystemTime,
    timestamp: i64,
    body: &[u8],
) -> Vec<Vec<(String, String)>> {
    let scheme = Scheme::standard_webhooks();
    active_keys(subscription, now)
        // Standard Webhooks always signs; an empty result ends in `head` as L-14.
        .map(|key| sign(&scheme, key, id, timestamp, body).unwrap_or_default())
        .collect()
}

/// The raw keys of the subscription's secrets that sign at `now`.
pub(crate) fn active_keys(
    subscription: &ResolvedSubscription,
    now: SystemTime,
) -> impl Iterator<Item = &[u8]> {
    subscription
        .secrets
        .iter()
        .filter(move |s| s.not_after.is_none_or(|end| now < end))
        .map(|s| s.key.as_slice())
}

/// A request to the subscription with every header but the content type: `signed` holds the
/// headers each active secret's signature gave, one list per secret.
pub(crate) fn head(
    subscription: &ResolvedSubscription,
    event: &OutboundEvent,
    attempt: u32,
    timestamp: i64,
    signed: Vec<Vec<(String, String)>>,
) -> Result<http::request::Builder, BuildError> {
    // One `v1,<base64>` per active secret, space-separated, as the spec allows for rotation.
    let signatures: Vec<String> = signed
        .into_iter()
        .flatten()
        .filter(|(name, _)| name == "webhook-signature")
        .map(|(_, value)| value)
        .collect();
    // L-14: an unsigned delivery would be refused by every subscriber that verifies, and
    // accepted by one that does not; neither is what the subscription asked for.
    if signatures.is_empty() {
        return Err(BuildError::NoActiveSecret);
    }
    let mut request = Request::post(subscription.url.clone())
        .header("webhook-id", &event.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .header(
            header::USER_AGENT,
            concat!("Spillway/", env!("CARGO_PKG_VERSION")),
        )
        .header(headers::HOP, (event.hops + 1).to_string())
        .header(headers::SOURCE, &event.source)
        .header(headers::control::ATTEMPT, attempt.to_string());
    // L-5: an event type from a body can hold anything; one that is not a valid header value
    // is left out rather than failing the delivery (subscribers still have the body).
    if let Some(t) = event
        .event_type
        .as_deref()
        .and_then(|t| http::HeaderValue::from_str(t).ok())
    {
        request = request.header(headers::EVENT_TYPE, t);
    }
    if let Some(key) = &event.dedupe_key {
        request = request.header(headers::DEDUPE_KEY, dedupe_identity(&event.source, key));
    }
    if let Some(tp) = &event.traceparent {
        request = request.header(headers::TRACEPARENT, tp);
    }
    if event.test_for.is_some() {
        request = request.header(headers::TEST_EVENT, "true");
    }
    for (name, value) in &subscription.headers {
        request = request.header(name, value);
    }
    Ok(request)
}

/// A body held whole, as a request body.
pub(crate) fn whole(body: Bytes) -> OutBody {
    Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Why a request could not be built; retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("every signing secret of the subscription has expired: add a new one")]
    NoActiveSecret,
    #[error(transparent)]
    Http(#[from] http::Error),
}

impl BuildError {
    /// The delivery this refuses.
    pub(crate) fn refused(self) -> DeliveryOutcome {
        DeliveryOutcome::Refused {
            reason: format!("cannot build the request: {self}"),
        }
    }
}

/// `spillway-dedupe-key`: `<source>:<key>`, the key percent-encoded. Stable across every copy
/// of an event, so subscribers drop the duplicates that at-least-once allows (M-11).
pub(crate) fn dedupe_identity(source: &str, key: &str) -> String {
    format!(
        "{source}:{}",
        percent_encoding::utf8_percent_encode(key, DEDUPE_KEY_ESCAPES)
    )
}

/// Seconds or an HTTP date, as RFC 9110 allows.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Does `subscription` want events of `source` with this `event_type`?
pub fn wants(subscription: &ResolvedSubscription, source: &str, event_type: Option<&str>) -> bool {
    let source_ok =
        subscription.sources.is_empty() || subscription.sources.iter().any(|s| s == source);
    let type_ok = subscription.event_types.is_empty()
        || event_type.is_some_and(|t| subscription.event_types.iter().any(|w| w == t));
    source_ok && type_ok
}

#[cfg(test)]
mod tests;
