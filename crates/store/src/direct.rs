//! Routes for the commands on one key (claim, commit, release): a connection to each primary
//! and the primary of each of the cluster's 16,384 slots, so those commands go straight to
//! the node that serves their key.
//!
//! Why not only redis-rs's cluster connection: every command through it passes its driver
//! task twice (a channel in, the routing, a future in its in-flight set, a channel out) on top
//! of the node connection's own task, about 4% of the ingress's CPU per request at 2,500
//! requests/s. A multiplexed connection to the node is the same client library without the
//! driver.
//!
//! The routes are an optimisation, never the authority: the cluster connection stays, and it
//! alone handles what the routes cannot. A command that the node refuses as misrouted or
//! unavailable (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY, MASTERDOWN, LOADING), or that fails on a
//! broken connection, is sent again through the cluster connection, which is safe because
//! each of these commands is idempotent (a claim finds its own value, commit and release
//! compare first), and the connection to that primary is taken out of use (its slots go
//! through the cluster connection until the next build). A timeout is not re-sent and
//! keeps the routes: the command may still run, and the release that follows a timed-out
//! claim must go out behind it on the same connection. Only [`WEDGED_AFTER`] timeouts in a
//! row on one primary, none answered in between, take its connection out. The routes are
//! then read again from `CLUSTER SLOTS` no sooner than [`REBUILD_AFTER`] later, keeping the
//! connections of the primaries still in use, so a node in trouble costs one request per
//! interval an extra try, not every request, and what was sent to the others keeps its order.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::{ErrorKind, RedisError, Value};
use tokio::time::Instant;

/// Slots of a Redis Cluster: a key's slot is CRC16 (XMODEM) of its hash tag, modulo this.
pub(crate) const SLOTS: u16 = 16384;

/// How long after a failure on a direct connection (or a failed build) the routes stay
/// unused: long enough for the cluster connection to find a failover, short enough that the
/// fast path is back a second after a blip.
pub(crate) const REBUILD_AFTER: Duration = Duration::from_secs(1);

/// A slot with no primary in the table.
const UNSERVED: u16 = u16::MAX;

/// The slot of `key`, as Redis computes it: only the part inside the first `{...}` counts
/// when that part is not empty, so keys sharing a hash tag share a slot.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// One primary of the slot table: where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// As the node gave it (a name or an address).
    pub host: String,
    pub port: u16,
}

/// `CLUSTER SLOTS` read into a slot table: which primary (an index into the list) serves
/// each slot; slots of a primary without a usable address stay unserved (`u16::MAX`).
pub fn parse_slots(answer: &Value) -> Result<(Vec<u16>, Vec<Primary>), RedisError> {
    let malformed =
        |what: &str| RedisError::from((ErrorKind::Parse, "CLUSTER SLOTS", what.to_owned()));
    let Value::Array(ranges) = answer else {
        return Err(malformed("not an array"));
    };
    let mut owner = vec![UNSERVED; usize::from(SLOTS)];
    let mut primaries: Vec<Primary> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(malformed("a range is not an array"));
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(malformed("a range without start, end and primary"));
        };
        let host = match node.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            Some(Value::Nil) => String::new(),
            _ => return Err(malformed("a primary without an address")),
        };
        let Some(Value::Int(port)) = node.get(1) else {
            return Err(malformed("a primary without a port"));
        };
        // An address the node does not know (`?`, empty) or a wildcard one would have to be
        // replaced by the address the answer came from, which the cluster connection hides:
        // such a primary's slots go through the cluster connection.
        if matches!(host.as_str(), "" | "?" | "0.0.0.0" | "::") {
            continue;
        }
        let port = u16::try_from(*port).map_err(|_| malformed("a port out of range"))?;
        let (Ok(start), Ok(end)) = (u16::try_from(*start), u16::try_from(*end)) else {
            return Err(malformed("a slot out of range"));
        };
        if start > end || end >= SLOTS {
            return Err(malformed("a slot out of range"));
        }
        let primary = Primary { host, port };
        let index = match primaries.iter().position(|p| *p == primary) {
            Some(index) => index,
            None => {
                primaries.push(primary);
                primaries.len() - 1
            }
        };
        let index = u16::try_from(index).map_err(|_| malformed("too many primaries"))?;
        owner[usize::from(start)..=usize::from(end)].fill(index);
    }
    Ok((owner, primaries))
}

