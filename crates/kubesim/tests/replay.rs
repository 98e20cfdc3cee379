//! Replays the kube-apiserver 1.28.7 recording, section by section, and checks every
//! answer: status code, body (run-specific values aside) and resourceVersion relations.

mod common;

use common::{exchange, Env};

/// Steps that cannot be replayed as recorded (they need the server's own history,
/// feature gates, or are checked by dedicated tests with their own assertions).
fn replayable(step: &str) -> bool {
    !(step.starts_with("discovery/")
        || step.starts_with("churn/")
        || step.starts_with("expired/")
        || step.starts_with("final/")
        || step.starts_with("sidecar-gate-on/")
        || step.contains("as-table"))
}

fn recorded_steps() -> Vec<String> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/exchanges-1.28.7.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_str().map(str::to_string))
        .collect()
}

async fn replay_until(last_prefix: &str) {
    let env = Env::start().await;
    let steps = recorded_steps();
    let end = steps.iter().rposition(|s| s.starts_with(last_prefix)).expect("section exists");
    for step in steps[..=end].iter().filter(|s| replayable(s)) {
        let _ = exchange(step);
        env.replay(step).await;
    }
    env.finish().await;
}

#[tokio::test]
async fn whole_recording() {
    replay_until("leases/").await;
}
