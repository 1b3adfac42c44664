//! The loop every background task runs in (housekeeping, report rollups, alerts,
//! statistics): a pass now, then one every interval, until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `pass` now and every `interval` after the last one ended, until `shutdown` turns
/// true (a pass under way is finished first).
pub async fn every<F, Fut>(interval: Duration, mut shutdown: watch::Receiver<bool>, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        pass().await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
