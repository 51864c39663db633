//! The checkpoint journal: per host, per stage, the digest of the Ops that last ran, their
//! result and time.
//!
//! A stage is skipped when its digest matches and its last result was success. A changed
//! inventory changes the digest of exactly the stages whose Ops it changes, so exactly
//! those re-run. The same per-host part is kept on the host itself; [`Journal::merge_host`]
//! folds it in, newest checkpoint winning, so any workstation can resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub cluster: String,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostJournal>,
}

/// One host's checkpoints; also the whole content of the host's own journal file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostJournal {
    #[serde(default)]
    pub stages: BTreeMap<String, Checkpoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `sha256:<hex>` of the stage's Ops (see `plan::digest`).
    pub digest: String,
    pub result: StageResult,
    /// UTC, RFC 3339 with a fixed format, so comparing the text compares the times.
    pub at: String,
    /// Steps changed by the run that wrote this checkpoint.
    #[serde(default)]
    pub changes: usize,
    /// Why it failed (already redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageResult {
    Success,
    Failed,
}

/// The journal could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the install journal {path}: {reason}; move it away and run again \
     (every stage is then probed afresh, which changes nothing that is already right)"
)]
pub struct JournalError {
    pub path: PathBuf,
    pub reason: String,
}

/// Now, as the journal writes times.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl Journal {
    pub fn new(cluster: &str) -> Journal {
        Journal {
            version: VERSION,
            cluster: cluster.to_string(),
            hosts: BTreeMap::new(),
        }
    }

    /// Reads the journal at `path`; a missing file is an empty journal.
    pub fn load(path: &Path, cluster: &str) -> Result<Journal, JournalError> {
        let err = |reason: String| JournalError {
            path: path.to_path_buf(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::new(cluster)),
            Err(e) => return Err(err(e.to_string())),
        };
        let journal: Journal = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if journal.version != VERSION {
            return Err(err(format!(
                "it is version {}, this gpuctl writes version {VERSION}",
                journal.version
            )));
        }
        Ok(journal)
    }

    /// Writes the journal atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        super::atomic::write(path, text.as_bytes())
    }

    pub fn checkpoint(&self, host: &str, stage: &str) -> Option<&Checkpoint> {
        self.hosts.get(host)?.stages.get(stage)
    }

    /// A stage can be skipped: it last succeeded with exactly these Ops.
    pub fn is_done(&self, host: &str, stage: &str, digest: &str) -> bool {
        self.checkpoint(host, stage)
            .is_some_and(|c| c.digest == digest && c.result == StageResult::Success)
    }

    pub fn record(&mut self, host: &str, stage: &str, checkpoint: Checkpoint) {
        self.hosts
            .entry(host.to_string())
            .or_default()
            .stages
            .insert(stage.to_string(), checkpoint);
    }

    /// Folds in a host's own journal: for each stage the newer checkpoint wins.
    pub fn merge_host(&mut self, host: &str, theirs: HostJournal) {
        let ours = self.hosts.entry(host.to_string()).or_default();
        for (stage, cp) in theirs.stages {
            match ours.stages.get(&stage) {
                Some(mine) if mine.at >= cp.at => {}
                _ => {
                    ours.stages.insert(stage, cp);
                }
            }
        }
    }

    /// Forgets everything about a host (after `gpuctl reset`).
    pub fn forget(&mut self, host: &str) {
        self.hosts.remove(host);
    }

    pub fn host(&self, host: &str) -> HostJournal {
        self.hosts.get(host).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cp(digest: &str, result: StageResult, at: &str) -> Checkpoint {
        Checkpoint {
            digest: digest.into(),
            result,
            at: at.into(),
            changes: 1,
            error: None,
        }
    }

    #[test]
    fn a_journal_survives_a_round_trip_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".gpuctl/lab/state.json");
        assert_eq!(Journal::load(&path, "lab").unwrap(), Journal::new("lab"));
        let mut j = Journal::new("lab");
        j.record(
            "node1",
            "os",
            cp("sha256:a", StageResult::Success, "2025-01-01T00:00:00.000Z"),
        );
        j.save(&path).unwrap();
        assert_eq!(Journal::load(&path, "lab").unwrap(), j);
    }

    #[test]
    fn only_a_successful_stage_with_the_same_digest_is_done() {
        let mut j = Journal::new("lab");
        j.record("n", "os", cp("sha256:a", StageResult::Success, "t1"));
        j.record("n", "runtime", cp("sha256:b", StageResult::Failed, "t1"));
        assert!(j.is_done("n", "os", "sha256:a"));
        assert!(!j.is_done("n", "os", "sha256:changed"));
        assert!(!j.is_done("n", "runtime", "sha256:b"));
        assert!(!j.is_done("other", "os", "sha256:a"));
    }

    #[test]
    fn merging_a_hosts_journal_keeps_the_newer_checkpoint() {
        let mut j = Journal::new("lab");
        j.record(
            "n",
            "os",
            cp(
                "sha256:old",
                StageResult::Failed,
                "2025-01-01T00:00:00.000Z",
            ),
        );
        j.record(
            "n",
            "facts",
            cp(
                "sha256:mine",
                StageResult::Success,
                "2025-03-01T00:00:00.000Z",
            ),
        );
        let mut theirs = HostJournal::default();
        theirs.stages.insert(
            "os".into(),
            cp(
                "sha256:new",
                StageResult::Success,
                "2025-02-01T00:00:00.000Z",
            ),
        );
        theirs.stages.insert(
            "facts".into(),
            cp(
                "sha256:theirs",
                StageResult::Success,
                "2025-02-01T00:00:00.000Z",
            ),
        );
        j.merge_host("n", theirs);
        assert!(j.is_done("n", "os", "sha256:new"));
        assert_eq!(j.checkpoint("n", "facts").unwrap().digest, "sha256:mine");
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = Journal::load(&path, "lab").unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("move it away"), "{err}");
    }
}
