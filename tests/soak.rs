//! The soak: at least 100 takeovers through `baton serve` under concurrent writers and readers,
//! with the benchmark's own checks (no acknowledged row lost, never two writable instances, every
//! takeover promoted) and the server's memory at the start and the end. Slow (minutes): ignored
//! unless asked for, never in CI.
//!
//!     cargo test --release --test soak -- --ignored --nocapture

mod common;

#[tokio::test]
#[ignore = "slow (minutes): cargo test --release --test soak -- --ignored"]
async fn soak_hundred_takeovers_under_load() {
    let base_port = 20000 + (std::process::id() % 20000) as u16;
    let out = tokio::process::Command::new(common::baton_bin())
        .args([
            "bench",
            "takeover",
            "--sandbox",
            "--writers",
            "4",
            "--duration",
            "160",
            "--every-ms",
            "1500",
            "--http",
            "--readers",
            "4",
        ])
        .args(["--base-port", &base_port.to_string()])
        .env_remove("BATON_CONFIG")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let done: usize = text.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(done >= 100, "only {done} takeovers");
    let rss: Vec<f64> = text
        .lines()
        .find(|l| l.contains("RSS"))
        .map(|l| l.split_whitespace().filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_default();
    assert!(rss.len() >= 2 && rss[1] < rss[0] * 2.0 + 16.0, "memory grew: {rss:?}");
}
