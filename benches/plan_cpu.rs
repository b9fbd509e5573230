//! Plan CPU without network: desired + state + live data of N instances planned in-process.
//! Prints wall time (median of 5) and peak RSS. `cargo bench --bench plan_cpu [-- N]`.

// Tests and benchmarks print their own logs and tables (the printing door is the CLI's).
#![allow(clippy::disallowed_macros)]

use std::time::Instant;

use kiln::plan::build::{compute, Inputs};
use kiln::plan::synthetic;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let s = synthetic::instances(n);
    let mut times = Vec::new();
    let mut changes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let c = compute(&Inputs {
            desired: &s.desired,
            prior: &s.prior,
            live: &s.live,
            refreshed: true,
            destroy: false,
            force_replace: &Default::default(),
            default_region: None,
        })
        .unwrap();
        times.push(t.elapsed().as_secs_f64());
        changes = c.changes.len();
    }
    times.sort_by(f64::total_cmp);
    println!("| plan CPU | {n} instances | {changes} changes | median {:.3} s | peak RSS {:.0} MiB | target ≤ 0.5 s, ≤ 200 MiB |", times[2], peak_rss_mib());
}