/// Timeouts in a row on one primary's direct connection, none answered in between, after
/// which it is taken out of use: the node may be gone for good (a failover the cluster
/// connection follows, but a direct connection does not).
pub(crate) const WEDGED_AFTER: u32 = 16;

/// A direct connection to one primary and its health, shared by every table that keeps it.
pub(crate) struct Node<C> {
    connection: C,
    /// Taken out of use after a failure; a later table connects again instead.
    disabled: AtomicBool,
    /// Timeouts in a row.
    unanswered: AtomicU32,
}

impl<C> Node<C> {
    pub(crate) fn new(connection: C) -> Arc<Self> {
        Arc::new(Self {
            connection,
            disabled: AtomicBool::new(false),
            unanswered: AtomicU32::new(0),
        })
    }
}

/// The slot table and a connection to each primary in it (`None`: it could not be reached
/// when the table was built, and its slots go through the cluster connection).
pub(crate) struct Routes<C> {
    owner: Vec<u16>,
    primaries: Vec<Primary>,
    nodes: Vec<Option<Arc<Node<C>>>>,
}

impl<C: Clone> Routes<C> {
    /// `nodes[i]` is the connection to `primaries[i]`, the i-th primary of `owner`.
    pub(crate) fn new(
        owner: Vec<u16>,
        primaries: Vec<Primary>,
        nodes: Vec<Option<Arc<Node<C>>>>,
    ) -> Self {
        Self {
            owner,
            primaries,
            nodes,
        }
    }

    /// The connection to the primary serving `key`, if it has one in use.
    fn node_for(&self, key: &str) -> Option<Arc<Node<C>>> {
        let index = usize::from(*self.owner.get(usize::from(slot_of(key.as_bytes())))?);
        let node = self.nodes.get(index)?.as_ref()?;
        (!node.disabled.load(Ordering::Relaxed)).then(|| Arc::clone(node))
    }

    /// Whether every slot has a primary with a connection.
    fn complete(&self) -> bool {
        self.owner.iter().all(|&index| {
            self.nodes
                .get(usize::from(index))
                .is_some_and(Option::is_some)
        })
    }
}

/// A direct connection handed out for one command, with its health, so that what befalls the
/// command is put down to that connection in whichever table holds it now.
pub(crate) struct Lease<C> {
    node: Arc<Node<C>>,
}

impl<C> Lease<C> {
    pub(crate) fn connection(&self) -> &C {
        &self.node.connection
    }

    /// Whether both leases hand out the same connection.
    pub(crate) fn same_node(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
    }
}

/// What a caller should do for its key.
pub(crate) enum Route<C: Clone> {
    /// Send it on this connection.
    Direct(Lease<C>),
    /// Use the cluster connection, and build the routes: this caller was picked to, and the
    /// ticket must be given the result (dropped unused, it counts as a failed build).
    Build(BuildTicket<C>),
    /// Use the cluster connection.
    Cluster,
}

/// The routes in use, rebuilt lazily after a failure; counts what went which way.
pub(crate) struct Direct<C> {
    state: Mutex<State<C>>,
    served: AtomicU64,
    failed: AtomicU64,
    /// Pipelines answered (the commands they served are in `served` too).
    pipelines: AtomicU64,
}

struct State<C> {
    routes: Option<Arc<Routes<C>>>,
    building: bool,
    /// No build before this instant (after a failure, or while a partial table is in use).
    idle_until: Option<Instant>,
    /// Bumped when a connection is taken out, so that a build started before cannot install
    /// a table read before the failure.
    generation: u64,
}

