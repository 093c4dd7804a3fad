//! Commits of many claims at once: one pipeline per primary on the direct routes
//! ([`crate::direct`]), so a batch of commits is one request to each node's connection task
//! and one answer from it, instead of one each per commit (redis-rs already wrote the
//! commands waiting for one connection together: what the pipeline saves is the tasks'
//! wake-ups and channel messages per commit).
//!
//! Why by hand: redis-rs pipelines carry plain commands, and its script invocations go one
//! at a time (an `EVALSHA`, then `SCRIPT LOAD` and again on `NOSCRIPT`). The pipeline here
//! sends `EVALSHA` only; whatever it does not settle goes the way a single commit goes
//! ([`RedisStore::commit`]), which loads the script, follows a misrouted key through the
//! cluster connection and so on. Commits are idempotent (compare, then set), so sending one
//! again after its pipeline failed is safe.

use futures::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::RedisResult;
use tokio::time::Instant;

use crate::direct::Lease;
use crate::redis_store::{unavailable, RedisStore};
use crate::routed::send_elsewhere;
use crate::{ClaimToken, StoreError};

// === impl RedisStore ===

impl RedisStore {
    /// Commits every token; the results are in the order of `tokens`. Tokens whose primary has
    /// a direct connection go in one pipeline per primary, the others one by one through the
    /// cluster connection, all at once.
    pub(crate) async fn commit_all(&self, tokens: &[&ClaimToken]) -> Vec<Result<bool, StoreError>> {
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
                .zip(self.commit_pipeline(lease, &group).await)
                .collect::<Vec<_>>()
        });
        let singles = alone
            .iter()
            .map(|&index| async move { (index, self.commit(tokens[index]).await) });
        let (pipelined, single) = futures::join!(join_all(pipelines), join_all(singles));
        let mut results: Vec<Option<Result<bool, StoreError>>> =
            std::iter::repeat_with(|| None).take(tokens.len()).collect();
        for (index, result) in pipelined.into_iter().flatten().chain(single) {
            results[index] = Some(result);
        }
        debug_assert!(results.iter().all(Option::is_some), "every commit answered");
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(self.timed_out("commit"))))
            .collect()
    }

    /// One pipeline of commits on `lease`'s connection, within one command timeout. A commit
    /// the node did not settle (an error answer such as `NOSCRIPT` or `MOVED`, or a broken
    /// connection) is sent again on its own within what is left of that timeout; a timeout is
    /// reported as it is, for every commit of the pipeline, and the caller's retries take
    /// over.
    async fn commit_pipeline(
        &self,
        lease: &Lease<MultiplexedConnection>,
        tokens: &[&ClaimToken],
    ) -> Vec<Result<bool, StoreError>> {
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let hash = self.inner.commit_script.get_hash();
        for token in tokens {
            let (pending, done, window) = self.commit_args(token);
            pipe.cmd("EVALSHA")
                .arg(hash)
                .arg(1)
                .arg(&token.key)
                .arg(pending)
                .arg(done)
                .arg(window);
        }
        let mut connection = lease.connection().clone();
        let sent = pipe.query_async::<Vec<RedisResult<i64>>>(&mut connection);
        let answered = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(answers)) if answers.len() == tokens.len() => {
                let count = u64::try_from(answers.len()).unwrap_or(u64::MAX);
                self.inner.direct.pipeline_answered(lease, count);
                Some(answers)
            }
            // Not one answer per command: nothing can be matched, so each goes again.
            Ok(Ok(_)) => {
                self.inner.direct.answered(lease);
                None
            }
            Ok(Err(e)) if !e.is_timeout() => {
                if send_elsewhere(&e) {
                    tracing::debug!(error = %e, "a pipeline of commits failed on the direct connection to its primary; each is sent again");
                    self.inner.direct.failed(lease);
                } else {
                    self.inner.direct.answered(lease);
                }
                None
            }
            Ok(Err(e)) => {
                self.inner.direct.timed_out(lease);
                return tokens
                    .iter()
                    .map(|_| Err(unavailable("commit", e.clone())))
                    .collect();
            }
            Err(_) => {
                self.inner.direct.timed_out(lease);
                return tokens
                    .iter()
                    .map(|_| Err(self.timed_out("commit")))
                    .collect();
            }
        };
        let Some(answers) = answered else {
            let again = tokens
                .iter()
                .map(|token| self.commit_until(token, deadline));
            return join_all(again).await;
        };
        // A key the node says is not its own: the route is stale, so the connection is taken
        // out once here, and the commits sent again go through the cluster connection at
        // once rather than each being refused on it first.
        if let Some(Err(e)) = answers
            .iter()
            .find(|answer| answer.as_ref().is_err_and(send_elsewhere))
        {
            tracing::debug!(error = %e, "a commit in a pipeline was refused by its node; the ones refused are sent through the cluster connection");
            self.inner.direct.failed(lease);
        }
        let settled = tokens
            .iter()
            .zip(answers)
            .map(|(token, answer)| async move {
                match answer {
                    Ok(written) => Ok(written == 1),
                    Err(_) => self.commit_until(token, deadline).await,
                }
            });
        join_all(settled).await
    }
}
