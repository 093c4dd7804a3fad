//! Who the client is: the TCP peer, or, when the peer is a trusted proxy, the right-most
//! address of `X-Forwarded-For` that is not a trusted proxy itself.
//!
//! Walking from the right matters: a client can write anything into the header, but each
//! trusted proxy appends the address it saw, so only the entries right of the first untrusted
//! one are believable.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client of a request from `peer`. IPv4-mapped IPv6 addresses (a dual-stack listener's
/// IPv4 peers) are read as the IPv4 addresses they are, so IPv4 `trusted_proxies` and
/// `allow_cidrs` match them.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Later header lines were appended later: walk them, and their entries, right to left.
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let Some(ip) = parse_entry(entry) else {
            // Garbage where a trusted proxy should have written an address: believe nothing
            // further left.
            return client;
        };
        let ip = ip.to_canonical();
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, maybe bracketed (IPv6) or with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const PROXIES: &[&str] = &["10.0.0.0/8", "fd00::/8"];

    fn trusted() -> Vec<IpNet> {
        PROXIES.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn a_dual_stack_listeners_ipv4_peer_matches_ipv4_proxies() {
        let mapped = ip("::ffff:10.1.2.3");
        let h = headers(&["203.0.113.5"]);
        assert_eq!(client_address(mapped, &h, &trusted()), ip("203.0.113.5"));
        assert_eq!(
            client_address(ip("::ffff:198.51.100.1"), &h, &trusted()),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&["1.2.3.4"]);
        assert_eq!(
            client_address(ip("203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(client_address(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        // The client forged "6.6.6.6"; the first proxy appended the real 198.51.100.7, the
        // second proxy appended the first proxy's address.
        let h = headers(&["6.6.6.6, 198.51.100.7, 10.1.2.3"]);
        assert_eq!(
            client_address(ip("10.9.9.9"), &h, &trusted()),
            ip("198.51.100.7")
        );
        // Split over two header lines, with a port and an IPv6 proxy.
        let h = headers(&["6.6.6.6, 198.51.100.7:5555", "[fd00::1]"]);
        assert_eq!(
            client_address(ip("10.9.9.9"), &h, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn without_the_header_or_with_only_proxies_the_last_known_address_counts() {
        assert_eq!(
            client_address(ip("10.9.9.9"), &HeaderMap::new(), &trusted()),
            ip("10.9.9.9")
        );
        let h = headers(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(
            client_address(ip("10.9.9.9"), &h, &trusted()),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn garbage_stops_the_walk() {
        let h = headers(&["198.51.100.7, not-an-ip, 10.1.1.1"]);
        assert_eq!(
            client_address(ip("10.9.9.9"), &h, &trusted()),
            ip("10.1.1.1")
        );
    }
}
