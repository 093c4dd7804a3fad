//! AWS SNS at the edge: a message is accepted only from the source's topics, and verified with
//! the certificate its `SigningCertURL` names (fetched through [`crate::sns_fetch`]). A
//! `SubscriptionConfirmation` is then confirmed by visiting its `SubscribeURL` and answered;
//! an `UnsubscribeConfirmation` is recorded. A certificate or confirmation that cannot be
//! fetched in time is answered 503, so SNS retries.

use std::net::IpAddr;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use spillway_config::ResolvedSource;
use spillway_providers::Handshake;
use spillway_signature::sns::{SnsKind, SnsMessage};
use spillway_signature::Verified;
use spillway_telemetry::Outcome;

use crate::answer::{self, Answer};
use crate::handshake::json_answer;
use crate::intake::Intake;
use crate::pipeline::Pipeline;
use crate::sns_fetch::FetchError;

// === impl Pipeline ===

impl Pipeline {
    /// Stage 5 for an `aws-sns` source: the message's topic, its certificate's URL, the
    /// certificate, then the signature.
    pub(crate) async fn verify_sns(
        &self,
        intake: &Intake,
        body: &Bytes,
        client: IpAddr,
    ) -> Result<(Verified, SnsMessage), Answer> {
        let source = &intake.source;
        let message = match SnsMessage::parse(body) {
            Ok(m) => m,
            Err(e) => return Err(self.verification_failed(source, client, &e).await),
        };
        if !source.topic_arns.contains(&message.topic_arn) {
            let why = format!(
                "topic {} is not one of this source's topic_arns",
                message.topic_arn
            );
            return Err(self
                .refused(
                    source,
                    client,
                    StatusCode::FORBIDDEN,
                    "topic_not_allowed",
                    why,
                )
                .await);
        }
        // Before any fetch: a stale copy of a genuine message costs nothing.
        let tolerance = source.verifier.tolerance();
        if let Err(e) = message.check_timestamp(intake.received_at(), tolerance) {
            return Err(self.verification_failed(source, client, &e).await);
        }
        let uri = match self.sns.check_url(
            "SigningCertURL",
            &message.certificate_url,
            message.region(),
            true,
        ) {
            Ok(uri) => uri,
            Err(e) => {
                return Err(self
                    .refused(
                        source,
                        client,
                        StatusCode::BAD_REQUEST,
                        "certificate_url_refused",
                        e.to_string(),
                    )
                    .await)
            }
        };
        let der = match self.sns.certificate(&uri).await {
            Ok(der) => der,
            Err(e) => return Err(self.unfetched(source, client, &e).await),
        };
        // The certificate's file name tells one AWS signing certificate from the next in
        // the verification metric's `key_id`.
        let key_id = uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".pem");
        match message.verify(&der, key_id, intake.received_at(), tolerance) {
            Ok(verified) => {
                self.metrics.verified(&source.name, key_id);
                Ok((verified, message))
            }
            Err(e) => Err(self.verification_failed(source, client, &e).await),
        }
    }

    /// The answer to a verified (un)subscription confirmation; `None` for a notification.
    pub(crate) async fn sns_handshake(
        &self,
        source: &ResolvedSource,
        message: &SnsMessage,
    ) -> Option<Answer> {
        let handshake = Handshake::SnsSubscriptionConfirmation;
        let url = message.subscribe_url.as_deref()?;
        let answer = match message.kind {
            SnsKind::Notification => return None,
            SnsKind::UnsubscribeConfirmation => {
                tracing::warn!(
                    topic = %message.topic_arn,
                    message_id = %message.message_id,
                    resubscribe_url = url,
                    "SNS unsubscribed this endpoint; visit the URL to subscribe again"
                );
                json_answer(&json!({ "recorded": "UnsubscribeConfirmation" }))
            }
            SnsKind::SubscriptionConfirmation => {
                let checked = self
                    .sns
                    .check_url("SubscribeURL", url, message.region(), false);
                let confirmed = match checked {
                    Ok(uri) => self.sns.confirm(&uri).await.map_err(Some),
                    Err(refused) => {
                        tracing::warn!(error = %refused, "SNS subscription not confirmed");
                        Err(None)
                    }
                };
                match confirmed {
                    Ok(()) => {
                        tracing::info!(topic = %message.topic_arn, "SNS subscription confirmed");
                        json_answer(&json!({ "confirmed": message.topic_arn }))
                    }
                    Err(None) => answer::error(
                        Outcome::BadRequest,
                        StatusCode::BAD_REQUEST,
                        "subscribe_url_refused",
                        "the SubscribeURL is not an https URL on the topic's SNS endpoint",
                    ),
                    Err(Some(e)) => {
                        tracing::warn!(error = %e, "SNS subscription confirmation failed");
                        self.unreachable("the subscription could not be confirmed; retry later")
                    }
                }
            }
        };
        Some(self.counted(source, handshake, answer))
    }

    /// A certificate that could not be had: 401 when the URL serves none (400, 404 or 410, or
    /// a file that is not one), counted like a bad signature; otherwise 503 for the provider
    /// to retry. The answer never carries the fetch's own error (the log does).
    async fn unfetched(&self, source: &ResolvedSource, client: IpAddr, e: &FetchError) -> Answer {
        tracing::warn!(source = %source.name, error = %e, "SNS signing certificate not had");
        match e {
            FetchError::NotACertificate(..) | FetchError::Refused(..) => {
                self.refused(
                    source,
                    client,
                    StatusCode::UNAUTHORIZED,
                    "certificate_invalid",
                    "SigningCertURL does not serve a certificate".into(),
                )
                .await
            }
            _ => self.unreachable("the SNS signing certificate could not be fetched; retry later"),
        }
    }

    fn unreachable(&self, why: &str) -> Answer {
        answer::retry_later(
            Outcome::ProviderUnreachable,
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unreachable",
            why,
            self.retry_after,
        )
    }
}
