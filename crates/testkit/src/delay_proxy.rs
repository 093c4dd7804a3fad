//! A TCP proxy on loopback that a test switches between faults of the network: every byte held
//! for a delay (a slow network or an overloaded server), every connection reset (a partition
//! that refuses), or every byte dropped on connections held open (a partition that black-holes),
//! and healed again, without restarting either end.
//!
//! Each chunk is forwarded at the time it was read plus the delay in force then, so a delay
//! shifts traffic in time without piling up (a queue of chunks does not wait once per chunk).
//!
//! A black-holed connection has lost bytes, so it cannot carry on when the partition heals: the
//! heal resets it (both ends get an RST, as from a stateful hop that lost the flow), and the
//! clients' new connections pass. Connections made during the black-hole are accepted and held,
//! as a connect whose handshake goes unanswered, and reset at the heal too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards every byte, after the delay in force.
    Pass,
    /// Resets every connection, open ones at once and new ones as they are accepted.
    Reset,
    /// Drops every byte both ways; connections, open and new, are held open.
    BlackHole,
}

#[derive(Debug)]
pub struct DelayProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    delay_ms: AtomicU64,
    mode: watch::Sender<Mode>,
    /// Connections accepted so far, and reset by the proxy so far.
    accepted: AtomicU64,
    resets: AtomicU64,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, upstream)
    }

    /// Forwards the connections of `listener` (bound by the caller, who may need its port
    /// before the upstream exists) to `upstream`.
    pub fn serve(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            upstream,
            delay_ms: AtomicU64::new(0),
            mode: watch::Sender::new(Mode::Pass),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(client, accepting.clone()));
            }
        });
        Self { addr, shared, task }
    }

    /// Every byte read from now on is held this long.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Resets every open connection, and every new one, until [`DelayProxy::heal`].
    pub fn reset_all(&self) {
        self.shared.mode.send_replace(Mode::Reset);
    }

    /// Drops every byte, both ways, on open and new connections alike, and holds them open
    /// until [`DelayProxy::heal`], which resets them.
    pub fn black_hole(&self) {
        self.shared.mode.send_replace(Mode::BlackHole);
    }

    /// Forwards again: new connections pass; those that lived through a black-hole are reset.
    pub fn heal(&self) {
        self.shared.mode.send_replace(Mode::Pass);
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections the proxy has reset so far (counting each client connection once).
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end too: a dropped proxy is gone, not a partition.
        self.shared.mode.send_replace(Mode::Reset);
    }
}

/// One client connection, from its accept to its end.
async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    let mut modes = shared.mode.subscribe();
    let first = *modes.borrow_and_update();
    match first {
        Mode::Reset => return reset(&shared, client, None),
        Mode::BlackHole => {
            // Held open, every byte dropped, until the partition changes; then it has lost
            // whatever the client sent, and is reset.
            let mut sink = vec![0u8; 64 * 1024];
            loop {
                tokio::select! {
                    read = client.read(&mut sink) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            return;
                        }
                    }
                    changed = modes.changed() => {
                        if changed.is_err() || shared.mode() != Mode::BlackHole {
                            return reset(&shared, client, None);
                        }
                    }
                }
            }
        }
        Mode::Pass => {}
    }
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return reset(&shared, client, None);
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let pumps = async {
            tokio::join!(
                pump(client_read, server_write, &shared),
                pump(server_read, client_write, &shared),
            )
        };
        tokio::select! {
            _ = pumps => false,
            () = until_cut(&mut modes, false) => true,
        }
    };
    // Both ends closed while black-holed: neither was told (no FIN passed), so the connection
    // is held until the heal, like the others.
    if cut || shared.mode() == Mode::BlackHole {
        until_cut(&mut modes, true).await;
        reset(&shared, client, Some(server));
    }
}

/// Returns when the connection must be reset: the proxy resets everything, or a black-hole it
/// lived through (`black_holed` when already in one) has healed.
async fn until_cut(modes: &mut watch::Receiver<Mode>, mut black_holed: bool) {
    loop {
        match *modes.borrow_and_update() {
            Mode::Reset => return,
            Mode::BlackHole => black_holed = true,
            Mode::Pass if black_holed => return,
            Mode::Pass => {}
        }
        if modes.changed().await.is_err() {
            return; // the proxy is gone
        }
    }
}

/// Closes both ends with an RST rather than a FIN.
fn reset(shared: &Shared, client: TcpStream, server: Option<TcpStream>) {
    shared.resets.fetch_add(1, Ordering::SeqCst);
    for stream in std::iter::once(client).chain(server) {
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}

/// Copies `from` to `to`, each chunk released at its read time plus the delay then in force;
/// while the proxy black-holes, chunks are dropped when read and when due.
async fn pump(mut from: ReadHalf<'_>, mut to: WriteHalf<'_>, shared: &Shared) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if shared.mode() == Mode::BlackHole {
                continue;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // A FIN is a byte of news too: a black-hole drops it.
        if shared.mode() != Mode::BlackHole {
            let _ = to.shutdown().await;
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) if shared.mode() == Mode::BlackHole => {}
                Ok(n) => {
                    let due = Instant::now() + shared.delay();
                    if tx.send((due, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every byte back.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_black_hole_drops_bytes_and_its_heal_resets_the_connection() {
        let proxy = DelayProxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(round_trip(&mut stream).await.expect("passes"), b"ping");
        proxy.black_hole();
        stream.write_all(b"lost").await.expect("written");
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
        assert!(read.is_err(), "nothing comes back: {read:?}");
        proxy.heal();
        let after = stream.read(&mut buf).await;
        assert!(
            after
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{after:?}"
        );
        assert_eq!(proxy.resets(), 1);
        let mut fresh = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(round_trip(&mut fresh).await.expect("passes"), b"ping");
    }

    #[tokio::test]
    async fn a_reset_ends_open_connections_and_refuses_new_ones() {
        let proxy = DelayProxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(round_trip(&mut stream).await.expect("passes"), b"ping");
        proxy.reset_all();
        let mut buf = [0u8; 4];
        let read = stream.read(&mut buf).await;
        assert!(read.is_err(), "{read:?}");
        let mut new = TcpStream::connect(proxy.addr).await.expect("connect");
        assert!(round_trip(&mut new).await.is_err());
        proxy.heal();
        let mut fresh = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(round_trip(&mut fresh).await.expect("passes"), b"ping");
    }
}
