//! Claiming dedupe keys, and what the store's answers mean for a request: a key alone, or
//! several at once in one pipeline per Redis primary ([`SharedStore::claim_all`]): the records
//! of a batch, and the two keys of an event whose scheme signs neither an id nor a timestamp
//! (its delivery id and its signature's fingerprint).

use std::time::Duration;

use futures::future::join_all;
use spillway_config::{FailMode, ResolvedSource};
use spillway_store::{Claim, ClaimToken, SharedStore, StoreError};
use spillway_telemetry::RedisCommand;

use crate::commits::HeldClaim;
use crate::pipeline::Pipeline;
use crate::store::{timed, CommandTiming};

/// Pauses before claiming a later key of an event once more, when it was found in flight while
/// the event holds its first key (see [`Pipeline::claim_event_keys`]): about 40 ms in all,
/// many Redis round trips, for a request that would otherwise be answered 503.
const RECLAIM_PAUSES: [Duration; 3] = [
    Duration::from_millis(2),
    Duration::from_millis(8),
    Duration::from_millis(32),
];

/// What a claim found.
pub(crate) enum Claimed {
    /// The key is this event's until it is committed or released.
    Held(HeldClaim),
    /// The store did not answer and the source fails open: the event goes on without its
    /// dedupe, and the claim is committed after the produce all the same.
    FailedOpen(HeldClaim),
    /// Another request holds the key and has not finished.
    InFlight,
    /// An event with this key was accepted before, under this id.
    Done(String),
    /// The store did not answer and the source fails closed.
    Unavailable,
}

// === impl Claimed ===

