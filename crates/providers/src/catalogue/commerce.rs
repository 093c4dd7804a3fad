//! Payments, commerce, finance and business applications.

use spillway_signature::{Algorithm, Encoding, Field, Part, Scheme, Template, TimestampFormat};

use crate::shapes::{basic, body_hmac, body_sha256, lit, stripe_like};
use crate::{Handshake, Preset};

pub(super) fn presets() -> Vec<Preset> {
    let base64_body = |header| body_sha256(header).encoding(Encoding::Base64);
    vec![
        Preset::new("stripe", "Stripe", stripe_like("stripe-signature", ',', ("t", TimestampFormat::Seconds), "v1", Encoding::Hex))
            .dedupe_json("/id")
            .event_json("/type")
            .secret("the endpoint's signing secret, whsec_ included")
            .docs("https://docs.stripe.com/webhooks#verify-manually"),
        Preset::new("shopify", "Shopify", base64_body("x-shopify-hmac-sha256").delivery_id("x-shopify-event-id"))
            .dedupe_header("x-shopify-event-id")
            .event_header("x-shopify-topic")
            .forward(&["x-shopify-shop-domain", "x-shopify-api-version", "x-shopify-webhook-id", "x-shopify-triggered-at"])
            .secret("the app's client secret")
            .docs("https://shopify.dev/docs/apps/build/webhooks/subscribe/https"),
        Preset::new("square", "Square", base64_body("x-square-hmacsha256-signature")
            .template(Template::of(&[Part::Url, Part::Body])))
            .dedupe_json("/event_id")
            .event_json("/type")
            .secret("the subscription's signature key")
            .docs("https://developer.squareup.com/docs/webhooks/step3validate")
            .note("signs the notification URL: behind a proxy set the source's public_url"),
        Preset::new("paddle", "Paddle Billing", Scheme::new("", Algorithm::HmacSha256, "paddle-signature")
            .params(';', "h1")
            .timestamp(Field::Param("ts".into()), TimestampFormat::Seconds)
            .template(Template::of(&[Part::Timestamp, lit(":"), Part::Body])))
            .dedupe_json("/event_id")
            .event_json("/event_type")
            .docs("https://developer.paddle.com/webhooks/signature-verification"),
        Preset::new("coinbase-commerce", "Coinbase Commerce", body_sha256("x-cc-webhook-signature"))
            .dedupe_json("/event/id")
            .event_json("/event/type")
            .docs("https://docs.cdp.coinbase.com/commerce/api-architecture/webhooks-security"),
        Preset::new("chargebee", "Chargebee", basic())
            .dedupe_json("/id")
            .event_json("/event_type")
            .secret("user:password of the webhook's Basic authentication")
            .docs("https://www.chargebee.com/docs/2.0/events_and_webhooks.html")
            .note("Basic credentials, not a signature: the body is not authenticated"),
        Preset::new("lemon-squeezy", "Lemon Squeezy", body_sha256("x-signature"))
            .event_header("x-event-name")
            .docs("https://docs.lemonsqueezy.com/help/webhooks/signing-requests"),
        Preset::new("gocardless", "GoCardless", body_sha256("webhook-signature"))
            .dedupe_json("/meta/webhook_id")
            .docs("https://developer.gocardless.com/getting-started/staying-up-to-date-with-webhooks"),
        Preset::new("checkout-com", "Checkout.com", body_sha256("cko-signature"))
            .dedupe_json("/id")
            .event_json("/type")
            .docs("https://www.checkout.com/docs/developer-resources/webhooks/manage-webhooks/receive-webhooks"),
        Preset::new("razorpay", "Razorpay", body_sha256("x-razorpay-signature"))
            .dedupe_header("x-razorpay-event-id")
            .event_json("/event")
            .docs("https://razorpay.com/docs/webhooks/validate-test/"),
        Preset::new("mollie", "Mollie", body_hmac(Algorithm::HmacSha256, "x-mollie-signature", "sha256="))
            .dedupe_json("/id")
            .event_json("/type")
            .note("while Mollie rotates a secret it sends the signature header twice, one per secret: either may match")
            .docs("https://docs.mollie.com/reference/webhooks-new"),
        Preset::new("woocommerce", "WooCommerce", base64_body("x-wc-webhook-signature"))
            .dedupe_header("x-wc-webhook-delivery-id")
            .event_header("x-wc-webhook-topic")
            .forward(&["x-wc-webhook-source", "x-wc-webhook-id"])
            .docs("https://woocommerce.com/document/webhooks/"),
        Preset::new("xero", "Xero", base64_body("x-xero-signature"))
            .secret("the app's webhooks key")
            .docs("https://developer.xero.com/documentation/guides/webhooks/configuring-your-server/")
            .handshake(Handshake::XeroIntentToReceive),
        Preset::new("quickbooks", "QuickBooks Online", base64_body("intuit-signature"))
            .secret("the app's webhooks verifier token")
            .docs("https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks"),
        Preset::new("docusign", "DocuSign Connect", base64_body("x-docusign-signature-1")
            .also_header("x-docusign-signature-2")
            .also_header("x-docusign-signature-3"))
            .event_json("/event")
            .secret("a Connect HMAC key; each active key signs into its own header")
            .note("reads X-DocuSign-Signature-1 to -3: keep at most three Connect HMAC keys active")
            .docs("https://developers.docusign.com/platform/webhooks/connect/validate"),
        Preset::new("box", "Box", base64_body("box-signature-primary")
            .also_header("box-signature-secondary")
            .timestamp(Field::Header("box-delivery-timestamp".into()), TimestampFormat::Rfc3339)
            .template(Template::of(&[Part::Body, Part::Timestamp])))
            .dedupe_json("/id")
            .event_json("/trigger")
            .forward(&["box-delivery-id"])
            .tolerance_secs(600)
            .secret("the app's primary (or secondary) signature key: list both as two secrets")
            .docs("https://developer.box.com/guides/webhooks/v2/signatures-v2/"),
        Preset::new("dropbox", "Dropbox", body_sha256("x-dropbox-signature"))
            .secret("the app secret")
            .docs("https://www.dropbox.com/developers/reference/webhooks")
            .handshake(Handshake::DropboxChallenge),
        Preset::new("calendly", "Calendly", stripe_like("calendly-webhook-signature", ',', ("t", TimestampFormat::Seconds), "v1", Encoding::Hex))
            .event_json("/event")
            .docs("https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures"),
        Preset::new("typeform", "Typeform", body_hmac(Algorithm::HmacSha256, "typeform-signature", "sha256=").encoding(Encoding::Base64))
            .dedupe_json("/event_id")
            .event_json("/event_type")
            .docs("https://www.typeform.com/developers/webhooks/secure-your-webhooks/"),
        Preset::new("zendesk", "Zendesk", base64_body("x-zendesk-webhook-signature")
            .timestamp(Field::Header("x-zendesk-webhook-signature-timestamp".into()), TimestampFormat::Rfc3339)
            .template(Template::of(&[Part::Timestamp, Part::Body])))
            .dedupe_json("/id")
            .event_json("/type")
            .forward(&["x-zendesk-webhook-id", "x-zendesk-webhook-invocation-id"])
            .docs("https://developer.zendesk.com/documentation/webhooks/verifying/"),
        Preset::new("hubspot", "HubSpot (v3 signatures)", base64_body("x-hubspot-signature-v3")
            .timestamp(Field::Header("x-hubspot-request-timestamp".into()), TimestampFormat::Millis)
            .template(Template::of(&[Part::Method, Part::Url, Part::Body, Part::Timestamp])))
            .secret("the app's client secret")
            .docs("https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests")
            .note("signs the URL as sent: behind a proxy set the source's public_url; a URL with percent-escapes HubSpot decodes before signing does not verify"),
    ]
}
