//! Source hosting, CI, monitoring, content and work-management tools.

use spillway_signature::{
    Algorithm, Encoding, Field, Part, Scheme, SecretFormat, Template, TimestampFormat,
};

use crate::shapes::{body_hmac, body_sha256, lit, slack_like, stripe_like, token};
use crate::{Handshake, Preset};

pub(super) fn presets() -> Vec<Preset> {
    let sha256_prefixed = |header| body_hmac(Algorithm::HmacSha256, header, "sha256=");
    vec![
        Preset::new("github", "GitHub", sha256_prefixed("x-hub-signature-256").delivery_id("x-github-delivery"))
            .dedupe_header("x-github-delivery")
            .event_header("x-github-event")
            .forward(&["x-github-hook-id", "x-github-hook-installation-target-type"])
            .secret("the webhook secret's text")
            .docs("https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries")
            .note("signs the body only; the delivery id travels unsigned, so a replay key catches resent copies"),
        Preset::new("gitlab", "GitLab", token("x-gitlab-token", ""))
            .dedupe_header("idempotency-key")
            .event_header("x-gitlab-event")
            .forward(&["x-gitlab-event-uuid", "x-gitlab-webhook-uuid", "x-gitlab-instance"])
            .secret("the webhook's secret token, sent as it is in X-Gitlab-Token")
            .docs("https://docs.gitlab.com/user/project/integrations/webhooks/#secret-token")
            .note("a token, not a signature: the body is not authenticated; GitLab before 17.x sends no Idempotency-Key, so the body hash is the key"),
        Preset::new("gitea", "Gitea and Forgejo", body_sha256("x-gitea-signature"))
            .dedupe_header("x-gitea-delivery")
            .event_header("x-gitea-event")
            .docs("https://docs.gitea.com/usage/webhooks")
            .note("configure the webhook with the JSON content type: a form body's signature covers the decoded payload"),
        Preset::new("bitbucket", "Bitbucket Cloud", sha256_prefixed("x-hub-signature"))
            .dedupe_header("x-request-uuid")
            .event_header("x-event-key")
            .forward(&["x-hook-uuid", "x-attempt-number"])
            .docs("https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/"),
        Preset::new("bitbucket-server", "Bitbucket Data Center", sha256_prefixed("x-hub-signature"))
            .dedupe_header("x-request-id")
            .event_header("x-event-key")
            .docs("https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html"),
        Preset::new("jira", "Jira Cloud", sha256_prefixed("x-hub-signature"))
            .dedupe_header("x-atlassian-webhook-identifier")
            .event_json("/webhookEvent")
            .forward(&["x-atlassian-webhook-retry"])
            .docs("https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks"),
        Preset::new("circleci", "CircleCI", body_sha256("circleci-signature").params(',', "v1"))
            .dedupe_json("/id")
            .event_header("circleci-event-type")
            .docs("https://circleci.com/docs/webhooks/"),
        Preset::new("sentry", "Sentry", body_sha256("sentry-hook-signature"))
            .dedupe_header("request-id")
            .event_header("sentry-hook-resource")
            .forward(&["sentry-hook-timestamp"])
            .secret("the integration's client secret")
            .docs("https://docs.sentry.io/organization/integrations/integration-platform/webhooks/")
            .note("Sentry-Hook-Timestamp is not signed, so no replay window applies"),
        Preset::new("linear", "Linear", body_sha256("linear-signature"))
            .dedupe_header("linear-delivery")
            .event_header("linear-event")
            .docs("https://linear.app/developers/webhooks#securing-webhooks"),
        Preset::new("pagerduty", "PagerDuty", body_sha256("x-pagerduty-signature").params(',', "v1"))
            .dedupe_header("x-webhook-id")
            .event_json("/event/event_type")
            .forward(&["x-webhook-subscription"])
            .docs("https://developer.pagerduty.com/docs/webhooks/webhook-signatures/"),
        Preset::new("vercel", "Vercel", body_hmac(Algorithm::HmacSha1, "x-vercel-signature", ""))
            .dedupe_json("/id")
            .event_json("/type")
            .docs("https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks"),
        Preset::new("launchdarkly", "LaunchDarkly", body_sha256("x-ld-signature"))
            .dedupe_json("/_id")
            .event_json("/kind")
            .docs("https://launchdarkly.com/docs/home/infrastructure/webhooks"),
        Preset::new("sanity", "Sanity", stripe_like("sanity-webhook-signature", ',', ("t", TimestampFormat::Millis), "v1", Encoding::Base64Url))
            .dedupe_header("idempotency-key")
            .event_header("sanity-operation")
            .forward(&["sanity-webhook-id", "sanity-document-id", "sanity-project-id", "sanity-dataset"])
            .docs("https://www.sanity.io/docs/webhooks"),
        Preset::new("webflow", "Webflow", body_sha256("x-webflow-signature")
            .timestamp(Field::Header("x-webflow-timestamp".into()), TimestampFormat::Millis)
            .template(Template::of(&[Part::Timestamp, lit(":"), Part::Body])))
            .event_json("/triggerType")
            .docs("https://developers.webflow.com/data/docs/working-with-webhooks#validating-request-signatures")
            .note("only webhooks created through the API or an OAuth app are signed"),
        Preset::new("figma", "Figma", token("", "").signature_in_body("/passcode"))
            .event_json("/event_type")
            .secret("the passcode given when the webhook was created")
            .docs("https://developers.figma.com/docs/rest-api/webhooks-security")
            .note("a passcode in the body, not a signature: the body is not authenticated, and the passcode is stored in Kafka and delivered with it, so whoever reads the topic can forge requests"),
        Preset::new("trello", "Trello", Scheme::new("", Algorithm::HmacSha1, "x-trello-webhook")
            .encoding(Encoding::Base64)
            .template(Template::of(&[Part::Body, Part::Url])))
            .dedupe_json("/action/id")
            .event_json("/action/type")
            .secret("the application's OAuth secret")
            .docs("https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures")
            .note("signs the callback URL: behind a proxy set the source's public_url to the URL Trello was given")
            .handshake(Handshake::HeadProbe),
        Preset::new("asana", "Asana", body_sha256("x-hook-signature"))
            .secret("the X-Hook-Secret in Asana's answer to the POST /webhooks that created the webhook (also sent in its handshake)")
            .docs("https://developers.asana.com/docs/webhooks-guide")
            .handshake(Handshake::AsanaHookSecret),
        Preset::new("clickup", "ClickUp", body_sha256("x-signature"))
            .event_json("/event")
            .secret("the secret returned when the webhook was created")
            .docs("https://developer.clickup.com/docs/webhooksignature"),
        Preset::new("airtable", "Airtable", body_hmac(Algorithm::HmacSha256, "x-airtable-content-mac", "hmac-sha256=")
            .secret(SecretFormat::Base64 { prefix: "".into() }))
            .secret("macSecretBase64, returned when the webhook was created")
            .docs("https://airtable.com/developers/web/api/webhooks-overview"),
        Preset::new("notion", "Notion", sha256_prefixed("x-notion-signature"))
            .dedupe_json("/id")
            .event_json("/type")
            .secret("the verification_token Notion sent when the subscription was created")
            .docs("https://developers.notion.com/reference/webhooks"),
        Preset::new("onfleet", "Onfleet", body_hmac(Algorithm::HmacSha512, "x-onfleet-signature", "")
            .secret(SecretFormat::Hex))
            .event_json("/triggerName")
            .secret("the organisation's webhook secret, hex")
            .docs("https://docs.onfleet.com/reference/secrets"),
        Preset::new("frame-io", "Frame.io", slack_like("x-frameio-signature", "x-frameio-request-timestamp"))
            .event_json("/type")
            .docs("https://developer.frame.io/docs/automations-webhooks/webhooks-overview"),
        Preset::new("attio", "Attio", body_sha256("attio-signature"))
            .event_json("/events/0/event_type")
            .docs("https://docs.attio.com/rest-api/guides/webhooks"),
        Preset::new("cal-com", "Cal.com", body_sha256("x-cal-signature-256"))
            .event_json("/triggerEvent")
            .docs("https://cal.com/docs/developing/guides/automation/webhooks"),
        Preset::new("hookdeck", "Hookdeck", body_sha256("x-hookdeck-signature").encoding(Encoding::Base64))
            .dedupe_header("x-hookdeck-eventid")
            .forward(&["x-hookdeck-source-name", "x-hookdeck-attempt-count"])
            .docs("https://hookdeck.com/docs/authentication"),
    ]
}
