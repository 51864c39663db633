//! SSH transport (russh).

use std::path::Path;

use super::{Command, ConnectOptions, Output, PutOptions, PutReport, SudoMode, TransportError};

#[derive(Clone)]
pub struct SshSession {
    host: String,
}

impl SshSession {
    pub async fn connect(
        host: &str,
        _target: &super::SshTarget,
        _opts: &ConnectOptions,
    ) -> Result<Self, TransportError> {
        Ok(SshSession {
            host: host.to_string(),
        })
    }
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn sudo_mode(&self) -> SudoMode {
        SudoMode::Unavailable
    }
    pub async fn run(&self, _cmd: &Command) -> Result<Output, TransportError> {
        Err(self.missing())
    }
    pub async fn put(
        &self,
        _src: &Path,
        _dest: &str,
        _opts: &PutOptions,
    ) -> Result<PutReport, TransportError> {
        Err(self.missing())
    }
    pub async fn get(&self, _path: &str, _sudo: bool) -> Result<Vec<u8>, TransportError> {
        Err(self.missing())
    }
    fn missing(&self) -> TransportError {
        TransportError::Other {
            host: self.host.clone(),
            what: "ssh transport".into(),
            reason: "not built yet".into(),
        }
    }
}

impl SshSession {
    pub async fn close(&self) {}
}
