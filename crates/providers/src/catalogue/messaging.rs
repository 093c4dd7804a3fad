//! Chat, voice, email and customer-messaging services.

use spillway_signature::{
    Algorithm, Encoding, Field, Part, Scheme, SecretFormat, Template, TimestampFormat,
};

use crate::shapes::{basic, body_hmac, body_sha256, ed25519, lit, slack_like};
use crate::{Handshake, Preset};

pub(super) fn presets() -> Vec<Preset> {
    let meta = || body_hmac(Algorithm::HmacSha256, "x-hub-signature-256", "sha256=");
    vec![
        Preset::new("slack", "Slack", slack_like("x-slack-signature", "x-slack-request-timestamp"))
            .dedupe_json("/event_id")
            .event_json("/type")
            .forward(&["x-slack-retry-num", "x-slack-retry-reason"])
            .secret("the app's signing secret")
            .docs("https://api.slack.com/authentication/verifying-requests-from-slack")
            .handshake(Handshake::SlackUrlVerification),
        Preset::new("discord", "Discord interactions", ed25519("x-signature-ed25519", "x-signature-timestamp", "", Encoding::Hex, SecretFormat::Hex))
            .dedupe_json("/id")
            .event_json("/type")
            .secret("the application's public key, hex")
            .docs("https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint")
            .note("PINGs are answered; other interactions are accepted with 202, which Discord shows as a failed interaction: use it for event intake, not for replying")
            .handshake(Handshake::DiscordPing),
        Preset::new("zoom", "Zoom", slack_like("x-zm-signature", "x-zm-request-timestamp"))
            .event_json("/event")
            .secret("the event subscription's secret token")
            .docs("https://developers.zoom.us/docs/api/webhooks/")
            .handshake(Handshake::ZoomUrlValidation),
        Preset::new("twitch", "Twitch EventSub", Scheme::new("", Algorithm::HmacSha256, "twitch-eventsub-message-signature")
            .prefix("sha256=")
            .id(Field::Header("twitch-eventsub-message-id".into()))
            .timestamp(Field::Header("twitch-eventsub-message-timestamp".into()), TimestampFormat::Rfc3339)
            .template(Template::of(&[Part::Id, Part::Timestamp, Part::Body])))
            .dedupe_signed_id()
            .event_header("twitch-eventsub-subscription-type")
            .forward(&["twitch-eventsub-message-type", "twitch-eventsub-message-retry", "twitch-eventsub-subscription-version"])
            .tolerance_secs(600)
            .secret("the secret given when the subscription was created")
            .docs("https://dev.twitch.tv/docs/eventsub/handling-webhook-events/")
            .handshake(Handshake::TwitchCallbackVerification),
        Preset::new("meta", "Meta (Facebook) Graph webhooks", meta())
            .event_json("/object")
            .secret("the app secret")
            .docs("https://developers.facebook.com/docs/graph-api/webhooks/getting-started")
            .handshake(Handshake::MetaSubscribe),
        Preset::new("whatsapp", "WhatsApp Cloud API", meta())
            .dedupe_json("/entry/0/changes/0/value/messages/0/id")
            .event_json("/entry/0/changes/0/field")
            .secret("the app secret of the Meta app")
            .docs("https://developers.facebook.com/docs/whatsapp/cloud-api/guides/set-up-webhooks")
            .note("status updates carry no message id: their key is the body hash")
            .handshake(Handshake::MetaSubscribe),
        Preset::new("instagram", "Instagram", meta())
            .event_json("/entry/0/changes/0/field")
            .secret("the app secret of the Meta app")
            .docs("https://developers.facebook.com/docs/instagram-platform/webhooks")
            .handshake(Handshake::MetaSubscribe),
        Preset::new("twilio", "Twilio", Scheme::new("", Algorithm::HmacSha1, "x-twilio-signature")
            .encoding(Encoding::Base64)
            .template(Template::of(&[Part::Url, Part::Form])))
            .dedupe_header("i-twilio-idempotency-token")
            .secret("the account's auth token")
            .docs("https://www.twilio.com/docs/usage/webhooks/webhooks-security")
            .note("form requests only (the JSON bodySHA256 variant is not supported); signs the URL: behind a proxy set the source's public_url"),
        Preset::new("sendgrid", "SendGrid Event Webhook", Scheme::new("", Algorithm::EcdsaP256Sha256, "x-twilio-email-event-webhook-signature")
            .encoding(Encoding::Base64)
            .timestamp(Field::Header("x-twilio-email-event-webhook-timestamp".into()), TimestampFormat::Seconds)
            .template(Template::of(&[Part::Timestamp, Part::Body])))
            .secret("the verification key (a base64 public key) from the signed event webhook settings")
            .docs("https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features")
            .note("a batch of events per request: the key is the body hash"),
        Preset::new("mailgun", "Mailgun", Scheme::new("", Algorithm::HmacSha256, "")
            .signature_in_body("/signature/signature")
            .id(Field::Json("/signature/token".into()))
            .timestamp(Field::Json("/signature/timestamp".into()), TimestampFormat::Seconds)
            .template(Template::of(&[Part::Timestamp, Part::Id])))
            // The signature covers the token, not the event: the token is what may be
            // accepted once. A signature block copied onto other event data is then a
            // duplicate, not a new event.
            .dedupe_signed_id()
            .event_json("/event-data/event")
            .secret("the HTTP webhook signing key")
            .docs("https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks")
            .note("signs a token and a timestamp, not the event data: the token is the dedupe key, so each signature is accepted once"),
        Preset::new("mandrill", "Mailchimp Transactional (Mandrill)", Scheme::new("", Algorithm::HmacSha1, "x-mandrill-signature")
            .encoding(Encoding::Base64)
            .template(Template::of(&[Part::Url, Part::Form])))
            .secret("the webhook's authentication key")
            .docs("https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/#authenticating-webhook-requests")
            .note("signs the URL: behind a proxy set the source's public_url")
            .handshake(Handshake::HeadProbe),
        Preset::new("postmark", "Postmark", basic())
            .event_json("/RecordType")
            .secret("user:password put in the webhook URL")
            .docs("https://postmarkapp.com/developer/webhooks/webhooks-overview#protecting-your-webhook")
            .note("Basic credentials, not a signature: the body is not authenticated"),
        Preset::new("resend", "Resend", Scheme::standard_webhooks())
            .dedupe_signed_id()
            .event_json("/type")
            .secret("the signing secret, whsec_...")
            .docs("https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests"),
        Preset::new("intercom", "Intercom", body_hmac(Algorithm::HmacSha1, "x-hub-signature", "sha1="))
            .dedupe_json("/id")
            .event_json("/topic")
            .secret("the app's client secret")
            .docs("https://developers.intercom.com/docs/webhooks/setting-up-webhooks#signed-notifications"),
        Preset::new("segment", "Segment", body_hmac(Algorithm::HmacSha1, "x-signature", ""))
            .dedupe_json("/messageId")
            .event_json("/type")
            .secret("the webhook destination's shared secret")
            .docs("https://www.twilio.com/docs/segment/connections/destinations/catalog/actions-webhook"),
        Preset::new("customer-io", "Customer.io", body_sha256("x-cio-signature")
            .timestamp(Field::Header("x-cio-timestamp".into()), TimestampFormat::Seconds)
            .template(Template::of(&[lit("v0:"), Part::Timestamp, lit(":"), Part::Body])))
            .dedupe_json("/event_id")
            .event_json("/metric")
            .secret("the reporting webhooks' signing key")
            .docs("https://docs.customer.io/api/webhooks/"),
        Preset::new("nylas", "Nylas", body_sha256("x-nylas-signature"))
            .dedupe_json("/id")
            .event_json("/type")
            .docs("https://developer.nylas.com/docs/v3/notifications/webhooks/"),
        Preset::new("telnyx", "Telnyx", ed25519("telnyx-signature-ed25519", "telnyx-timestamp", "|", Encoding::Base64, SecretFormat::Base64 { prefix: "".into() }))
            .dedupe_json("/data/id")
            .event_json("/data/event_type")
            .secret("the account's public key, base64")
            .docs("https://developers.telnyx.com/docs/development/sdk/node/webhooks"),
    ]
}
