//! TLS to the Redis Cluster: `rediss://` seeds, with a private CA and a client certificate
//! when the cluster needs them.

use std::path::PathBuf;

use crate::{parse_str, Process, RedisTlsConfig};

fn config(redis: &str) -> crate::Config {
    let text = format!(
        "kafka: {{ brokers: k:9092 }}\nredis: {redis}\n\
         sources:\n  a: {{ verify: {{ scheme: none }} }}\n"
    );
    parse_str(&text).expect("parses")
}

fn errors(redis: &str, process: Process) -> Vec<String> {
    config(redis)
        .validate_for(process)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn rediss_seeds_with_a_private_ca_and_a_client_certificate_are_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, "PEM").expect("write");
        path.display().to_string()
    };
    let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
    let redis = format!(
        "{{ nodes: [\"rediss://a:6379\", \"rediss://b:6379\"], tls: {{ ca_file: {ca}, \
         client_cert_file: {cert}, client_key_file: {key} }} }}"
    );
    assert_eq!(errors(&redis, Process::All), Vec::<String>::new());
    assert_eq!(
        config(&redis).redis.tls,
        RedisTlsConfig {
            ca_file: Some(PathBuf::from(ca)),
            client_cert_file: Some(PathBuf::from(cert)),
            client_key_file: Some(PathBuf::from(key)),
        }
    );
    // With the system's roots and no client certificate, rediss:// needs nothing more.
    assert_eq!(
        errors("{ nodes: [\"rediss://a:6379\"] }", Process::All),
        Vec::<String>::new()
    );
}

#[test]
fn tls_files_go_with_rediss_seeds_only() {
    assert_eq!(
        errors(
            "{ nodes: [\"redis://a:6379\"], tls: { ca_file: /nonexistent/ca.crt } }",
            Process::Worker
        ),
        ["redis.tls: is only for rediss:// nodes, and no seed is rediss://"]
    );
}

#[test]
fn a_url_fragment_is_refused_with_its_field() {
    assert_eq!(
        errors(
            "{ nodes: [\"rediss://a:6379/#insecure\", \"rediss://b:6379#x\", \"c:6379\"] }",
            Process::Worker
        ),
        [
            "redis.nodes[0]: #insecure (no certificate check) is not supported: give the cluster's CA in redis.tls.ca_file",
            "redis.nodes[1]: a Redis URL takes no #fragment",
            "redis.nodes[2]: must start with redis:// or rediss:// (TLS)",
        ]
    );
}

#[test]
fn the_tls_files_are_looked_for_only_by_the_ingress() {
    let redis = "{ nodes: [\"rediss://a:6379\"], tls: { ca_file: /nonexistent/ca.crt } }";
    assert_eq!(
        errors(redis, Process::Ingress),
        ["redis.tls.ca_file: /nonexistent/ca.crt is not a readable file"]
    );
    assert_eq!(errors(redis, Process::Worker), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn a_client_key_others_can_read_is_warned_about_for_the_ingress() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, "PEM").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.display().to_string()
    };
    let (cert, key) = (write("client.crt", 0o644), write("client.key", 0o644));
    let config = config(&format!(
        "{{ nodes: [\"rediss://a:6379\"], tls: {{ client_cert_file: {cert}, client_key_file: {key} }} }}"
    ));
    let warned = |process| -> Vec<String> {
        config
            .warnings_for(process)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        warned(Process::Ingress),
        [format!(
            "redis.tls.client_key_file: {key} holds a secret and its mode 0644 lets group or \
             others read it: chmod 600 it (or 640 for a group of its own)"
        )]
    );
    assert_eq!(warned(Process::Worker), Vec::<String>::new());
}
