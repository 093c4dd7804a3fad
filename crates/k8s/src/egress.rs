//! What the pods must be able to reach for the config they run: an ingress with an AWS SNS
//! source fetches signing certificates and confirms subscriptions over HTTPS, so its
//! NetworkPolicy must let it out on port 443.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::Violation;

/// A violation when `config` has an `aws-sns` source and the ingress's NetworkPolicy (if the
/// chart renders one) has no egress rule that allows TCP 443.
pub(crate) fn check_sns_egress(
    policies: &[NetworkPolicy],
    config: &spillway_config::Config,
) -> Option<Violation> {
    let sns = config
        .sources
        .values()
        .any(|s| s.verify.scheme == "aws-sns");
    let policy = policies.iter().find(|p| is_ingress_policy(p))?;
    if !sns || allows_https_out(policy) {
        return None;
    }
    Some(Violation {
        object: format!(
            "NetworkPolicy/{}",
            policy.metadata.name.clone().unwrap_or_default()
        ),
        rule: "sns-egress",
        message: "an aws-sns source needs egress to TCP 443 (SNS signing certificates and subscription confirmations)".into(),
    })
}

fn is_ingress_policy(policy: &NetworkPolicy) -> bool {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.as_ref())
        .and_then(|s| s.match_labels.as_ref())
        .and_then(|l| l.get("app.kubernetes.io/component"))
        .is_some_and(|c| c == "ingress")
}

fn allows_https_out(policy: &NetworkPolicy) -> bool {
    let Some(spec) = &policy.spec else {
        return true;
    };
    let egress_limited = spec
        .policy_types
        .as_ref()
        .is_some_and(|t| t.iter().any(|t| t == "Egress"));
    if !egress_limited {
        return true;
    }
    spec.egress.iter().flatten().any(|rule| match &rule.ports {
        None => true,
        Some(ports) => ports.iter().any(|p| {
            p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                && match &p.port {
                    None => true,
                    Some(IntOrString::Int(port)) => {
                        *port == 443 || p.end_port.is_some_and(|end| *port < 443 && end >= 443)
                    }
                    Some(IntOrString::String(_)) => false,
                }
        }),
    })
}