impl<C: Clone> Direct<C> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                routes: None,
                building: false,
                idle_until: None,
                generation: 0,
            }),
            served: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            pipelines: AtomicU64::new(0),
        }
    }

    /// Where the command on `key` goes. A key whose primary has no connection in the table
    /// starts a rebuild too (at most one per [`REBUILD_AFTER`]), meanwhile using the cluster
    /// connection.
    pub(crate) fn route(self: &Arc<Self>, key: &str) -> Route<C> {
        let mut state = self.state();
        if let Some(node) = state.routes.as_ref().and_then(|r| r.node_for(key)) {
            return Route::Direct(Lease { node });
        }
        let now = Instant::now();
        if state.building || state.idle_until.is_some_and(|until| now < until) {
            return Route::Cluster;
        }
        state.building = true;
        state.idle_until = Some(now + REBUILD_AFTER);
        Route::Build(BuildTicket {
            direct: Some(Arc::clone(self)),
            generation: state.generation,
        })
    }

    /// A command was answered on a direct connection.
    pub(crate) fn answered(&self, lease: &Lease<C>) {
        self.served.fetch_add(1, Ordering::Relaxed);
        lease.node.unanswered.store(0, Ordering::Relaxed);
    }

    /// A pipeline was answered on a direct connection, `served` of its commands with a value
    /// (the others, refused, are counted where they are answered again).
    pub(crate) fn pipeline_answered(&self, lease: &Lease<C>, served: u64) {
        self.pipelines.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(served, Ordering::Relaxed);
        lease.node.unanswered.store(0, Ordering::Relaxed);
    }

    /// The node answered on a direct connection, but served nothing there: every command goes
    /// again and is counted where it is answered. The connection is alive all the same.
    pub(crate) fn replied(&self, lease: &Lease<C>) {
        lease.node.unanswered.store(0, Ordering::Relaxed);
    }

    /// A command timed out on a direct connection: the routes stay, unless it is the
    /// [`WEDGED_AFTER`]th in a row on that primary.
    pub(crate) fn timed_out(&self, lease: &Lease<C>) {
        let in_a_row = lease.node.unanswered.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= WEDGED_AFTER {
            self.disable(lease);
        }
    }

    /// A command failed on a direct connection and goes through the cluster connection: that
    /// connection is taken out of use (a newer one to the same primary is not), and the routes
    /// are built again after [`REBUILD_AFTER`]. The other primaries' connections stay, so what
    /// was sent on them keeps its order.
    pub(crate) fn failed(&self, lease: &Lease<C>) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.disable(lease);
    }

    /// The connections of the routes in use that a new table can keep, by their primary's
    /// address: kept, they keep the order of what was sent on them.
    pub(crate) fn reusable(&self) -> Vec<(Primary, Arc<Node<C>>)> {
        let state = self.state();
        let Some(routes) = &state.routes else {
            return Vec::new();
        };
        routes
            .primaries
            .iter()
            .zip(&routes.nodes)
            .filter_map(|(primary, node)| {
                let node = node.as_ref()?;
                (!node.disabled.load(Ordering::Relaxed))
                    .then(|| (primary.clone(), Arc::clone(node)))
            })
            .collect()
    }

    /// Commands answered on direct connections, and the refusals or failures on one that sent
    /// commands through the cluster connection instead (one per pipeline).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Pipelines answered on direct connections.
    pub(crate) fn pipelines(&self) -> u64 {
        self.pipelines.load(Ordering::Relaxed)
    }

    /// Puts `routes` in place at once, whatever a build under way finds: for tests.
    pub(crate) fn replace(&self, routes: Routes<C>) {
        let mut state = self.state();
        state.generation += 1;
        state.routes = Some(Arc::new(routes));
    }

    fn disable(&self, lease: &Lease<C>) {
        // Only the first failure counts: later ones (commands in flight on it) must not put
        // off or discard the rebuild it started.
        if lease.node.disabled.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut state = self.state();
        // A build that read the slots before this failure must not undo it.
        state.generation += 1;
        state.idle_until = Some(Instant::now() + REBUILD_AFTER);
    }

    fn state(&self) -> MutexGuard<'_, State<C>> {
        // Poisoned only if a holder panicked; the state is a few plain fields, always whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one build under way. [`BuildTicket::finish`] installs its routes, unless a failure
/// came since it started; a table that leaves slots without a connection is used and built
/// again [`REBUILD_AFTER`] after this one ended. Dropped without a result (its task failed or
/// was cancelled), it lets the next build start after that wait too.
pub(crate) struct BuildTicket<C: Clone> {
    direct: Option<Arc<Direct<C>>>,
    generation: u64,
}

impl<C: Clone> BuildTicket<C> {
    pub(crate) fn finish(mut self, routes: Option<Routes<C>>) {
        if let Some(direct) = self.direct.take() {
            let mut state = direct.state();
            state.building = false;
            state.idle_until = Some(Instant::now() + REBUILD_AFTER);
            if let Some(routes) = routes.filter(|_| state.generation == self.generation) {
                if routes.complete() {
                    state.idle_until = None;
                }
                state.routes = Some(Arc::new(routes));
            }
        }
    }
}

impl<C: Clone> Drop for BuildTicket<C> {
    fn drop(&mut self) {
        if let Some(direct) = self.direct.take() {
            let mut state = direct.state();
            state.building = false;
            state.idle_until = Some(Instant::now() + REBUILD_AFTER);
        }
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
