//! A token bucket for the scheduler's writes to the API server: `qps` tokens a second, at
//! most `burst` saved up. Binds under churn are paced by it instead of being fired all at
//! once into the API server's priority and fairness.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex;

#[derive(Clone)]
pub struct RateLimiter {
    state: Arc<Mutex<Bucket>>,
    qps: f64,
    burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(qps: f32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            state: Arc::new(Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            })),
            qps: f64::from(qps.max(0.1)),
            burst,
        }
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        let wait = {
            let mut b = self.state.lock().await;
            let now = Instant::now();
            b.tokens =
                (b.tokens + now.duration_since(b.at).as_secs_f64() * self.qps).min(self.burst);
            b.at = now;
            b.tokens -= 1.0;
            // A negative balance is a queue: each waiter sleeps until its own token.
            (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / self.qps))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_after_the_burst() {
        let limiter = RateLimiter::new(10.0, 5);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..10 {
            limiter.acquire().await;
        }
        // Ten more at 10 a second take a second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took <= Duration::from_millis(1050),
            "{took:?}"
        );
    }
}
