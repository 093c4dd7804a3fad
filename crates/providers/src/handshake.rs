//! The registration handshakes providers make before (or besides) sending events: what each
//! request looks like and what the provider expects back. The ingress answers them at the edge,
//! before anything is written to Kafka; this module only names them.

/// One provider's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Slack Events API: a signed POST `{"type":"url_verification","challenge":C}`, answered
    /// `200 {"challenge":C}`.
    SlackUrlVerification,
    /// Meta (Facebook, WhatsApp, Instagram): `GET ?hub.mode=subscribe&hub.verify_token=T&
    /// hub.challenge=C`, answered `200 C` (text) when T is the source's `verify_token`.
    MetaSubscribe,
    /// Twitch EventSub: a signed POST with `Twitch-Eventsub-Message-Type:
    /// webhook_callback_verification` and `{"challenge":C}`, answered `200 C` (text).
    TwitchCallbackVerification,
    /// Zoom: a signed POST `{"event":"endpoint.url_validation","payload":{"plainToken":P}}`,
    /// answered `200 {"plainToken":P,"encryptedToken":hex(HMAC-SHA256(secret, P))}`.
    ZoomUrlValidation,
    /// Dropbox: `GET ?challenge=C`, answered `200 C` (text, `X-Content-Type-Options: nosniff`).
    DropboxChallenge,
    /// Microsoft Graph: `POST ?validationToken=T` with no body, answered `200 T` (text) within
    /// 10 seconds.
    GraphValidationToken,
    /// Okta event hooks: `GET` with `x-okta-verification-challenge: C` and the hook's
    /// Authorization header, answered `200 {"verification":C}`.
    OktaVerification,
    /// Discord interactions: a signed POST `{"type":1}` (PING), answered `200 {"type":1}`.
    DiscordPing,
    /// Asana: a POST with `X-Hook-Secret: S` when the webhook is created, answered `200` with
    /// the same `X-Hook-Secret` header; S is then the source's secret.
    AsanaHookSecret,
    /// Trello and Mandrill: a `HEAD` to the callback URL when the webhook is created,
    /// answered `200`.
    HeadProbe,
    /// AWS SNS: a signed `SubscriptionConfirmation` from a listed topic, confirmed by visiting
    /// its `SubscribeURL` (through the SSRF guard), then answered `200`; an
    /// `UnsubscribeConfirmation` is recorded (logged, counted) and answered `200`.
    SnsSubscriptionConfirmation,
    /// Xero: a signed "intent to receive" POST with an empty `events` list, answered `200`
    /// with an empty body (and a bad signature 401, as for any event).
    XeroIntentToReceive,
}

// === impl Handshake ===

impl Handshake {
    pub const ALL: [Handshake; 12] = [
        Self::SlackUrlVerification,
        Self::MetaSubscribe,
        Self::TwitchCallbackVerification,
        Self::ZoomUrlValidation,
        Self::DropboxChallenge,
        Self::GraphValidationToken,
        Self::OktaVerification,
        Self::DiscordPing,
        Self::AsanaHookSecret,
        Self::HeadProbe,
        Self::XeroIntentToReceive,
        Self::SnsSubscriptionConfirmation,
    ];

    /// The `kind` label of `spillway_handshake_requests_total` and the name in listings.
    pub fn name(self) -> &'static str {
        match self {
            Self::SlackUrlVerification => "slack_url_verification",
            Self::MetaSubscribe => "meta_hub_challenge",
            Self::TwitchCallbackVerification => "twitch_callback_verification",
            Self::ZoomUrlValidation => "zoom_url_validation",
            Self::DropboxChallenge => "dropbox_challenge",
            Self::GraphValidationToken => "graph_validation_token",
            Self::OktaVerification => "okta_verification",
            Self::DiscordPing => "discord_ping",
            Self::AsanaHookSecret => "asana_hook_secret",
            Self::HeadProbe => "head_probe",
            Self::XeroIntentToReceive => "xero_intent_to_receive",
            Self::SnsSubscriptionConfirmation => "sns_subscription_confirmation",
        }
    }

    /// Whether the handshake request is signed like an event, so it is answered only once
    /// verified.
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Self::SlackUrlVerification
                | Self::TwitchCallbackVerification
                | Self::ZoomUrlValidation
                | Self::DiscordPing
                | Self::OktaVerification
                | Self::XeroIntentToReceive
                | Self::SnsSubscriptionConfirmation
        )
    }

    /// Whether a source's `store_handshakes` writes it to Kafka: the handshakes verified like
    /// events, after the body is read (Okta's is checked at admission, bodiless, and never
    /// stored).
    pub fn is_storable(self) -> bool {
        self.is_signed() && self != Self::OktaVerification
    }

    /// Whether it needs the source's `verify_token`.
    pub fn needs_verify_token(self) -> bool {
        self == Self::MetaSubscribe
    }
}
