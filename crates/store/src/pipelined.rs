//! Claims or commits of many keys at once: one pipeline per primary on the direct routes
//! ([`crate::direct`]), so a batch is one request to each node's connection task and one
//! answer from it, instead of one each per key (redis-rs already wrote the commands waiting
//! for one connection together: what the pipeline saves is the tasks' wake-ups, channel
//! messages and timers per command).
//!
//! Why by hand: redis-rs pipelines carry plain commands, and its script invocations go one
//! at a time (an `EVALSHA`, then `SCRIPT LOAD` and again on `NOSCRIPT`). The pipeline here
//! sends `SET ... NX ... GET` or `EVALSHA` only; whatever it does not settle goes the way a
//! single command goes ([`RedisStore::claim`], [`RedisStore::commit`]), which loads the
//! script, follows a misrouted key through the cluster connection and so on. Both are safe
//! to send again after their pipeline failed: a commit compares, then sets, and a claim
//! that finds its own event's claim reports it claimed.

use std::future::Future;

use futures::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisResult};
use tokio::time::Instant;

use crate::direct::Lease;
use crate::redis_store::{outcome_of_claim, set_nx_get, unavailable, RedisStore};
use crate::routed::send_elsewhere;
use crate::{Claim, ClaimToken, StoreError};

// === impl RedisStore ===

impl RedisStore {
    /// Claims every token, as [`RedisStore::claim`] does one; the results are in the order of
    /// `tokens`.
    pub(crate) async fn claim_all(&self, tokens: &[&ClaimToken]) -> Vec<Result<Claim, StoreError>> {
        let claims = Claims {
            store: self,
            ttl_ms: self.claim_ttl_ms(),
        };
        self.run_all(tokens, &claims).await
    }

    /// Commits every token, as [`RedisStore::commit`] does one; the results are in the order
    /// of `tokens`.
    pub(crate) async fn commit_all(&self, tokens: &[&ClaimToken]) -> Vec<Result<bool, StoreError>> {
        self.run_all(tokens, &Commits { store: self }).await
    }

    /// Runs `batch`'s command for every token. Tokens whose primary has a direct connection go
    /// in one pipeline per primary, the others one by one through the cluster connection, all
    /// at once.
    async fn run_all<B: Commands>(
        &self,
        tokens: &[&ClaimToken],
        batch: &B,
    ) -> Vec<Result<B::Out, StoreError>> {
        let mut by_node: Vec<(Lease<MultiplexedConnection>, Vec<usize>)> = Vec::new();
        let mut alone = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            let Some(lease) = self.direct_lease(&token.key) else {
                alone.push(index);
                continue;
            };
            match by_node
                .iter_mut()
                .find(|(known, _)| known.same_node(&lease))
            {
                Some((_, members)) => members.push(index),
                None => by_node.push((lease, vec![index])),
            }
        }
        let pipelines = by_node.iter().map(|(lease, members)| async move {
            let group: Vec<&ClaimToken> = members.iter().map(|&i| tokens[i]).collect();
            members
                .iter()
                .copied()
                .zip(self.run_pipeline(lease, &group, batch).await)
                .collect::<Vec<_>>()
        });
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        let singles = alone
            .iter()
            .map(|&index| async move { (index, batch.alone(tokens[index], deadline).await) });
        let (pipelined, single) = futures::join!(join_all(pipelines), join_all(singles));
        let mut results: Vec<Option<Result<B::Out, StoreError>>> =
            std::iter::repeat_with(|| None).take(tokens.len()).collect();
        for (index, result) in pipelined.into_iter().flatten().chain(single) {
            results[index] = Some(result);
        }
        debug_assert!(
            results.iter().all(Option::is_some),
            "every command answered"
        );
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(self.timed_out(B::OP))))
            .collect()
    }

    /// One pipeline of `batch`'s commands on `lease`'s connection, within one command
    /// timeout. A command the node did not settle (an error answer such as `NOSCRIPT` or
    /// `MOVED`, or a broken connection) is sent again on its own within what is left of that
    /// timeout; a timeout is reported as it is, for every command of the pipeline, and the
    /// caller's retries take over.
    async fn run_pipeline<B: Commands>(
        &self,
        lease: &Lease<MultiplexedConnection>,
        tokens: &[&ClaimToken],
        batch: &B,
    ) -> Vec<Result<B::Out, StoreError>> {
        let op = B::OP;
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for token in tokens {
            batch.add(&mut pipe, token);
        }
        let mut connection = lease.connection().clone();
        let sent = pipe.query_async::<Vec<RedisResult<B::Answer>>>(&mut connection);
        let answers = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(answers)) if answers.len() == tokens.len() => {
                // Served: the commands answered with a value. One refused (an error answer such
                // as `NOSCRIPT` or `MOVED`) goes again on its own below, and counts there.
                let served = answers.iter().filter(|answer| answer.is_ok()).count();
                let served = u64::try_from(served).unwrap_or(u64::MAX);
                self.inner.direct.pipeline_answered(lease, served);
                Some(answers)
            }
            // Not one answer per command: nothing can be matched, so each goes again (and is
            // counted where it is answered).
            Ok(Ok(_)) => {
                self.inner.direct.replied(lease);
                None
            }
            Ok(Err(e)) if !e.is_timeout() => {
                if send_elsewhere(&e) {
                    tracing::debug!(op, error = %e, "a pipeline failed on the direct connection to its primary; each command is sent again");
                    self.inner.direct.failed(lease);
                } else {
                    self.inner.direct.replied(lease);
                }
                None
            }
            Ok(Err(e)) => {
                self.inner.direct.timed_out(lease);
                return tokens
                    .iter()
                    .map(|_| Err(unavailable(op, e.clone())))
                    .collect();
            }
            Err(_) => {
                self.inner.direct.timed_out(lease);
                return tokens.iter().map(|_| Err(self.timed_out(op))).collect();
            }
        };
        // A key the node says is not its own: the route is stale, so the connection is taken
        // out once here, and the commands sent again go through the cluster connection at
        // once rather than each being refused on it first.
        if let Some(Err(e)) = answers
            .iter()
            .flatten()
            .find(|answer| answer.as_ref().is_err_and(send_elsewhere))
        {
            tracing::debug!(op, error = %e, "a command in a pipeline was refused by its node; the ones refused are sent through the cluster connection");
            self.inner.direct.failed(lease);
        }
        // Without answers (the pipeline failed as a whole), every command goes again.
        let mut answers = answers.map(Vec::into_iter);
        let settled = tokens.iter().map(|token| {
            let answer = answers.as_mut().and_then(Iterator::next);
            async move {
                match answer {
                    Some(Ok(value)) => batch.read(token, value),
                    Some(Err(_)) | None => batch.alone(token, deadline).await,
                }
            }
        });
        join_all(settled).await
    }
}

