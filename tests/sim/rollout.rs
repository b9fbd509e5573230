//! The rollout's limits (DEVELOPERS.md), held against the emulators' records during every apply
//! of a history with a rolling fleet (`[instance.F.rollout]`, drawn by [`Step::Rollout`]).
//!
//! A [`Watch`] sits on the failpoint hook of every OCI answer (of every request instead when the
//! answer is the faulted point) and samples both emulators' worlds there, and once more when the
//! apply ended. The sim's emulators run at time scale 0 and kiln at parallelism 1, so the world
//! changes only while a request is served and each change is seen before the next request
//! leaves. Per rolling fleet, with its members told by OCID (those live when the apply started)
//! and by `kiln-address` tag (followed through the history's `[[moved]]` renames):
//! - at most `count + max_surge` members exist (not TERMINATED) — or as many as existed when the
//!   apply started, when an earlier (faulted) apply left more — besides members whose address
//!   the manifest no longer declares (leaving: a shrink or re-keyed fleet is not a rollout);
//! - at least `count - max_unavailable` are RUNNING — or as many declared members as were RUNNING
//!   when the apply started (a member leaving the manifest does not raise the floor: a grown and
//!   re-keyed fleet starts from the members it keeps); not checked for a fleet declared STOPPED or being reshaped (a shape change reboots
//!   members in place: no rollout gates an update);
//! - with `max_unavailable = 0`, a member that was live at the start, is still declared, and is
//!   gone (TERMINATING or TERMINATED) has a successor of its address that the health check saw
//!   (the check appends `KILN_INSTANCE_ID` to `checked.log` in the manifest directory; of a
//!   fleet declared STOPPED, one that launched: no check runs on a stopped member). With
//!   `max_unavailable` above 0 an old member may go first: that is what (0, 1) means.

use super::*;

use std::path::PathBuf;

/// One rolling fleet as the apply started.
struct Watched {
    name: String,
    /// At most this many members exist.
    most: usize,
    /// At least this many are RUNNING (`None`: not checked).
    fewest: Option<usize>,
    /// Members live at the start: OCID → their address now, when it is still declared.
    start: BTreeMap<String, Option<String>>,
    /// `max_unavailable = 0`: an old member goes only after its successor was healthy.
    successor_first: bool,
    /// Declared STOPPED: a successor is healthy once launched (no check runs on it).
    stopped: bool,
}

/// The limits of one apply's rolling fleets, and what broke them.
pub(crate) struct Watch {
    fleets: Vec<Watched>,
    emus: Arc<Vec<RunningEmulator>>,
    dir: PathBuf,
    renames: BTreeMap<String, String>,
    violations: Mutex<Vec<String>>,
}

/// `instance.web[2]` → `web`.
fn fleet_of(address: &str) -> Option<&str> {
    address.strip_prefix("instance.")?.split('[').next()
}

impl Watch {
    /// The limits for this apply, from the model and the emulators' worlds (`None` when no fleet
    /// rolls).
    pub(crate) fn start(sim: &Sim, st: Option<&State>) -> Option<Arc<Watch>> {
        let model = &sim.model;
        let renames: BTreeMap<String, String> = model.moved.iter().cloned().collect();
        let declared = model.declared();
        let worlds: Vec<World> = sim.emus.iter().map(|e| e.snapshot()).collect();
        let now = |a: &str| follow(&renames, a);
        let recorded: BTreeMap<&str, &str> = st
            .map(|st| {
                st.resources
                    .iter()
                    .flat_map(|(a, r)| r.ids().map(move |id| (id, a.as_str())))
                    .collect()
            })
            .unwrap_or_default();
        let mut fleets = Vec::new();
        for f in model.fleets.iter().filter(|f| f.enabled) {
            let Some(roll) = f.rollout else { continue };
            let count = Model::members(f).len();
            let mut start = BTreeMap::new();
            let (mut running, mut reshaped) = (0, false);
            for w in &worlds {
                for r in w.instances.values() {
                    if matches!(r.state(), "TERMINATING" | "TERMINATED") {
                        continue;
                    }
                    let tag = r.body["freeformTags"]["kiln-address"].as_str();
                    let address = recorded.get(r.id()).copied().or(tag).map(now);
                    if address.as_deref().and_then(fleet_of) != Some(f.name.as_str()) {
                        continue;
                    }
                    reshaped |= r.body["shapeConfig"]["ocpus"].as_f64() != Some(f64::from(f.ocpus));
                    let address = address.filter(|a| declared.contains(a));
                    // Leaving members are not the fleet's: they neither surge nor hold the floor.
                    running += usize::from(r.state() == "RUNNING" && address.is_some());
                    start.insert(r.id().to_string(), address);
                }
            }
            let (surge, unavailable) = (usize::from(roll.surge), usize::from(roll.unavailable));
            fleets.push(Watched {
                name: f.name.clone(),
                // Members whose address the manifest no longer declares are leaving, not surging:
                // a shrink or a re-keyed fleet may keep them beside the new ones.
                most: {
                    let leaving = start.values().filter(|a| a.is_none()).count();
                    (start.len() - leaving).max(count + surge) + leaving
                },
                fewest: (!f.stopped && !reshaped)
                    .then(|| running.min(count.saturating_sub(unavailable))),
                start,
                successor_first: unavailable == 0,
                stopped: f.stopped,
            });
        }
        if !fleets.is_empty() {
            Tally::count("rolling applies");
        }
        (!fleets.is_empty()).then(|| {
            Arc::new(Watch {
                fleets,
                emus: sim.emus.clone(),
                dir: sim.dir.path().to_path_buf(),
                renames,
                violations: Mutex::default(),
            })
        })
    }

