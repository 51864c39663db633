//! The one place that maps errors to exit codes: 0 ok, 1 failed, 2 bad input or usage.

use std::process::ExitCode;

/// Bad input: an invalid inventory, flag or file. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Work ran but failed on some hosts; the per-host report was already printed. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} hosts failed")]
pub struct HostsFailed {
    pub failed: usize,
    pub total: usize,
}

/// Doctor ran and some finding is an error; the report was already printed. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("doctor found {errors} error(s) on {hosts} host(s)")]
pub struct ChecksFailed {
    pub errors: usize,
    pub hosts: usize,
}

pub const OK: u8 = 0;
pub const FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;

/// The exit code for an error that reached the top.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<BadInput>() || cause.is::<crate::inventory::InventoryError>() {
            return BAD_INPUT;
        }
    }
    FAILED
}

/// Prints an error with its cause chain and returns its exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    // HostsFailed means the report is already on screen; one summary line is enough.
    let text = crate::secret::redact(&format!("{err:#}"));
    eprintln!("error: {text}");
    ExitCode::from(code_for(err))
}
