//! The SSRF guard: subscribers and signing certificates are URLs that users or senders choose,
//! so a request to one must never reach the cluster's own network (loopback, private ranges,
//! link-local and the cloud metadata endpoint, CGNAT, multicast ...) unless an allowlist says
//! so.
//!
//! Names are resolved by [`GuardedResolver`], which hands the connector only the addresses it
//! checked, so a DNS answer cannot change between the check and the connection (no rebinding
//! window). IP-literal URLs skip resolution in hyper's connector and are checked by
//! [`AddressPolicy::check`] before the request is made.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;

/// Which addresses deliveries may connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Arc<Vec<IpNet>>,
}

/// A destination the policy refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is refused: {reason} (add it to the allow_cidrs of the worker or of the certificate fetches if it is a trusted target)")]
pub struct RefusedAddress {
    pub address: IpAddr,
    pub reason: &'static str,
}

// === impl AddressPolicy ===

impl AddressPolicy {
    /// `allow`: ranges permitted although they are in a refused class.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), RefusedAddress> {
        let ip = canonical(ip);
        let Some(reason) = refused_class(ip) else {
            return Ok(());
        };
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(RefusedAddress {
            address: ip,
            reason,
        })
    }
}

/// IPv4 addresses written as IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, or 6to4
/// `2002:aabb:ccdd::/48`, whose router is at a.b.c.d) are judged as the IPv4 address they
/// reach.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let o = v6.octets();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            if s[0] == 0x2002 {
                return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// The class a non-public address belongs to; `None` for a public address.
fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const TABLE: &[([u8; 4], u8, &str)] = &[
        ([169, 254, 169, 254], 32, "cloud metadata endpoint"),
        ([0, 0, 0, 0], 8, "'this' network"),
        ([10, 0, 0, 0], 8, "private network"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private network"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 168, 0, 0], 16, "private network"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved (and broadcast)"),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.segments()[..6] == [0; 6] {
        Some("IPv4-compatible (deprecated)")
    } else if first & 0xfe00 == 0xfc00 {
        // fd00:ec2::254, AWS's IPv6 metadata endpoint, is in here too.
        Some("unique local (private) network")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local (deprecated)")
    } else if first & 0xff00 == 0xff00 {
        Some("multicast")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if ip.segments()[..4] == [0x0100, 0, 0, 0] {
        Some("discard-only")
    } else if first == 0x2001 && ip.segments()[1] == 0 {
        // The client's IPv4 address is in there, obfuscated; no subscriber needs Teredo.
        Some("Teredo tunnel")
    } else if ip.segments()[..3] == [0x64, 0xff9b, 1] {
        // RFC 8215: whatever IPv4 a local translator maps it to, internal ones included.
        Some("local-use NAT64")
    } else {
        None
    }
}

/// A DNS resolver for hyper's connector that returns only the addresses the policy allows,
/// and fails when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl GuardedResolver {
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let mut allowed = Vec::new();
            let mut refused = None;
            for addr in tokio::net::lookup_host((name.as_str(), 0)).await? {
                match policy.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(r) => refused = Some(r),
                }
            }
            match (allowed.is_empty(), refused) {
                (false, _) => Ok(allowed.into_iter()),
                (true, Some(r)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, r)),
                (true, None) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no addresses", name.as_str()),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn internal_addresses_are_refused_public_ones_pass() {
        let policy = AddressPolicy::default();
        for (addr, reason) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private network"),
            ("172.31.255.255", "private network"),
            ("192.168.0.10", "private network"),
            ("169.254.169.254", "cloud metadata endpoint"),
            ("169.254.10.1", "link-local"),
            ("100.100.0.1", "carrier-grade NAT"),
            ("0.0.0.0", "'this' network"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "reserved (and broadcast)"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00:ec2::254", "unique local (private) network"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            // IPv4 written as IPv6 is judged as IPv4.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata endpoint"),
            ("64:ff9b::a00:1", "private network"),
        ] {
            let refused = policy.check(ip(addr)).expect_err(addr);
            assert_eq!(refused.reason, reason, "{addr}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn tunnels_and_translators_to_ipv4_are_judged_by_what_they_reach() {
        let policy = AddressPolicy::default();
        let refused = |text: &str| {
            policy
                .check(text.parse().expect("address"))
                .err()
                .map(|e| e.reason)
        };
        // 6to4: 2002:0a00:0001:: is the 6to4 site of 10.0.0.1.
        assert_eq!(refused("2002:a00:1::1"), Some("private network"));
        assert_eq!(refused("2002:7f00:1::"), Some("loopback"));
        assert_eq!(refused("2002:5db8:d822::1"), None, "93.184.216.34, public");
        assert_eq!(
            refused("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            Some("Teredo tunnel")
        );
        assert_eq!(refused("64:ff9b:1::a00:1"), Some("local-use NAT64"));
        assert_eq!(refused("64:ff9b::a00:1"), Some("private network"));
    }

    #[test]
    fn the_allowlist_lets_trusted_ranges_through() {
        let policy = AddressPolicy::new(vec![
            "127.0.0.0/8".parse().expect("net"),
            "10.8.0.0/16".parse().expect("net"),
        ]);
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(
            policy.check(ip("::ffff:127.0.0.1")),
            Ok(()),
            "mapped form of an allowed address"
        );
        assert_eq!(policy.check(ip("10.8.3.4")), Ok(()));
        assert!(policy.check(ip("10.9.0.1")).is_err());
        assert!(policy.check(ip("169.254.169.254")).is_err());
    }
}