    /// Sample at every crossing of `point` from now on.
    pub(crate) fn on(self: &Arc<Self>, point: &str) {
        let me = self.clone();
        fail::cfg_callback(point, move || me.sample()).unwrap();
    }

    /// One sample of both worlds against every rolling fleet's limits.
    pub(crate) fn sample(&self) {
        Tally::count("rollout samples");
        let worlds: Vec<World> = self.emus.iter().map(|e| e.snapshot()).collect();
        let checked = std::fs::read_to_string(self.dir.join("checked.log")).unwrap_or_default();
        let checked: BTreeSet<&str> = checked.lines().map(str::trim).collect();
        let instances = || worlds.iter().flat_map(|w| w.instances.values());
        let tag_now = |r: &kiln::emulator::store::Record| {
            r.body["freeformTags"]["kiln-address"]
                .as_str()
                .map(|t| follow(&self.renames, t))
        };
        let mut bad = Vec::new();
        for f in &self.fleets {
            let members: Vec<_> = instances()
                .filter(|r| {
                    f.start.contains_key(r.id())
                        || tag_now(r).as_deref().and_then(fleet_of) == Some(f.name.as_str())
                })
                .filter(|r| r.state() != "TERMINATED")
                .collect();
            if members.len() > f.most {
                let ids: Vec<&str> = members.iter().map(|r| r.id()).collect();
                bad.push(format!(
                    "fleet `{}`: {} members existed at once (at most {}): {ids:?}",
                    f.name,
                    members.len(),
                    f.most
                ));
            }
            let running = members.iter().filter(|r| r.state() == "RUNNING").count();
            if let Some(fewest) = f.fewest.filter(|n| running < *n) {
                bad.push(format!(
                    "fleet `{}`: only {running} members were RUNNING (at least {fewest})",
                    f.name
                ));
            }
            for (old, address) in f.start.iter().filter(|_| f.successor_first) {
                let Some(address) = address else { continue };
                let gone = instances()
                    .find(|r| r.id() == old)
                    .is_none_or(|r| matches!(r.state(), "TERMINATING" | "TERMINATED"));
                let successor = || {
                    instances().any(|r| {
                        r.id() != old
                            && tag_now(r).as_deref() == Some(address.as_str())
                            && match f.stopped {
                                true => !matches!(r.state(), "TERMINATING" | "TERMINATED"),
                                false => checked.contains(r.id()),
                            }
                    })
                };
                if gone && !successor() {
                    bad.push(format!(
                        "{old} (`{address}`) went before a successor was seen healthy"
                    ));
                }
            }
        }
        if !bad.is_empty() {
            let mut v = self.violations.lock().unwrap();
            for b in bad {
                if !v.contains(&b) {
                    v.push(b);
                }
            }
        }
    }

    /// Every violation seen, as one error; counts the members the apply launched into rolling
    /// fleets (the summary says how much rolling the histories did).
    pub(crate) fn verdict(&self) -> Result<(), String> {
        let worlds: Vec<World> = self.emus.iter().map(|e| e.snapshot()).collect();
        for f in &self.fleets {
            for r in worlds.iter().flat_map(|w| w.instances.values()) {
                let tag = r.body["freeformTags"]["kiln-address"].as_str();
                let ours = tag.map(|t| follow(&self.renames, t));
                if !f.start.contains_key(r.id())
                    && ours.as_deref().and_then(fleet_of) == Some(f.name.as_str())
                    && r.state() != "TERMINATED"
                {
                    Tally::count("rolled in");
                }
            }
        }
        let v = self.violations.lock().unwrap();
        match v.is_empty() {
            true => Ok(()),
            false => Err(format!("the rollout's limits:\n  {}", v.join("\n  "))),
        }
    }
}

/// An address through the history's renames.
fn follow(renames: &BTreeMap<String, String>, address: &str) -> String {
    let mut now = address;
    while let Some(next) = renames.get(now) {
        now = next;
    }
    now.to_string()
}
