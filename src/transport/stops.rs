//! Commands that are being stopped on their hosts after their caller gave up.
//!
//! Dropping a running command (a fleet-wide Ctrl-C, a local deadline) cannot wait for
//! anything, so the signal that stops it on the host is sent from a spawned task. If the
//! process then exits at once, the runtime drops those tasks before they are sent, and
//! the command keeps running on the host after gpuctl said it stopped it. Every such task
//! is tracked here, and whoever ends a run early waits for them with [`settle`].

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use tokio_util::task::TaskTracker;

/// Closed from the start: closing only lets `wait` return once the tracker is empty, and
/// tasks may still be spawned on it afterwards.
static STOPS: LazyLock<TaskTracker> = LazyLock::new(|| {
    let tracker = TaskTracker::new();
    tracker.close();
    tracker
});

/// Runs `stop` (signal and close a channel) on the current runtime, if there is one.
pub fn spawn<F>(stop: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        STOPS.spawn_on(stop, &rt);
    }
}

/// Waits until every stop spawned so far was sent, or `limit` passed (a host that stopped
/// answering must not hold the exit up).
pub async fn settle(limit: Duration) {
    let _ = tokio::time::timeout(limit, STOPS.wait()).await;
}

/// How long an interrupted run waits for its stop signals to reach the hosts.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(5);
