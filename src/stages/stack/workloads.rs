//! When the stack is up: every Deployment, StatefulSet and DaemonSet of the components
//! ready, judged from `kubectl get ... -o json` (a stream of lists). What is not ready is
//! named with its counts and its last condition, which is what an admin needs to start
//! looking (`Available=False (MinimumReplicasUnavailable)`, `ProgressDeadlineExceeded`).

use serde::Deserialize;

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Workload>,
}

#[derive(Deserialize)]
struct Workload {
    #[serde(default)]
    kind: String,
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    generation: i64,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct Spec {
    replicas: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    observed_generation: i64,
    #[serde(default)]
    ready_replicas: i64,
    #[serde(default)]
    updated_replicas: i64,
    #[serde(default)]
    desired_number_scheduled: i64,
    #[serde(default)]
    number_ready: i64,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    last_transition_time: String,
}

/// The label every object of a component carries: its name.
pub const COMPONENT_LABEL: &str = "gpuctl.io/component";

/// `Ok` when every workload in `out` (one or more JSON lists, one after the other) is
/// ready; otherwise one line per workload that is not.
pub fn judge(out: &str) -> Result<(), String> {
    let mut not_ready = Vec::new();
    for list in serde_json::Deserializer::from_str(out).into_iter::<List>() {
        let list = list.map_err(|e| format!("kubectl's answer is not a JSON list: {e}"))?;
        for w in list.items {
            if let Some(why) = not_ready_because(&w) {
                let component = w
                    .metadata
                    .labels
                    .get(COMPONENT_LABEL)
                    .map(|c| format!(" (component {c})"))
                    .unwrap_or_default();
                not_ready.push(format!(
                    "{} {}/{}{component}: {why}",
                    w.kind.to_lowercase(),
                    w.metadata.namespace,
                    w.metadata.name
                ));
            }
        }
    }
    if not_ready.is_empty() {
        Ok(())
    } else {
        Err(not_ready.join("\n"))
    }
}

fn not_ready_because(w: &Workload) -> Option<String> {
    let s = &w.status;
    let stale = s.observed_generation < w.metadata.generation;
    let (ready, want) = match w.kind.as_str() {
        "DaemonSet" => (s.number_ready, s.desired_number_scheduled),
        "Deployment" | "StatefulSet" => (s.ready_replicas, w.spec.replicas.unwrap_or(1)),
        _ => return None,
    };
    let updated = w.kind != "Deployment" || s.updated_replicas >= want;
    if !stale && ready >= want && updated {
        return None;
    }
    let mut why = if stale {
        "its controller has not seen the latest change yet".to_string()
    } else {
        format!("{ready}/{want} ready")
    };
    if let Some(c) = last_condition(&s.conditions) {
        why.push_str(&format!("; {}={}", c.kind, c.status));
        if !c.reason.is_empty() {
            why.push_str(&format!(" ({})", c.reason));
        }
        if !c.message.is_empty() {
            why.push_str(&format!(": {}", c.message));
        }
    }
    Some(why)
}

/// The condition that changed last; among equals, a false one (that is the news).
fn last_condition(conditions: &[Condition]) -> Option<&Condition> {
    conditions
        .iter()
        .max_by_key(|c| (c.last_transition_time.clone(), c.status != "True"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ready_workloads_pass_and_the_others_are_named_with_their_last_condition() {
        let ready = r#"{"items":[
            {"kind":"Deployment","metadata":{"name":"a","namespace":"kf","generation":2},"spec":{"replicas":2},
             "status":{"observedGeneration":2,"readyReplicas":2,"updatedReplicas":2}},
            {"kind":"DaemonSet","metadata":{"name":"d","namespace":"kf","generation":1},
             "status":{"observedGeneration":1,"desiredNumberScheduled":0,"numberReady":0}}]}
            {"items":[]}"#;
        assert_eq!(judge(ready), Ok(()));
        let stuck = r#"{"items":[{"kind":"Deployment","metadata":{"name":"dash","namespace":"kubeflow","generation":1,
            "labels":{"gpuctl.io/component":"kubeflow-core"}},
            "status":{"observedGeneration":1,"readyReplicas":0,"updatedReplicas":1,"conditions":[
              {"type":"Progressing","status":"True","reason":"NewReplicaSetAvailable","lastTransitionTime":"2026-01-01T00:00:00Z"},
              {"type":"Available","status":"False","reason":"MinimumReplicasUnavailable","message":"Deployment does not have minimum availability.","lastTransitionTime":"2026-01-01T00:00:05Z"}]}}]}
            {"items":[{"kind":"StatefulSet","metadata":{"name":"db","namespace":"kubeflow","generation":3},"spec":{"replicas":1},
              "status":{"observedGeneration":2,"readyReplicas":1}}]}"#;
        let err = judge(stuck).unwrap_err();
        assert_eq!(
            err,
            "deployment kubeflow/dash (component kubeflow-core): 0/1 ready; Available=False \
             (MinimumReplicasUnavailable): Deployment does not have minimum availability.\n\
             statefulset kubeflow/db: its controller has not seen the latest change yet"
        );
        assert!(judge("not json").is_err());
    }
}
