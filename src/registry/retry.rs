//! When a failed request is worth sending again, and how long to wait first.
//!
//! Registries shed load with 429 and 5xx (Docker Hub's rate limit, Harbor behind a busy
//! proxy) and drop connections under bursts; a bulk mirror of hundreds of blobs meets all of
//! these. Retries are bounded so that a registry that is really down fails the run with its
//! own error code instead of hanging it. A TLS or plain-HTTP mismatch is never retried: it
//! cannot heal by itself.

use std::time::Duration;

use reqwest::StatusCode;

/// How many times a request is sent at most, and the first pause between tries (doubled
/// after each failure, capped at [`MAX_DELAY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
}

/// The longest pause, also the cap on a registry's `Retry-After`.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// The pause before try number `attempt + 1` (`attempt` counts from 1), or the
    /// registry's `Retry-After` seconds when it sent them.
    pub fn delay(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        if let Some(secs) = retry_after {
            return Duration::from_secs(secs).min(MAX_DELAY);
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(MAX_DELAY)
    }
}

/// Statuses that mean "try again later" rather than "this request is wrong".
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED
}

/// Whether a transport error (its whole cause chain as text) may heal on its own: resets,
/// refused or timed-out connections, a body cut off. Certificate problems and a plain-HTTP
/// answer to TLS never do.
pub fn retryable_error(chain: &str) -> bool {
    let permanent = [
        "certificate",
        "InvalidContentType",
        "corrupt message",
        "builder error",
    ];
    !permanent.iter().any(|p| chain.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
        };
        let ms = |a| policy.delay(a, None).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 400, 800]);
        assert_eq!(policy.delay(40, None), MAX_DELAY);
        assert_eq!(policy.delay(1, Some(3)), Duration::from_secs(3));
        assert_eq!(policy.delay(1, Some(3600)), MAX_DELAY);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for code in [429, 500, 502, 503, 504, 408] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap_or_default()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 413, 416, 501] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap_or_default()),
                "{code}"
            );
        }
        assert!(retryable_error(
            "error sending request: connection reset by peer"
        ));
        assert!(retryable_error(
            "connection closed before message completed"
        ));
        assert!(!retryable_error("invalid peer certificate: UnknownIssuer"));
        assert!(!retryable_error(
            "received corrupt message of type InvalidContentType"
        ));
    }
}
