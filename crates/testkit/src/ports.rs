//! Ports for servers that cannot be handed a listener (tansu, PostgreSQL, HAProxy, Redis),
//! reserved so that nothing else on the machine takes them before the server binds.
//!
//! Asking the kernel for port 0 and handing the number on is racy: the port is free again as
//! soon as the probe closes, and the kernel hands the same range (net.ipv4.ip_local_port_range,
//! 32768–60999 by default) to every outgoing connection. A broker started seconds after its
//! port was chosen, while a load generator opens connections, failed to bind (EADDRINUSE).
//! So ports come from below that range, where the kernel never picks one on its own, and each
//! is reserved across the concurrently running test processes by an exclusive lock on a file
//! named after it, held until the process exits.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Single ports: clear of the local stack's fixed ports (5433, 7000–7005 and their cluster-bus
/// ports 17000–17005, 8080–8099, 9000, 9090–9095) and of the blocks below.
const SINGLE: std::ops::Range<u16> = 10_000..12_000;
/// Bases of six-port blocks whose Redis cluster-bus ports (base + 10000) stay below the
/// kernel's ephemeral range too.
const BLOCK_BASES: std::ops::Range<u16> = 12_000..22_000;
const BLOCK_STRIDE: u16 = 10;
/// Redis Cluster's bus port is its client port plus this.
pub const BUS_OFFSET: u16 = 10_000;
/// The block whose ports are the local stack's Redis cluster-bus ports (7000–7005 + 10000):
/// taken while `make up`'s cluster runs, and needed by it when it starts later.
const LOCAL_STACK_BUS_BLOCK: u16 = 7_000 + BUS_OFFSET;

/// Locks this process holds; dropping one would free its ports for the others.
static HELD: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 that is free now and that no other test process and no outgoing
/// connection will take while this process runs.
pub fn free_port() -> u16 {
    let span = SINGLE.end - SINGLE.start;
    (0..span)
        .map(|i| SINGLE.start + (spread(span) + i) % span)
        .find(|&port| reserve(&[port]))
        .expect("a free port below the ephemeral range")
}

/// The base of six consecutive ports, each free and reserved as [`free_port`]'s are, whose
/// cluster-bus ports (port + [`BUS_OFFSET`]) are too.
pub fn free_port_block() -> u16 {
    let blocks = (BLOCK_BASES.end - BLOCK_BASES.start) / BLOCK_STRIDE;
    (0..blocks)
        .map(|i| BLOCK_BASES.start + (spread(blocks) + i) % blocks * BLOCK_STRIDE)
        .filter(|&base| base != LOCAL_STACK_BUS_BLOCK)
        .find(|&base| {
            let ports: Vec<u16> = (base..base + 6).flat_map(|p| [p, p + BUS_OFFSET]).collect();
            reserve(&ports)
        })
        .expect("a free block of ports below the ephemeral range")
}

/// Where concurrent test processes start looking, so that they seldom try the same ports.
fn spread(span: u16) -> u16 {
    (std::process::id() % u32::from(span)) as u16
}

/// Locks every port's file and checks that each can be bound; keeps the locks when all can,
/// releases them (by dropping the files) when any cannot.
fn reserve(ports: &[u16]) -> bool {
    let mut locks = Vec::with_capacity(ports.len());
    for &port in ports {
        let Some(lock) = lock(port) else {
            return false;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return false;
        }
        locks.push(lock);
    }
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(locks);
    true
}

/// An exclusive lock on the port's file, or `None` when another process holds it. The
/// kernel drops the lock when the process exits, however it exits. flock(2) through nix:
/// std's `File::try_lock` is newer (1.89) than the workspace's rust-version (1.85).
fn lock(port: u16) -> Option<Flock<File>> {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).expect("the port lock directory");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .expect("a port lock file");
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Some(lock),
        Err((_, Errno::EWOULDBLOCK)) => None,
        // Not "taken": a file system without flock would otherwise make every port look
        // taken and the search end in a misleading "no free port".
        Err((_, errno)) => panic!("locking {}: {errno}", dir.join(port.to_string()).display()),
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("spillway-test-ports")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_not_handed_out_again() {
        let first = free_port();
        let second = free_port();
        assert_ne!(first, second);
        assert!(SINGLE.contains(&first) && SINGLE.contains(&second));
        // Another process would find the file locked (flock(2) locks an open file, so a second
        // open in this process conflicts too).
        assert!(lock(first).is_none(), "the port's lock is held");
    }

    #[test]
    fn a_block_and_its_bus_ports_stay_below_the_ephemeral_range() {
        let base = free_port_block();
        assert!(BLOCK_BASES.contains(&base));
        assert_ne!(base, LOCAL_STACK_BUS_BLOCK);
        assert!(base + 5 + BUS_OFFSET < 32_768);
    }
}
