//! `spillway subscriptions`: adds, lists and removes subscribers in the subscription registry
//! (a compacted Kafka topic the workers follow, so they pick up changes within moments).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use spillway_config::{Config, CredentialConfig, Process, StoredSecret, StoredSubscription};
use spillway_worker::registry::{Origin, Registry, SubscriptionView};

use super::load;

/// The id of the signing secret `subscriptions add` generates (given neither --secret-env nor
/// --secret-file). Listings show it and rotations name it, so the value stays as it is.
const GENERATED_SECRET_ID: &str = "generated";
/// The id of the signing secret `subscriptions add` reads from --secret-env or --secret-file;
/// shown in listings, so the value stays as it is.
const SUPPLIED_SECRET_ID: &str = "s1";

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// Add a subscription to the registry, or replace the one with that id.
    Add(AddArgs),
    /// List every subscription: the config file's and the registry's (secrets redacted).
    List {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a subscription from the registry.
    Remove {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        id: String,
    },
}

// The arguments of `subscriptions add` (a plain comment: a doc comment here would become the
// command's help text in place of the one on `SubscriptionsCommand::Add`).
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    id: String,
    /// Where events are POSTed (http or https).
    #[arg(long)]
    url: String,
    /// A source whose events it receives (repeatable); every source when none.
    #[arg(long = "source")]
    sources: Vec<String>,
    /// An event type it receives (repeatable); every type when none.
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Environment variable holding its signing secret (`whsec_...`). Without
    /// --secret-env or --secret-file a secret is generated and printed once.
    #[arg(long, conflicts_with = "secret_file")]
    secret_env: Option<String>,
    /// File holding its signing secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// An extra header sent with every delivery, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// A delivery not answered within this has failed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Deliveries per second each worker makes to it at most.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Take the records of sources with a Protobuf schema as their JSON mapping.
    #[arg(long)]
    protobuf_json: bool,
    /// Take events whose body is in object storage as a reference with a pre-signed URL,
    /// valid this long (e.g. `1h`), instead of the body.
    #[arg(long, value_parser = humantime::parse_duration)]
    large_body_reference: Option<Duration>,
}

pub async fn run(command: SubscriptionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SubscriptionsCommand::Add(args) => add(args).await,
        SubscriptionsCommand::List { config, json } => list(&config, json).await,
        SubscriptionsCommand::Remove { config, id } => remove(&config, &id).await,
    }
}

/// Registers the subscription; a generated secret is printed once, here and nowhere else.
async fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load(&args.config, Process::Worker)?);
    let (secret, generated) = signing_secret(args.secret_env, args.secret_file)?;
    let sub = StoredSubscription {
        id: args.id,
        url: args.url,
        sources: args.sources,
        event_types: args.event_types,
        secrets: vec![secret],
        headers: parse_headers(args.headers)?,
        timeout: args.timeout,
        rate_limit: args.rate_limit,
        protobuf_body: if args.protobuf_json {
            spillway_config::ProtobufBody::Json
        } else {
            spillway_config::ProtobufBody::Bytes
        },
        large_body: if args.large_body_reference.is_some() {
            spillway_config::LargeBody::Reference
        } else {
            spillway_config::LargeBody::Body
        },
        reference_expiry: args.large_body_reference,
    };
    let registry = registry(&config)?;
    match registry.put(&sub).await {
        Ok(_) => {
            println!("subscription {} registered", sub.id);
            if let Some(secret) = generated {
                println!("signing secret (shown once): {secret}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The subscription's secret: read from `env` or `file`, or else generated, in which case its
/// text is returned too, for printing.
fn signing_secret(
    env: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<(StoredSecret, Option<String>)> {
    if env.is_none() && file.is_none() {
        let secret = spillway_worker::registry::generate_secret(GENERATED_SECRET_ID);
        let text = secret.secret.clone();
        return Ok((secret, Some(text)));
    }
    let text = spillway_config::read_credential(&CredentialConfig { env, file })
        .map_err(|e| anyhow::anyhow!("signing secret: {e}"))?;
    let secret = StoredSecret {
        id: SUPPLIED_SECRET_ID.into(),
        secret: text,
        not_after: None,
    };
    Ok((secret, None))
}

/// `--header` values (`Name: value`) by name, trimmed.
fn parse_headers(headers: Vec<String>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut parsed = BTreeMap::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header {header:?}: expected `Name: value`"))?;
        parsed.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(parsed)
}

/// Prints the config file's subscriptions and the registry's, as JSON or a table.
async fn list(config: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load(config, Process::Worker)?);
    let registry = registry(&config)?;
    let views = registry.views(&registry.read_all().await?);
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        print_table(&views);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(views: &[SubscriptionView]) {
    println!(
        "{:<24} {:<8} {:<48} {:<16} EVENT TYPES",
        "ID", "ORIGIN", "URL", "SOURCES"
    );
    let or_all = |list: &[String]| {
        if list.is_empty() {
            "*".to_owned()
        } else {
            list.join(",")
        }
    };
    for v in views {
        let origin = match v.origin {
            Origin::Config => "config",
            Origin::Registry => "registry",
        };
        println!(
            "{:<24} {:<8} {:<48} {:<16} {}",
            v.id,
            origin,
            v.url,
            or_all(&v.sources),
            or_all(&v.event_types)
        );
    }
}

/// Removes a registered subscription; one from the config file, or one nobody registered, is
/// refused.
async fn remove(config: &std::path::Path, id: &str) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load(config, Process::Worker)?);
    let registry = registry(&config)?;
    if !registry.is_config_managed(id) && !registry.read_all().await?.iter().any(|s| s.id == id) {
        eprintln!("no subscription {id:?} in the registry");
        return Ok(ExitCode::FAILURE);
    }
    match registry.remove(id).await {
        Ok(_) => {
            println!("subscription {id} removed");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The registry, written through a producer of its own.
fn registry(config: &Arc<Config>) -> anyhow::Result<Registry> {
    let producer =
        spillway_kafka::EventProducer::new(&spillway_kafka::ProducerSettings::from(&config.kafka))?;
    Ok(Registry::new(config.clone(), producer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_colon_value() {
        let parsed = parse_headers(vec!["X-Team: payments ".into(), "A:b:c".into()]).unwrap();
        assert_eq!(parsed["X-Team"], "payments");
        assert_eq!(parsed["A"], "b:c");
        assert!(parse_headers(vec!["no colon".into()]).is_err());
    }

    #[test]
    fn a_generated_secret_is_returned_for_printing_and_a_supplied_one_is_not() {
        let (secret, shown) = signing_secret(None, None).unwrap();
        assert_eq!(secret.id, "generated");
        assert_eq!(shown.as_deref(), Some(secret.secret.as_str()));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let (secret, shown) = signing_secret(None, Some(file)).unwrap();
        assert_eq!(secret.id, "s1");
        assert_eq!(secret.secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(shown.is_none());
    }
}
