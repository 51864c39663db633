//! The few Kubernetes objects gpuctl reads back from `kubectl ... -o json`, as far as it
//! reads them: nodes (conditions, labels, taints, allocatable) and storage classes.
//!
//! One set of types for the install stages' waits (`ready`, `gpu`, `storage`) and doctor's
//! cluster checks, so both read the cluster the same way. Fields gpuctl does not look at are
//! ignored; absent ones are empty.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A `kubectl get KIND -o json` answer.
#[derive(Debug, Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// Parses `output` as a list; the error names `what` was asked and the answer's first line
/// (kubectl's own error, usually).
pub fn list<T: DeserializeOwned>(output: &str, what: &str) -> Result<List<T>, String> {
    serde_json::from_str(output).map_err(|e| {
        let first = output.lines().next().unwrap_or_default();
        format!("kubectl did not answer with a {what} list ({e}): {first}")
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Node {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeSpec {
    #[serde(default)]
    pub taints: Vec<Taint>,
}

#[derive(Debug, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub allocatable: BTreeMap<String, String>,
    #[serde(default, rename = "nodeInfo")]
    pub node_info: NodeInfo,
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NodeInfo {
    #[serde(default, rename = "kubeletVersion")]
    pub kubelet_version: String,
    #[serde(default, rename = "containerRuntimeVersion")]
    pub container_runtime_version: String,
}

#[derive(Debug, Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

#[derive(Debug, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl Condition {
    /// `Ready=Unknown (NodeStatusUnknown: Kubelet stopped posting node status.)`.
    pub fn line(&self) -> String {
        let mut line = format!("{}={}", self.kind, self.status);
        if !self.reason.is_empty() {
            line.push_str(&format!(" ({}", self.reason));
            if !self.message.is_empty() {
                line.push_str(&format!(": {}", self.message));
            }
            line.push(')');
        }
        line
    }
}

impl Node {
    /// Its `Ready` condition, if it has one yet.
    pub fn ready(&self) -> Option<&Condition> {
        self.status.conditions.iter().find(|c| c.kind == "Ready")
    }

    /// How many of `resource` it can give pods (`0` when it does not advertise it).
    pub fn allocatable(&self, resource: &str) -> u64 {
        self.status
            .allocatable
            .get(resource)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A DaemonSet as far as readiness goes.
#[derive(Debug, Deserialize)]
pub struct DaemonSet {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub status: DaemonSetStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetStatus {
    #[serde(default)]
    pub desired_number_scheduled: u32,
    #[serde(default)]
    pub number_ready: u32,
}

#[derive(Debug, Deserialize)]
pub struct StorageClass {
    pub metadata: Meta,
}

/// The annotation that marks the default StorageClass.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

impl StorageClass {
    pub fn is_default(&self) -> bool {
        self.metadata
            .annotations
            .get(DEFAULT_CLASS)
            .map(String::as_str)
            == Some("true")
    }
}

impl List<StorageClass> {
    /// The names of the classes marked default.
    pub fn defaults(&self) -> Vec<&str> {
        self.items
            .iter()
            .filter(|c| c.is_default())
            .map(|c| c.metadata.name.as_str())
            .collect()
    }
}

/// A pod as `kubectl get pods -o json` lists it, as far as doctor judges it.
#[derive(Debug, Deserialize)]
pub struct Pod {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node it was scheduled on; empty while pending.
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Container {
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Deserialize)]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    /// `running`, `waiting` or `terminated`, with its reason, message, exit code.
    #[serde(default)]
    pub state: BTreeMap<String, serde_json::Value>,
}
