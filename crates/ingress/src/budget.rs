//! What a request may hold: bytes of body memory from the process's budget
//! (`ingress.max_body_memory`), charged as the bytes arrive, and a place among the requests
//! one client address may have open (`ingress.max_requests_per_client`) with a share of the
//! budget per client (an eighth of it, or the largest body if that is more).
//!
//! Memory is budgeted in bytes rather than requests because a request's cost is its body: a
//! fixed count of places times the largest body does not fit any sane pod limit, and a count
//! small enough to fit would let a few large senders lock everyone out. Charging as bytes
//! arrive (not the announced `Content-Length`) keeps a client that announces a large body and
//! sends a few bytes from reserving memory it never uses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The process's budget of body bytes.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Bytes charged to the budget by one request, and to its client's share; given back when
/// dropped (in the durable task, when the event is settled).
#[derive(Debug, Default)]
pub(crate) struct Charge {
    permit: Option<OwnedSemaphorePermit>,
    /// The client's held bytes, and how many of them are this charge's.
    client: Option<(Arc<AtomicUsize>, usize)>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((held, n)) = &self.client {
            held.fetch_sub(*n, Ordering::AcqRel);
        }
    }
}

/// The budget has not got the bytes a request needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

// === impl BodyBudget ===

impl BodyBudget {
    pub(crate) fn new(bytes: u64) -> Self {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
        }
    }

    /// Adds `bytes` to `charge`, at once or not at all.
    pub(crate) fn charge(&self, charge: &mut Charge, bytes: usize) -> Result<(), Exhausted> {
        if bytes == 0 {
            return Ok(());
        }
        let n = u32::try_from(bytes).map_err(|_| Exhausted)?;
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Exhausted)?;
        match &mut charge.permit {
            Some(held) => held.merge(permit),
            None => charge.permit = Some(permit),
        }
        Ok(())
    }

    /// Bytes not charged to any request.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

// === impl Charge ===

impl Charge {
    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Gives back all but `keep` bytes, to the budget and to the client's share (what the
    /// request still holds after a step that freed memory: a compressed body dropped once
    /// decoded, a body streamed to object storage).
    pub(crate) fn shrink_to(&mut self, keep: usize) {
        if let Some((held, counted)) = &mut self.client {
            if *counted > keep {
                held.fetch_sub(*counted - keep, Ordering::AcqRel);
                *counted = keep;
            }
        }
        let Some(permit) = &mut self.permit else {
            return;
        };
        let held = permit.num_permits();
        if held > keep {
            drop(permit.split(held - keep));
        }
    }
}

/// Requests open, and body bytes held, per client address; an IPv6 client is counted by its
/// /64, which one host usually holds whole. Trusted proxies and shared addresses (private,
/// loopback, link-local, CGNAT: load balancers and SNAT nodes in front of the ingress) are not
/// counted: every sender arrives through them, and a cap on them would let one client lock
/// out the rest, as blocking them would.
#[derive(Debug, Clone)]
pub(crate) struct ClientPlaces {
    limit: usize,
    /// Body bytes one client may hold at once.
    bytes: usize,
    trusted_proxies: Arc<[ipnet::IpNet]>,
    open: Shares,
}

/// What each counted client holds, shared by the places taken.
type Shares = Arc<Mutex<HashMap<IpAddr, Share>>>;

/// What one client holds.
#[derive(Debug)]
struct Share {
    requests: usize,
    bytes: Arc<AtomicUsize>,
}

/// A client's place, held until the request is answered; an exempt client's holds nothing.
#[derive(Debug)]
pub(crate) struct ClientPlace {
    counted: Option<(IpAddr, Shares)>,
    /// The client's body bytes, and its cap.
    bytes: Option<(Arc<AtomicUsize>, usize)>,
}

// === impl ClientPlaces ===

impl ClientPlaces {
    pub(crate) fn new(limit: usize, bytes: usize, trusted_proxies: &[ipnet::IpNet]) -> Self {
        Self {
            limit,
            bytes,
            trusted_proxies: trusted_proxies.into(),
            open: Arc::default(),
        }
    }

