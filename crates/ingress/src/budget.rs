//! What a request may hold: bytes of body memory from the process's budget
//! (`ingress.max_body_memory`), charged as the bytes arrive, and a place among the requests
//! one client address may have open (`ingress.max_requests_per_client`).
//!
//! Memory is budgeted in bytes rather than requests because a request's cost is its body: a
//! fixed count of places times the largest body does not fit any sane pod limit, and a count
//! small enough to fit would let a few large senders lock everyone out. Charging as bytes
//! arrive (not the announced `Content-Length`) keeps a client that announces a large body and
//! sends a few bytes from reserving memory it never uses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The process's budget of body bytes.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Bytes charged to the budget by one request; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    permit: Option<OwnedSemaphorePermit>,
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

    /// Gives back all but `keep` bytes (what the request still holds after a step that
    /// freed memory, e.g. a compressed body dropped once decoded).
    pub(crate) fn shrink_to(&mut self, keep: usize) {
        let Some(permit) = &mut self.permit else {
            return;
        };
        let held = permit.num_permits();
        if held > keep {
            drop(permit.split(held - keep));
        }
    }
}

/// Requests open per client address; an IPv6 client is counted by its /64, which one host
/// usually holds whole.
#[derive(Debug, Clone)]
pub(crate) struct ClientPlaces {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A client's place, held until the request is answered.
#[derive(Debug)]
pub(crate) struct ClientPlace {
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

// === impl ClientPlaces ===

impl ClientPlaces {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for `client`, or None when it has `limit` requests open already.
    pub(crate) fn take(&self, client: IpAddr) -> Option<ClientPlace> {
        let client = client_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientPlace {
            client,
            open: self.open.clone(),
        })
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
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
        let places = ClientPlaces::new(2);
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
    fn mapped_ipv4_is_counted_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }
}
