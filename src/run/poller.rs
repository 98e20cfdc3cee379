//! Slurm's side of the loop: connect to slurmrestd (waiting for it if it is down at start),
//! poll our jobs at `--poll-interval` with a constant number of requests whatever their
//! count, and tell the loop what the poll showed. Errors prove nothing: they only make the
//! next successful poll a complete list.

use std::sync::Arc;
use std::time::Duration;

use slurm_client::{ClientConfig, PingStatus, PollCursor, PollOutcome, SlurmClient, SlurmObserver};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::core::Input;
use super::exec::SharedSlurm;

pub async fn run(
    cfg: ClientConfig,
    observer: Arc<dyn SlurmObserver>,
    shared: SharedSlurm,
    interval: Duration,
    tx: mpsc::Sender<Input>,
    slurm_up: watch::Sender<bool>,
) {
    let client = connect(cfg, observer, &tx, &slurm_up).await;
    *shared.write().await = Some(client.clone());

    let mut cursor = PollCursor::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut polls: u64 = 0;
    loop {
        ticker.tick().await;
        polls += 1;
        // A ping now and then keeps readiness honest (ping says whether slurmctld answers).
        if polls % 20 == 1 {
            let up = matches!(client.ping().await, Ok(PingStatus::Up));
            slurm_up.send_replace(up);
        }
        match client.poll(&mut cursor).await {
            Ok(PollOutcome::Changed(snapshot)) => {
                failing = false;
                if tx.send(Input::Jobs(snapshot)).await.is_err() {
                    return;
                }
            }
            Ok(PollOutcome::Unchanged) => failing = false,
            Err(e) => {
                if !failing {
                    warn!(error = %e, "polling Slurm failed");
                }
                failing = true;
                slurm_up.send_replace(false);
                // Finished jobs may be purged while we cannot see: the next answer must be
                // a complete list, which resolves every tracked job.
                cursor.reset();
                if tx
                    .send(Input::SlurmUnreachable(e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn connect(
    cfg: ClientConfig,
    observer: Arc<dyn SlurmObserver>,
    tx: &mpsc::Sender<Input>,
    slurm_up: &watch::Sender<bool>,
) -> Arc<SlurmClient> {
    let mut delay = Duration::from_millis(500);
    loop {
        match SlurmClient::connect_with_observer(cfg.clone(), observer.clone()).await {
            Ok(client) => {
                info!(url = %cfg.url, version = ?client.version(), "connected to slurmrestd");
                slurm_up.send_replace(true);
                return Arc::new(client);
            }
            Err(e) => {
                warn!(url = %cfg.url, error = %e, "slurmrestd does not answer yet; retrying");
                let _ = tx.send(Input::SlurmUnreachable(e.to_string())).await;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