impl Claimed {
    /// The claim is this event's (answered, or not answered on a source that fails open).
    fn is_held(&self) -> bool {
        matches!(self, Self::Held(_) | Self::FailedOpen(_))
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// Claims one event's keys, `keys` its dedupe key first; what each found, in that order,
    /// or only the first key's answer when it decides alone (accepted here a moment ago).
    /// Several go together, one pipeline per primary: one after the other, each would add a
    /// round trip to every request of the scheme.
    ///
    /// Together, two copies of one request can each win one key (the keys live on different
    /// primaries): each then finds the other's key in flight, and each would give its own
    /// back and answer 503, where one after the other the copy holding the first key would
    /// have gone on. So a later key found in flight while the first is held is claimed again,
    /// up to three times after short pauses: a copy that lost the first key gives back the
    /// later one right after its own claims are answered, usually well within the pauses
    /// (not when Redis takes longer than they do: then both copies are answered 503). Held by
    /// another request, the key gives this one that request's outcome if it finishes within
    /// the pauses (free again, or a duplicate once committed), else the 503 it always was.
    ///
    /// A first key accepted here a moment ago answers for the event at once: nothing is sent.
    pub(crate) async fn claim_event_keys(
        &self,
        store: &SharedStore,
        source: &ResolvedSource,
        keys: &[String],
        id: &str,
    ) -> Vec<Claimed> {
        let Some((first, _)) = keys.split_first() else {
            return Vec::new();
        };
        if keys.len() == 1 {
            return vec![self.take_claim(store, source, first, id).await];
        }
        if let Some(original) = self.accepted_here(first) {
            return vec![Claimed::Done(original)];
        }
        let wanted = keys
            .iter()
            .map(|redis_key| Some(ClaimToken::new(redis_key.as_str(), id)))
            .collect();
        let mut claimed: Vec<Claimed> = self
            .take_claims(store, source, wanted)
            .await
            .into_iter()
            .flatten()
            .collect();
        if claimed.first().is_some_and(Claimed::is_held) {
            for (redis_key, found) in keys.iter().zip(claimed.iter_mut()).skip(1) {
                if matches!(found, Claimed::InFlight) {
                    *found = self.claim_again(store, source, redis_key, id).await;
                }
            }
        }
        claimed
    }

    /// A key found in flight, claimed again after each of [`RECLAIM_PAUSES`] until it is not.
    async fn claim_again(
        &self,
        store: &SharedStore,
        source: &ResolvedSource,
        redis_key: &str,
        id: &str,
    ) -> Claimed {
        for pause in RECLAIM_PAUSES {
            tracing::debug!(
                pause_ms = pause.as_millis(),
                "a later key of the event is in flight; claiming it again"
            );
            tokio::time::sleep(pause).await;
            let claimed = self.take_claim(store, source, redis_key, id).await;
            if !matches!(claimed, Claimed::InFlight) {
                return claimed;
            }
        }
        Claimed::InFlight
    }

    /// Runs one claim and reads what it found. A claim the store did not answer is this
    /// request's either way (the command may have been applied before it failed): to commit
    /// after a produce (fail open) or, given back here, refused (fail closed).
    pub(crate) async fn take_claim(
        &self,
        store: &SharedStore,
        source: &ResolvedSource,
        redis_key: &str,
        id: &str,
    ) -> Claimed {
        if let Some(original) = self.accepted_here(redis_key) {
            return Claimed::Done(original);
        }
        let claimed = timed(
            &self.metrics,
            RedisCommand::Claim,
            store.claim(redis_key, id),
        )
        .await;
        self.read_claim(store, source, redis_key, id, claimed).await
    }

    /// Claims every wanted key at once, as [`Pipeline::take_claim`] claims one: a key accepted
    /// here a moment ago is a duplicate without asking Redis, the others go to the store
    /// together ([`SharedStore::claim_all`]: one pipeline per primary), each claim timed as
    /// the whole call. `None` in, `None` out: a batch's record without a dedupe key.
    pub(crate) async fn take_claims(
        &self,
        store: &SharedStore,
        source: &ResolvedSource,
        wanted: Vec<Option<ClaimToken>>,
    ) -> Vec<Option<Claimed>> {
        let mut found: Vec<Option<Claimed>> = Vec::with_capacity(wanted.len());
        let mut to_send: Vec<(usize, ClaimToken)> = Vec::new();
        for (index, token) in wanted.into_iter().enumerate() {
            let Some(token) = token else {
                found.push(None);
                continue;
            };
            if let Some(original) = self.accepted_here(token.key()) {
                found.push(Some(Claimed::Done(original)));
                continue;
            }
            // Replaced by the store's answer below; a claim left unanswered refuses its
            // record rather than letting it through unclaimed.
            found.push(Some(Claimed::Unavailable));
            to_send.push((index, token));
        }
        // One span per claim, as a claim alone has, each timed as the whole pipeline; the
        // store's own events land in the request's span, as the commits' do in theirs.
        let parent = tracing::Span::current();
        let timings: Vec<CommandTiming> = to_send
            .iter()
            .map(|_| CommandTiming::start(&parent, RedisCommand::Claim))
            .collect();
        let tokens: Vec<&ClaimToken> = to_send.iter().map(|(_, token)| token).collect();
        let results = store.claim_all(&tokens).await;
        debug_assert_eq!(results.len(), to_send.len(), "one result per claim");
        // At once: a fail-closed source gives back each unanswered claim, a round trip each.
        let read =
            to_send
                .iter()
                .zip(timings)
                .zip(results)
                .map(|(((index, token), timing), result)| {
                    timing.finish(&self.metrics, result.is_ok());
                    async move {
                        let claimed = self
                            .read_claim(store, source, token.key(), token.event_id(), result)
                            .await;
                        (*index, claimed)
                    }
                });
        for (index, claimed) in join_all(read).await {
            found[index] = Some(claimed);
        }
        found
    }

    /// Counts a dedupe hit when `claimed` found the key taken. Called once for each event or
    /// record refused, with the claim its answer comes from, however many of its keys were
    /// taken.
    pub(crate) fn count_dedupe_hit(&self, source: &ResolvedSource, claimed: &Claimed) {
        match claimed {
            Claimed::Done(_) => self.metrics.dedupe_hit(&source.name, true),
            Claimed::InFlight => self.metrics.dedupe_hit(&source.name, false),
            Claimed::Held(_) | Claimed::FailedOpen(_) | Claimed::Unavailable => {}
        }
    }

    /// The event accepted here a moment ago on `redis_key`, its commit still queued: what
    /// Redis would answer soon.
    fn accepted_here(&self, redis_key: &str) -> Option<String> {
        self.commits.accepted(redis_key)
    }

    /// What the store's answer to a claim means for the request (see
    /// [`Pipeline::take_claim`]).
    async fn read_claim(
        &self,
        store: &SharedStore,
        source: &ResolvedSource,
        redis_key: &str,
        id: &str,
        claimed: Result<Claim, StoreError>,
    ) -> Claimed {
        match claimed {
            Ok(Claim::Claimed(token)) => Claimed::Held(HeldClaim::new(store, token, &self.metrics)),
            Ok(Claim::InFlight) => Claimed::InFlight,
            Ok(Claim::Done(original)) => Claimed::Done(original),
            Err(e) => {
                let claim = HeldClaim::new(store, ClaimToken::new(redis_key, id), &self.metrics);
                match source.on_redis_unavailable {
                    FailMode::FailOpen => {
                        tracing::warn!(source = %source.name, event_id = %id, error = %e, "dedupe bypassed (fail-open)");
                        Claimed::FailedOpen(claim)
                    }
                    FailMode::FailClosed => {
                        tracing::warn!(source = %source.name, error = %e, "dedupe store unavailable (fail-closed)");
                        claim.release(&source.name).await;
                        Claimed::Unavailable
                    }
                }
            }
        }
    }
}