    /// A place for `client`, or None when it has `limit` requests open already.
    pub(crate) fn take(&self, client: IpAddr) -> Option<ClientPlace> {
        let client = client.to_canonical();
        if shared_address(client) || self.trusted_proxies.iter().any(|n| n.contains(&client)) {
            return Some(ClientPlace {
                counted: None,
                bytes: None,
            });
        }
        let client = client_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let share = open.entry(client).or_insert_with(|| Share {
            requests: 0,
            bytes: Arc::default(),
        });
        if share.requests >= self.limit {
            return None;
        }
        share.requests += 1;
        Some(ClientPlace {
            counted: Some((client, self.open.clone())),
            bytes: Some((share.bytes.clone(), self.bytes)),
        })
    }
}

// === impl ClientPlace ===

impl ClientPlace {
    /// Counts `n` more body bytes against the client's share, into `charge` (given back
    /// with it), or refuses when the client would hold more than its share.
    pub(crate) fn hold(&self, charge: &mut Charge, n: usize) -> Result<(), Exhausted> {
        let Some((held, cap)) = &self.bytes else {
            return Ok(());
        };
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            (now + n <= *cap).then_some(now + n)
        })
        .map_err(|_| Exhausted)?;
        match &mut charge.client {
            Some((_, counted)) => *counted += n,
            None => charge.client = Some((held.clone(), n)),
        }
        Ok(())
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let Some((client, open)) = &self.counted else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = open.get_mut(client) {
            share.requests -= 1;
            if share.requests == 0 {
                open.remove(client);
            }
        }
    }
}

/// The address a client is counted (and blocked) by: IPv4 as it is, an IPv4-mapped IPv6
/// address as its IPv4 address, any other IPv6 address as its /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(bits.into())
        }
    }
}

/// Addresses many senders can share: whoever sends from them is a proxy, a load balancer or
/// a NAT in front of the ingress, not one sender.
pub(crate) fn shared_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                // 100.64.0.0/10, carrier-grade NAT (RFC 6598).
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local and fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_is_all_or_nothing_and_given_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = Charge::default();
        budget.charge(&mut a, 60).expect("fits");
        budget.charge(&mut a, 30).expect("fits");
        let mut b = Charge::default();
        assert_eq!(budget.charge(&mut b, 11), Err(Exhausted));
        assert_eq!(b.bytes(), 0);
        assert_eq!(budget.available(), 10);
        a.shrink_to(20);
        assert_eq!((a.bytes(), budget.available()), (20, 80));
        drop(a);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn a_client_has_at_most_its_limit_of_places_and_ipv6_counts_by_its_64() {
        let places = ClientPlaces::new(2, 1000, &[]);
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let first = places.take(a).expect("first");
        let _second = places.take(b).expect("same /64, second place");
        assert!(places.take(a).is_none(), "the /64 has used its places");
        assert!(places.take(other).is_some(), "another /64 is not held up");
        drop(first);
        assert!(places.take(b).is_some(), "a place comes back when answered");
    }

    #[test]
    fn a_client_holds_at_most_its_share_of_bytes_until_its_charges_are_dropped() {
        let places = ClientPlaces::new(10, 100, &[]);
        let client: IpAddr = "203.0.113.5".parse().expect("ip");
        let (first, second) = (
            places.take(client).expect("1"),
            places.take(client).expect("2"),
        );
        let (mut a, mut b) = (Charge::default(), Charge::default());
        first.hold(&mut a, 70).expect("within the share");
        assert_eq!(
            second.hold(&mut b, 40),
            Err(Exhausted),
            "70 + 40 is over 100"
        );
        second.hold(&mut b, 30).expect("exactly the share");
        // The charge outlives the place (a client that hung up): its bytes still count.
        drop(first);
        let third = places.take(client).expect("3");
        assert_eq!(third.hold(&mut Charge::default(), 1), Err(Exhausted));
        drop(a);
        third
            .hold(&mut Charge::default(), 70)
            .expect("given back with the charge");
    }

    #[test]
    fn proxies_and_shared_addresses_are_not_capped() {
        let proxy: ipnet::IpNet = "198.51.100.0/24".parse().expect("net");
        let places = ClientPlaces::new(1, 10, &[proxy]);
        for addr in ["198.51.100.7", "10.0.0.1", "127.0.0.1", "fd00::1"] {
            let ip: IpAddr = addr.parse().expect("ip");
            let held: Vec<_> = (0..5).map(|_| places.take(ip).expect(addr)).collect();
            held[0].hold(&mut Charge::default(), 1000).expect(addr);
        }
        let public: IpAddr = "203.0.113.1".parse().expect("ip");
        let _one = places.take(public).expect("one");
        assert!(places.take(public).is_none());
    }

    #[test]
    fn mapped_ipv4_is_counted_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }
}
