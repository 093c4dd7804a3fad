//! `spillway check-config` names each bad field and why, and exits non-zero; what it warns of,
//! the serving processes log when they start.

use std::process::Command;

use spillway_testkit::spillway::{all_sources, setup, spillway_bin};

#[test]
fn check_config_names_every_bad_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        r#"
kafka: { brokers: "127.0.0.1:9092" }
redis: { nodes: ["127.0.0.1:7000"] }
sources:
  github:
    verify: { scheme: github }
    secrets: [ { id: k, env: SPILLWAY_TEST_SURELY_UNSET } ]
  open:
    verify: { scheme: none }
    max_body_bytes: 0
"#,
    )
    .expect("config");
    let (ok, _, stderr) = check_config(&config);
    assert!(!ok);
    for expected in [
        "redis.nodes[0]: must start with redis://",
        "sources.github.secrets[0]: env: environment variable SPILLWAY_TEST_SURELY_UNSET is not set",
        "sources.open.max_body_bytes: must be at least 1",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }

    // A typo is named too, with its place.
    std::fs::write(&config, "kafka: { brokers: x, brokerz: y }\nsources: {}\n").expect("config");
    let (ok, _, stderr) = check_config(&config);
    assert!(!ok);
    assert!(stderr.contains("brokerz"), "{stderr}");

    // And a good one passes.
    let good = setup(
        "127.0.0.1:9092",
        &["redis://127.0.0.1:7000".into()],
        &all_sources(),
        serde_json::json!({}),
    );
    let (ok, stdout, stderr) = check_config(&good.config);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok (6 sources"), "{stdout}");
}

/// Each host holds only its process's secrets (the Debian package's units check with
/// `--process`): an ingress host without the subscriptions' secrets passes as `ingress`, not as
/// `worker` or `all`, and a worker host without the sources' passes as `worker` and `console`.
#[test]
fn check_config_for_one_process_reads_only_its_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("split.yaml");
    let source_secret = dir.path().join("source.secret");
    let subscription_secret = dir.path().join("subscription.secret");
    std::fs::write(
        &config,
        format!(
            r#"
kafka: {{ brokers: "127.0.0.1:9092" }}
redis: {{ nodes: ["redis://127.0.0.1:7000"] }}
sources:
  github:
    verify: {{ scheme: github }}
    secrets: [ {{ id: k, file: {} }} ]
subscriptions:
  - id: billing
    url: https://billing.example.com/hooks
    secrets: [ {{ id: s, file: {} }} ]
"#,
            source_secret.display(),
            subscription_secret.display()
        ),
    )
    .expect("config");
    std::fs::write(&source_secret, "an ingress host's secret\n").expect("secret");
    let as_process = |process: &str| check_config_with(&config, &["--process", process]).0;
    assert!(as_process("ingress"));
    assert!(!as_process("worker"));
    assert!(!as_process("all"));
    assert!(!check_config(&config).0, "all by default");

    std::fs::remove_file(&source_secret).expect("remove");
    std::fs::write(
        &subscription_secret,
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .expect("secret");
    assert!(as_process("worker"));
    assert!(as_process("console"));
    assert!(!as_process("ingress"));
}

/// Runs `spillway check-config FILE`: success, stdout, stderr.
fn check_config(config: &std::path::Path) -> (bool, String, String) {
    check_config_with(config, &[])
}

fn check_config_with(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(spillway_bin())
        .arg("check-config")
        .args(args)
        .arg(config)
        .output()
        .expect("run");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_processes_log_what_check_config_warns_of() {
    // Blocking failing clients with no trusted proxy: legal, and probably wrong.
    let brokers = spillway_testkit::kafka_brokers();
    let github = spillway_testkit::spillway::source("github");
    let setup = setup(
        &brokers,
        &spillway_testkit::redis_nodes(),
        std::slice::from_ref(&github),
        serde_json::json!({
            "ingress": {
                "block_failing_clients": { "failures": 3, "window": "1m", "duration": "1m" },
            },
        }),
    );
    let (ok, stdout, stderr) = check_config(&setup.config);
    assert!(ok, "{stderr}");
    let warned = format!("{stdout}{stderr}");
    assert!(warned.contains("ingress.block_failing_clients"), "{warned}");
    spillway_testkit::create_topics(&brokers, &[setup.topic("github")]).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let log = ingress.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("ingress.block_failing_clients"))
        .unwrap_or_else(|| panic!("no warning in the ingress's log:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
}
