//! Identity, AI, media and webhook platforms, most of them Standard Webhooks senders.

use spillway_signature::{Encoding, Scheme, TimestampFormat};

use crate::shapes::{stripe_like, token};
use crate::{Handshake, Preset};

pub(super) fn presets() -> Vec<Preset> {
    let standard = |name, display, docs| {
        Preset::new(name, display, Scheme::standard_webhooks())
            .dedupe_signed_id()
            .event_json("/type")
            .secret("the signing secret, whsec_ and base64")
            .docs(docs)
    };
    vec![
        standard("standard-webhooks", "Standard Webhooks", "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md"),
        standard("svix", "Svix", "https://docs.svix.com/receiving/verifying-payloads/how-manual"),
        standard("clerk", "Clerk", "https://clerk.com/docs/webhooks/verify-webhooks"),
        standard("openai", "OpenAI", "https://platform.openai.com/docs/guides/webhooks"),
        Preset::new("standard-webhooks-v1a", "Standard Webhooks, asymmetric (v1a, Ed25519)", Scheme::standard_webhooks_v1a())
            .dedupe_signed_id()
            .event_json("/type")
            .secret("the sender's public key, whpk_ and base64 (never its whsk_ signing key)")
            .docs("https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#signature-scheme")
            .note("v1 (HMAC) signatures in the same header are skipped: a sender that signs both ways can be received with either preset"),
        Preset::new("replicate", "Replicate", Scheme::standard_webhooks())
            .dedupe_signed_id()
            .secret("the account's webhook signing secret, whsec_...")
            .docs("https://replicate.com/docs/topics/webhooks/verify-webhook"),
        Preset::new("mux", "Mux", stripe_like("mux-signature", ',', ("t", TimestampFormat::Seconds), "v1", Encoding::Hex))
            .dedupe_json("/id")
            .event_json("/type")
            .docs("https://www.mux.com/docs/core/verify-webhook-signatures"),
        Preset::new("workos", "WorkOS", stripe_like("workos-signature", ',', ("t", TimestampFormat::Millis), "v1", Encoding::Hex))
            .dedupe_json("/id")
            .event_json("/event")
            .docs("https://workos.com/docs/events/data-syncing/webhooks"),
        Preset::new("persona", "Persona", stripe_like("persona-signature", ',', ("t", TimestampFormat::Seconds), "v1", Encoding::Hex))
            .dedupe_json("/data/id")
            .event_json("/data/attributes/name")
            .secret("the webhook secret, wbhsec_ included")
            .docs("https://docs.withpersona.com/docs/webhooks-best-practices")
            .note("while Persona rotates its secret it sends two t=,v1= groups in one header: either signature verifies; groups with different t= are refused (400)"),
        Preset::new("okta", "Okta event hooks", token("authorization", ""))
            .dedupe_json("/eventId")
            .event_json("/data/events/0/eventType")
            .secret("the Authorization header value configured on the event hook")
            .docs("https://developer.okta.com/docs/concepts/event-hooks/")
            .note("a token, not a signature: the body is not authenticated")
            .handshake(Handshake::OktaVerification),
        Preset::new("auth0", "Auth0 log streams", token("authorization", ""))
            .dedupe_json("/log_id")
            .event_json("/data/type")
            .secret("the log stream's Authorization token")
            .docs("https://auth0.com/docs/customize/log-streams/custom-log-streams")
            .note("a token, not a signature; use the JSON Object format so one request is one log event"),
        Preset::new("microsoft-graph", "Microsoft Graph change notifications", token("", "").signature_in_body("/value/0/clientState"))
            .event_json("/value/0/changeType")
            .secret("the clientState given when the subscription was created")
            .docs("https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks")
            .note("the clientState of the first notification in a batch is compared; the body is not signed")
            .handshake(Handshake::GraphValidationToken),
        Preset::new("aws-sns", "Amazon SNS (HTTP/S subscriptions)", Scheme::aws_sns())
            .dedupe_json("/MessageId")
            .event_json("/TopicArn")
            // No x-amz-sns-* header is forwarded: none is signed, and the body carries the
            // signed Type, MessageId and TopicArn.
            // SNS retries a delivery for up to an hour (its HTTP/S delivery policy's limit),
            // resending the message as first signed.
            .tolerance_secs(3900)
            .secret("no secret: the source lists its topic ARNs (sns.topic_arns); the key is AWS's certificate")
            .docs("https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html")
            .note("raw message delivery must be off (a raw message is not signed); only the listed topics are accepted; the event type is the topic ARN")
            .handshake(Handshake::SnsSubscriptionConfirmation),
    ]
}
