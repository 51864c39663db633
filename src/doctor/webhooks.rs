//! A5, the webhooks half: every admission webhook the cluster calls through a Service
//! (cert-manager's, Istio's, Kubeflow's) has a ready endpoint behind that Service. A
//! webhook whose pods are gone makes the API server refuse every create or update of the
//! objects it matches ("failed calling webhook ... no endpoints available"), which users
//! meet far from the cause: a notebook that cannot be created, an install stage that
//! fails on an unrelated object. Webhooks with `failurePolicy: Ignore` only slow those
//! calls down: a warning. All webhooks are judged, not only the stack's: any of them can
//! block gpuctl's own stages.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::evidence::Evidence;
use super::{CLUSTER, Finding, Findings, Severity};

#[derive(Deserialize)]
struct Configuration {
    metadata: crate::kube::Meta,
    #[serde(default)]
    webhooks: Vec<Webhook>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_config: ClientConfig,
    #[serde(default)]
    failure_policy: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientConfig {
    service: Option<ServiceRef>,
}

#[derive(Deserialize)]
struct ServiceRef {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
struct Endpoints {
    metadata: crate::kube::Meta,
    #[serde(default)]
    subsets: Vec<Subset>,
}

#[derive(Deserialize)]
struct Subset {
    #[serde(default)]
    addresses: Vec<serde_json::Value>,
}

/// The webhook configurations (validating and mutating, one JSON list each) and every
/// Endpoints object, from the cluster script.
pub fn check(ev: &Evidence) -> Vec<Finding> {
    let mut f = Findings::new(CLUSTER);
    let (Some(hooks), Some(eps)) = (ev.cmd("webhooks"), ev.cmd("endpoints")) else {
        f.add("A5", Severity::Skip, "the webhooks were not read");
        return f.list;
    };
    if !hooks.ok() || !eps.ok() {
        f.add(
            "A5",
            Severity::Error,
            "cannot read the webhooks and their endpoints",
        )
        .evidence(hooks.lines.iter().chain(&eps.lines).take(6).cloned());
        return f.list;
    }
    let hooks_text = hooks.lines.join("\n");
    let configs: Vec<Configuration> = serde_json::Deserializer::from_str(&hooks_text)
        .into_iter::<crate::kube::List<Configuration>>()
        .flatten()
        .flat_map(|l| l.items)
        .collect();
    let ready: BTreeSet<(String, String)> =
        match crate::kube::list::<Endpoints>(&eps.lines.join("\n"), "Endpoints") {
            Ok(l) => l
                .items
                .into_iter()
                .filter(|e| e.subsets.iter().any(|s| !s.addresses.is_empty()))
                .map(|e| (e.metadata.namespace, e.metadata.name))
                .collect(),
            Err(why) => {
                f.add("A5", Severity::Error, why);
                return f.list;
            }
        };
    let (mut blocking, mut slow, mut count) = (Vec::new(), Vec::new(), 0);
    for c in &configs {
        for w in &c.webhooks {
            let Some(svc) = &w.client_config.service else {
                continue; // called by URL: outside the cluster's Services
            };
            count += 1;
            if ready.contains(&(svc.namespace.clone(), svc.name.clone())) {
                continue;
            }
            let line = format!(
                "{} (in {}) → service {}/{} has no ready endpoint",
                w.name, c.metadata.name, svc.namespace, svc.name
            );
            if w.failure_policy.as_deref() == Some("Ignore") {
                slow.push(line);
            } else {
                blocking.push(line);
            }
        }
    }
    let fix = "kubectl -n NAMESPACE get pods,endpoints for the service named: start its pods \
               again (gpuctl install --only stack for the stack's), or delete the webhook \
               configuration of a component that is gone";
    if !blocking.is_empty() {
        f.add(
            "A5",
            Severity::Error,
            format!(
                "{} admission webhook(s) without endpoints: the API server refuses what they match",
                blocking.len()
            ),
        )
        .evidence(blocking.into_iter().chain(slow))
        .fix(fix);
    } else if !slow.is_empty() {
        f.add(
            "A5",
            Severity::Warn,
            format!(
                "{} admission webhook(s) without endpoints (failurePolicy Ignore: calls wait for the timeout)",
                slow.len()
            ),
        )
        .evidence(slow)
        .fix(fix);
    } else {
        f.add(
            "A5",
            Severity::Ok,
            format!("every admission webhook ({count}) has a ready endpoint"),
        );
    }
    f.list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOOKS: &str = r#"{"items": [{"metadata": {"name": "cert-manager-webhook"}, "webhooks": [
        {"name": "webhook.cert-manager.io", "clientConfig": {"service": {"namespace": "cert-manager", "name": "cert-manager-webhook"}}}]}]}
{"items": [{"metadata": {"name": "istio-sidecar-injector"}, "webhooks": [
        {"name": "sidecar.istio.io", "failurePolicy": "Ignore", "clientConfig": {"service": {"namespace": "istio-system", "name": "istiod"}}},
        {"name": "by-url", "clientConfig": {"url": "https://example.com/hook"}}]}]}"#;

    fn judge(endpoints: &str) -> Finding {
        let ev = Evidence::for_test(&[("webhooks", 0, HOOKS), ("endpoints", 0, endpoints)]);
        check(&ev).remove(0)
    }

    #[test]
    fn a_webhook_without_endpoints_blocks_unless_it_is_ignored() {
        let both = r#"{"items": [
            {"metadata": {"name": "cert-manager-webhook", "namespace": "cert-manager"}, "subsets": [{"addresses": [{"ip": "10.42.0.5"}]}]},
            {"metadata": {"name": "istiod", "namespace": "istio-system"}, "subsets": [{"addresses": [{"ip": "10.42.0.6"}]}]}]}"#;
        let ok = judge(both);
        assert_eq!(ok.severity, Severity::Ok, "{ok:?}");
        assert!(ok.title.contains("(2)"), "{}", ok.title);

        let no_istiod = r#"{"items": [
            {"metadata": {"name": "cert-manager-webhook", "namespace": "cert-manager"}, "subsets": [{"addresses": [{"ip": "10.42.0.5"}]}]},
            {"metadata": {"name": "istiod", "namespace": "istio-system"}, "subsets": [{"notReadyAddresses": [{"ip": "10.42.0.6"}]}]}]}"#;
        assert_eq!(judge(no_istiod).severity, Severity::Warn);

        let none = judge(r#"{"items": []}"#);
        assert_eq!(none.severity, Severity::Error);
        assert_eq!(
            none.evidence,
            [
                "webhook.cert-manager.io (in cert-manager-webhook) → service cert-manager/cert-manager-webhook has no ready endpoint",
                "sidecar.istio.io (in istio-sidecar-injector) → service istio-system/istiod has no ready endpoint"
            ]
        );
    }

    #[test]
    fn no_webhooks_at_all_is_ok() {
        let ev = Evidence::for_test(&[
            ("webhooks", 0, "{\"items\": []}\n{\"items\": []}"),
            ("endpoints", 0, "{\"items\": []}"),
        ]);
        assert_eq!(check(&ev)[0].severity, Severity::Ok);
    }
}
