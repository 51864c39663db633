//! Gates: how a stage on one host waits for a stage on another (a joining node for the
//! first server's `kubernetes`) within one run, and receives what that stage handed over
//! (the join token).
//!
//! Every `(host, stage)` of the run is a gate that opens when the stage is over on that host
//! — done (succeeded or skipped as done, with its handed-over values) or failed (with why,
//! also when the host stopped earlier or could not be reached). A stage that waits asks for
//! the gates its [`Stage::waits_for`](crate::plan::Stage::waits_for) names; only it waits,
//! the host's earlier stages and every other host go on. A gate of a host or stage that is
//! not part of this run is open at once with nothing handed over, and the waiting stage is
//! told so by a [`Handed::Missing`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::host::RunCtx;
use crate::fleet::HostCtx;
use crate::plan::{Handed, HostFacts, Stage};
use crate::secret::Secret;
use crate::transport::Command;
use crate::transport::shell::quote;

/// How long a finished stage's host gets to produce a file it hands over (k3s writes its
/// token a few seconds after it starts).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Debug)]
enum Gate {
    Done(BTreeMap<String, Handed>),
    Failed(String),
}

/// The gates of one run.
pub struct Gates {
    hosts: BTreeSet<String>,
    stages: BTreeSet<&'static str>,
    state: Mutex<HashMap<(String, &'static str), Gate>>,
    changed: Notify,
}

impl Gates {
    /// Gates for `hosts` (the hosts of the run) and `stages` (the selected stages).
    pub fn new(hosts: impl IntoIterator<Item = String>, stages: &[&'static str]) -> Gates {
        Gates {
            hosts: hosts.into_iter().collect(),
            stages: stages.iter().copied().collect(),
            state: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    fn set(&self, host: &str, stage: &'static str, gate: Gate) {
        if let Ok(mut s) = self.state.lock() {
            s.entry((host.to_string(), stage)).or_insert(gate);
        }
        self.changed.notify_waiters();
    }

    pub fn done(&self, host: &str, stage: &'static str, handed: BTreeMap<String, Handed>) {
        self.set(host, stage, Gate::Done(handed));
    }

    pub fn failed(&self, host: &str, stage: &'static str, why: &str) {
        self.set(host, stage, Gate::Failed(why.to_string()));
    }

    /// The host's run is over: each of its gates still closed fails with `why` (the host
    /// stopped at an earlier stage, or could not be reached).
    pub fn host_ended(&self, host: &str, why: &str) {
        if let Ok(mut s) = self.state.lock() {
            for stage in &self.stages {
                s.entry((host.to_string(), stage)).or_insert_with(|| {
                    Gate::Failed(format!("it stopped before its {stage} stage: {why}"))
                });
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until `(host, stage)` is open. `Ok(None)`: not part of this run.
    async fn wait(
        &self,
        host: &str,
        stage: &'static str,
    ) -> Result<Option<BTreeMap<String, Handed>>, String> {
        if !self.hosts.contains(host) || !self.stages.contains(stage) {
            return Ok(None);
        }
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let gate = self
                .state
                .lock()
                .ok()
                .and_then(|s| s.get(&(host.to_string(), stage)).cloned());
            match gate {
                Some(Gate::Done(handed)) => return Ok(Some(handed)),
                Some(Gate::Failed(why)) => return Err(why),
                None => notified.await,
            }
        }
    }
}

/// Before `stage` plans on this host: waits for what it waits for, and returns the facts
/// to plan with (what was handed over filled in), or why the stage cannot run.
pub async fn before(
    run: &RunCtx,
    ctx: &HostCtx,
    stage: &dyn Stage,
    hf: &HostFacts,
) -> Result<HostFacts, String> {
    let waits = stage.waits_for(&run.inv, &hf.host);
    let mut hf = hf.clone();
    for w in waits {
        ctx.progress
            .step(&format!("{} (waits for {})", stage.name(), w.host));
        ctx.log.note(&format!(
            "{}: waiting for {} on {}",
            stage.name(),
            w.stage,
            w.host
        ));
        let keys = run
            .stages
            .iter()
            .find(|s| s.name() == w.stage)
            .zip(run.inv.hosts.iter().find(|h| h.name == w.host))
            .map(|(s, h)| s.hands_over(&run.inv, h))
            .unwrap_or_default();
        match run.gates.wait(&w.host, w.stage).await {
            Ok(Some(handed)) => hf.handed.extend(handed),
            Ok(None) => {
                for (key, _) in keys {
                    hf.handed.insert(
                        key.to_string(),
                        Handed::Missing(format!(
                            "{} ({}) is not part of this run, so its {} stage cannot hand \
                             over what this host needs; run them together (see --hosts, \
                             --only, --skip)",
                            w.host, w.why, w.stage
                        )),
                    );
                }
            }
            Err(why) => {
                return Err(format!(
                    "{} ({}) did not finish its {} stage: {why}",
                    w.host, w.why, w.stage
                ));
            }
        }
        ctx.progress.step(stage.name());
    }
    Ok(hf)
}

/// For `reset`, which undoes without waiting for anyone: the facts to plan `stage` with,
/// every value it would be handed marked [`Handed::Later`] (undoing needs the paths a stage
/// writes, never the secrets in them).
pub fn without_waiting(run: &RunCtx, stage: &dyn Stage, hf: &HostFacts) -> HostFacts {
    let mut hf = hf.clone();
    for w in stage.waits_for(&run.inv, &hf.host) {
        let keys = run
            .stages
            .iter()
            .find(|s| s.name() == w.stage)
            .zip(run.inv.hosts.iter().find(|h| h.name == w.host))
            .map(|(s, h)| s.hands_over(&run.inv, h))
            .unwrap_or_default();
        for (key, _) in keys {
            hf.handed.insert(key.to_string(), Handed::Later);
        }
    }
    hf
}

/// After `stage` on this host: opens its gate, reading what it hands over when it is done.
pub async fn after(run: &RunCtx, ctx: &HostCtx, stage: &dyn Stage, result: Result<(), &str>) {
    let name = stage.name();
    if let Err(why) = result {
        run.gates.failed(&ctx.host.name, name, why);
        return;
    }
    let mut handed = BTreeMap::new();
    for (key, path) in stage.hands_over(&run.inv, &ctx.host) {
        handed.insert(key.to_string(), read(run, ctx, name, &path).await);
    }
    run.gates.done(&ctx.host.name, name, handed);
}

/// Reads `path` as a secret: waits (in a real run) until the file has content, then reads
/// it through the transport's `get`, whose bytes never reach the run log.
async fn read(run: &RunCtx, ctx: &HostCtx, stage: &str, path: &str) -> Handed {
    let q = quote(path);
    let tries = if run.mode.applies() {
        HANDOVER_TIMEOUT.as_secs() * 2
    } else {
        0
    };
    let script = format!(
        "i=0; while [ ! -s {q} ] && [ $i -lt {tries} ]; do sleep 0.5; i=$((i+1)); done; test -s {q}"
    );
    let waited = ctx
        .run(
            Command::new(script)
                .sudo(true)
                .timeout(HANDOVER_TIMEOUT + Duration::from_secs(30)),
        )
        .await;
    let host = &ctx.host.name;
    match waited {
        Ok(out) if out.success() => {}
        Ok(_) if !run.mode.applies() => return Handed::Later,
        Ok(_) => {
            return Handed::Missing(format!(
                "{host} has no {path} {}s after its {stage} stage; see why on {host} with \
                 `systemctl status k3s` and its log (journalctl -u k3s)",
                HANDOVER_TIMEOUT.as_secs()
            ));
        }
        Err(e) => return Handed::Missing(format!("cannot read {path} on {host}: {e}")),
    }
    match ctx.get(path, true).await {
        Ok(bytes) => {
            let value = String::from_utf8_lossy(&bytes).trim().to_string();
            Handed::Value(Secret::new(value))
        }
        Err(e) => Handed::Missing(format!("cannot read {path} on {host}: {e}")),
    }
}