/// One kind of command sent for many tokens: its name, how it goes into a pipeline, how its
/// answer reads, and how one is sent alone by a deadline (the fallback, and the way for a
/// token without a direct route).
trait Commands {
    type Answer: FromRedisValue;
    type Out;
    const OP: &'static str;
    fn add(&self, pipe: &mut redis::Pipeline, token: &ClaimToken);
    fn read(&self, token: &ClaimToken, answer: Self::Answer) -> Result<Self::Out, StoreError>;
    fn alone(
        &self,
        token: &ClaimToken,
        deadline: Instant,
    ) -> impl Future<Output = Result<Self::Out, StoreError>>;
}

/// `SET ... NX ... GET` for each token.
struct Claims<'a> {
    store: &'a RedisStore,
    ttl_ms: u64,
}

impl Commands for Claims<'_> {
    type Answer = Option<String>;
    type Out = Claim;
    const OP: &'static str = "claim";

    fn add(&self, pipe: &mut redis::Pipeline, token: &ClaimToken) {
        pipe.add_command(set_nx_get(&token.key, &token.pending_value(), self.ttl_ms));
    }

    fn read(&self, token: &ClaimToken, previous: Option<String>) -> Result<Claim, StoreError> {
        outcome_of_claim(previous, token.clone())
    }

    fn alone(
        &self,
        token: &ClaimToken,
        deadline: Instant,
    ) -> impl Future<Output = Result<Claim, StoreError>> {
        self.store.claim_until(token.clone(), deadline)
    }
}

/// The commit script (`EVALSHA`) for each token.
struct Commits<'a> {
    store: &'a RedisStore,
}

impl Commands for Commits<'_> {
    type Answer = i64;
    type Out = bool;
    const OP: &'static str = "commit";

    fn add(&self, pipe: &mut redis::Pipeline, token: &ClaimToken) {
        let (pending, done, window) = self.store.commit_args(token);
        pipe.cmd("EVALSHA")
            .arg(self.store.inner.commit_script.get_hash())
            .arg(1)
            .arg(&token.key)
            .arg(pending)
            .arg(done)
            .arg(window);
    }

    fn read(&self, _: &ClaimToken, written: i64) -> Result<bool, StoreError> {
        Ok(written == 1)
    }

    fn alone(
        &self,
        token: &ClaimToken,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, StoreError>> {
        self.store.commit_until(token, deadline)
    }
}
