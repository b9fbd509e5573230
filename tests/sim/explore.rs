//! Running seeds, shrinking a failing history, and what is reported.

use super::*;

/// Run `history` on a fresh world; the first violation stops it.
pub(crate) async fn run(history: &[Step]) -> Result<(), Violation> {
    let mut sim = Sim::new().await;
    for (i, step) in history.iter().enumerate() {
        sim.step(step)
            .await
            .map_err(|what| Violation { step: i, what })?;
    }
    sim.finish().await.map_err(|what| Violation {
        step: history.len(),
        what,
    })
}

/// The shortest history (by dropping steps) that still fails, within a time budget.
pub(crate) async fn shrink(mut failing: Vec<Step>, budget: Duration) -> Vec<Step> {
    let start = Instant::now();
    // Everything after the failing step goes at once.
    if let Err(v) = run(&failing).await {
        failing.truncate((v.step + 1).min(failing.len()));
    }
    let mut i = failing.len();
    while i > 0 && start.elapsed() < budget {
        i -= 1;
        let mut candidate = failing.clone();
        candidate.remove(i);
        if run(&candidate).await.is_err() {
            failing = candidate;
        }
    }
    failing
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Counters over a run of the simulation.
pub(crate) struct Tally;

impl Tally {
    pub(crate) fn reset() {
        FIRED.lock().unwrap().clear();
    }

    pub(crate) fn count(class: &str) {
        *FIRED.lock().unwrap().entry(class.to_string()).or_default() += 1;
    }

    /// `abort 12, lost 30, …` (and how many drawn faults the apply never reached).
    pub(crate) fn line() -> String {
        let fired = FIRED.lock().unwrap();
        let n = |k: &str| fired.get(k).copied().unwrap_or(0);
        let mut parts: Vec<String> = fired
            .iter()
            .filter(|(k, _)| !WATCHED.contains(&k.as_str()))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        parts.push(format!("not reached {}", n("not reached")));
        format!(
            "{}; rollout limits sampled {} times in {} applies with a rolling fleet, {} members launched into one; image versions: {} converged applies with retained versions, {} with an instance on an older one, {} with a copy, {} pins refused, {} moved by a rebuild",
            parts.join(", "),
            n("rollout samples"),
            n("rolling applies"),
            n("rolled in"),
            n(RETAINED),
            n(OLDER),
            n(COPIED),
            n(PIN_REFUSED),
            n(PIN_MOVED),
        )
    }
}

/// Counts that are not faults.
const WATCHED: [&str; 9] = [
    "not reached",
    "rollout samples",
    "rolling applies",
    "rolled in",
    RETAINED,
    OLDER,
    COPIED,
    PIN_REFUSED,
    PIN_MOVED,
];

/// A violation the simulation found: where, and the shortest history that still fails.
pub(crate) struct Found {
    pub(crate) seed: u64,
    pub(crate) steps: usize,
    pub(crate) violation: Violation,
    pub(crate) shrunk: Vec<Step>,
    /// How the shrunk history fails (none if it no longer does: the shrink ran out of time).
    pub(crate) last: Option<Violation>,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (seed, steps) = (self.seed, self.steps);
        write!(
            f,
            "the simulation found a violation: seed {seed}, step {} of {steps}:\n  {}\n\nshortest failing history ({} steps{}):\n{}\n\nreplay: KILN_SIM_SEED={seed} KILN_SIM_STEPS={steps} cargo test --test sim\n   or: KILN_SIM_HISTORY='{}' cargo test --test sim",
            self.violation.step,
            self.violation.what,
            self.shrunk.len(),
            self.last.as_ref().map(|l| format!(", fails at step {}: {}", l.step, l.what)).unwrap_or_default(),
            self.shrunk.iter().enumerate().map(|(i, s)| format!("  {i}: {s:?}")).collect::<Vec<_>>().join("\n"),
            serde_json::to_string(&self.shrunk).unwrap(),
        )
    }
}

/// Run the seeds, counting steps; the first violation is shrunk (within `shrink_budget`).
pub(crate) async fn explore(
    seeds: &[u64],
    steps: usize,
    shrink_budget: Duration,
) -> Result<usize, Box<Found>> {
    let mut total = 0;
    for &seed in seeds {
        let h = history(seed, steps);
        total += h.len() + 1;
        if let Err(violation) = run(&h).await {
            let shrunk = shrink(h, shrink_budget).await;
            let last = run(&shrunk).await.err();
            return Err(Box::new(Found {
                seed,
                steps,
                violation,
                shrunk,
                last,
            }));
        }
    }
    Ok(total)
}
