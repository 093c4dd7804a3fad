//! Readiness on a cluster that cannot run claims: a one-node "cluster" that answers as Redis
//! 6.2 does (PING works; `SET ... NX ... GET` is a syntax error, `NX` and `GET` together
//! came with Redis 7), which PING alone reported healthy.

use std::time::Duration;

use spillway_store::{RedisSettings, RedisStore, RedisTls, SharedStore, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::{store, unique};

/// The node: answers every connection until the test ends (the runtime drops its tasks).
async fn start_redis6() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, port));
        }
    });
    format!("redis://127.0.0.1:{port}")
}

async fn serve(conn: TcpStream, port: u16) {
    let (read, mut write) = conn.into_split();
    let mut read = BufReader::new(read);
    while let Some(args) = read_command(&mut read).await {
        if write
            .write_all(answer(&args, port).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn answer(args: &[String], port: u16) -> String {
    let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
    let has = |word: &str| upper.iter().skip(1).any(|a| a == word);
    match upper.first().map(String::as_str) {
        Some("PING") => "+PONG\r\n".into(),
        // One primary owning every slot: this node.
        Some("CLUSTER") if has("SLOTS") => {
            let id = "0".repeat(40);
            format!(
                "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{id}\r\n"
            )
        }
        Some("SET") if has("NX") && has("GET") => "-ERR syntax error\r\n".into(),
        // CLIENT SETINFO at connect, and anything else.
        _ => "+OK\r\n".into(),
    }
}

/// One command: an array of bulk strings, as clients send them.
async fn read_command(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Vec<String>> {
    let count: usize = header(read, b'*').await?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let len: usize = header(read, b'$').await?;
        let mut arg = vec![0; len + 2];
        read.read_exact(&mut arg).await.ok()?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(args)
}

async fn header(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, kind: u8) -> Option<usize> {
    let mut line = String::new();
    read.read_line(&mut line).await.ok()?;
    let rest = line.strip_prefix(char::from(kind))?;
    rest.trim_end().parse().ok()
}

#[tokio::test]
async fn a_cluster_that_refuses_claims_is_not_healthy_though_it_answers_ping() {
    let store = SharedStore::Redis(
        RedisStore::new(RedisSettings {
            nodes: vec![start_redis6().await],
            tls: RedisTls::default(),
            command_timeout: Duration::from_secs(5),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(600),
        })
        .expect("client"),
    );
    store.ping().await.expect("PING works on Redis 6");
    let claim = store
        .claim("k", "ev")
        .await
        .expect_err("claims need Redis 7");
    let health = store.health("ready").await.expect_err("not healthy");
    assert!(
        matches!(health, StoreError::Unavailable { op: "health", .. }),
        "{health}"
    );
    // The same refusal as the claim's, not some other failure.
    assert_eq!(
        source_text(&health),
        source_text(&claim),
        "{health} / {claim}"
    );
}

fn source_text(e: &StoreError) -> String {
    std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_real_cluster_is_healthy_and_health_keeps_what_a_key_holds() {
    let store = store().await;
    let key = unique("health");
    store.health(&key).await.expect("healthy");
    assert_eq!(
        store.read(&key).await.expect("read").as_deref(),
        Some("health")
    );
    // SET NX: a key in use is not overwritten.
    let claimed = unique("health-claimed");
    store.claim(&claimed, "ev").await.expect("claim");
    store.health(&claimed).await.expect("healthy");
    assert_eq!(
        store.read(&claimed).await.expect("read").as_deref(),
        Some("pending:ev")
    );
}
