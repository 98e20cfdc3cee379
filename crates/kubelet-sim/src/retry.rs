//! Retrying writes the way a kubelet does: failures of the server (5xx, 429, a broken
//! connection) are tried again with a growing pause; answers about the request itself
//! (404, 409, 422, ...) are final and returned at once.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

use crate::State;

/// Attempts before giving up on a write (about 40 s of pauses in all).
const ATTEMPTS: u32 = 12;

/// Whether `e` says the server, not the request, failed.
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        // Connection, TLS, timeouts and bodies cut short: the server may be back soon.
        _ => true,
    }
}

/// Run `op` until it succeeds, fails for good, runs out of attempts, or the simulator
/// stops (then the last error is returned).
pub async fn until_done<T, F, Fut>(state: &State, what: &str, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < ATTEMPTS && !state.stopped() => {
                debug!(what, attempt, error = %e, "transient failure; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
