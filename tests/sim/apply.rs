//! An apply inside a history, and the invariants checked after every step.

use super::*;

impl Sim {
    /// An apply, with `fault` injected; then the invariants (and, without a fault, convergence).
    pub(crate) async fn apply(&mut self, fault: Option<&Injected>) -> Result<(), String> {
        self.write();
        let stale = self.stale_pins().await?;
        if !stale.is_empty() {
            return self.refused_pin(fault, stale).await;
        }
        self.golden_mark();
        let s = self.session()?;
        // What is declared and live now, by OCID: only a planned replace or destroy may end it.
        let declared: BTreeSet<String> = s.manifest.resources().map(|a| a.to_string()).collect();
        let renames: BTreeMap<&str, &str> = self
            .model
            .moved
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let live: BTreeSet<String> = self.live().into_iter().map(|(id, _)| id).collect();
        let before = self.state().await?;
        // OCI replays a used retry token before it checks anything else, capacity included
        // (`apply::create`, `made_nothing`): the resend of a pending create is never answered
        // "Out of host capacity". With a pending create in the state, the launch a capacity
        // fault falls on may be that resend — an answer OCI cannot give — so the apply runs
        // without it (seed 10 at 80 steps: kiln rightly took the impossible answer as proof
        // that nothing was made).
        let resends = before
            .as_ref()
            .is_some_and(|st| st.resources.values().any(|r| r.pending_create.is_some()));
        let fault = fault.filter(|f| !(resends && f.fault == Fault::Capacity.arg()));
        let watch = Watch::start(self, before.as_ref());
        let kept: BTreeMap<String, String> = match before {
            Some(st) => st
                .resources
                .iter()
                .filter_map(|(a, r)| {
                    let mut now = a.as_str();
                    while let Some(next) = renames.get(now) {
                        now = next;
                    }
                    let id = r.id.clone()?;
                    (declared.contains(now) && live.contains(&id)).then(|| (id, now.to_string()))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let req = ApplyRequest {
            lock_timeout: Duration::ZERO,
            timeouts: Timeouts {
                instance: Duration::from_secs(30),
                image: Duration::from_secs(30),
                terminate: Duration::from_secs(30),
                work_request: Duration::from_secs(30),
            },
            ..ApplyRequest::new(Kind::Apply)
        };
        let outcome = {
            let scenario = (fault.is_some() || BROKEN.load(Ordering::SeqCst) || watch.is_some())
                .then(fail::FailScenario::setup);
            // An emulator restart is the sim's own fault (kiln's failpoints know nothing of
            // the emulator): both emulators restart at the `skip`-th crossing of the point.
            let restarted = Arc::new(AtomicBool::new(false));
            let restart = fault.filter(|f| f.fault == RESTART);
            match fault {
                Some(f) if f.fault == RESTART => {}
                Some(f) => {
                    let action = match f.skip {
                        0 => format!("1*return({})", f.fault),
                        k => format!("{k}*off->1*return({})", f.fault),
                    };
                    fail::cfg(&f.point, &action).unwrap();
                }
                None => {}
            }
            if BROKEN.load(Ordering::SeqCst) {
                fail::cfg(failpoint::SKIP_PENDING_SAVE, "return").unwrap();
            }
            // The rollout's limits are sampled at every answer (at every request when the
            // answer is the faulted point).
            let watched = match fault {
                Some(f) if f.point == failpoint::OCI_RESPONSE => failpoint::OCI_REQUEST,
                _ => failpoint::OCI_RESPONSE,
            };
            if let Some(w) = &watch {
                w.on(watched);
            }
            if let Some(f) = restart {
                let (emus, fired) = (self.emus.clone(), restarted.clone());
                let left = std::sync::atomic::AtomicU32::new(f.skip);
                // On the watched point, the restart samples the limits too.
                let w = watch.clone().filter(|_| f.point == watched);
                fail::cfg_callback(&f.point, move || {
                    if let Some(w) = &w {
                        w.sample();
                    }
                    let now = left.fetch_sub(1, Ordering::SeqCst) == 0;
                    if now && !fired.swap(true, Ordering::SeqCst) {
                        emus.iter().for_each(RunningEmulator::restart);
                    }
                })
                .unwrap();
            }
            let r = tokio::time::timeout(
                Duration::from_secs(120),
                ops::apply::apply_approved(&s, &req, &StopFlag::new(), Arc::new(Progress::Silent)),
            )
            .await
            .map_err(|_| "the apply hung".to_string())?;
            failpoint::revive();
            match fault {
                Some(f) if f.fault == RESTART => {
                    Tally::count(if restarted.load(Ordering::SeqCst) {
                        RESTART
                    } else {
                        "not reached"
                    })
                }
                Some(f) => {
                    // Fired unless the fault is still to come in the registry.
                    let unfired = (0..=f.skip).any(|_| fail::eval(&f.point, |_| ()).is_some());
                    Tally::count(if unfired { "not reached" } else { &f.fault });
                }
                None => {}
            }
            drop(scenario);
            if let Some(w) = &watch {
                w.sample();
                w.verdict()?;
            }
            r
        };
        drop(s);
        // A planned replace or destroy names the OCID it ends.
        let planned: BTreeSet<String> = match &outcome {
            Ok(a) => ended_by(&a.plan),
            Err(_) => BTreeSet::new(),
        };
        let now_live: BTreeSet<String> = self.live().into_iter().map(|(id, _)| id).collect();
        for (id, address) in &kept {
            if !planned.contains(id) && !now_live.contains(id) {
                return Err(format!(
                    "{id} (`{address}`, declared and not planned for replacement or destruction) was destroyed"
                ));
            }
        }
        match (fault, outcome) {
            (Some(_), _) => self.check(false).await,
            (None, Err(e)) => Err(format!("an apply without a fault failed: {e}")),
            (None, Ok(a)) => {
                let report = a.report.unwrap_or_default();
                if !report.ok() {
                    let errors: Vec<String> = report
                        .failed
                        .iter()
                        .map(|(l, e)| format!("{l}: {e}"))
                        .collect();
                    return Err(format!(
                        "an apply without a fault failed:\n    {}",
                        errors.join("\n    ")
                    ));
                }
                self.model.moved.clear();
                // A pin counts versions back from the newest the state held when planning: after
                // a rebuild, the next plan moves it onto the version it now names (by design,
                // `tests/it/image_versions.rs`): that apply converges.
                let rebuilt = a.plan.changes.iter().any(|c| {
                    c.address.starts_with("image.golden")
                        && !c.deposed
                        && matches!(c.action, Action::Create | Action::Replace)
                });
                let pinned = self.model.fleets.iter().any(|f| {
                    self.model.pin_of(f).is_some_and(|n| n > 0) && !Model::members(f).is_empty()
                });
                if rebuilt && pinned {
                    Tally::count(PIN_MOVED);
                    self.check(false).await?;
                    return Box::pin(self.apply(None)).await;
                }
                if !report.behind.is_empty() {
                    // A resumed create was made as first requested and the manifest has moved
                    // on (the report says so and asks for another apply): that apply converges.
                    self.check(false).await?;
                    return Box::pin(self.apply(None)).await;
                }
                self.check(true).await
            }
        }
    }

    /// Every invariant, against the emulators' records. `converged`: after a successful apply
    /// without a fault — nothing pending or deposed, everything live recorded by id, and the next
    /// plan empty.
    pub(crate) async fn check(&mut self, converged: bool) -> Result<(), String> {
        let st = self
            .state()
            .await
            .map_err(|e| format!("kiln refuses its own state: {e}"))?
            .unwrap_or_default();
        if st.serial < self.last_serial {
            return Err(format!(
                "the serial went back from {} to {}",
                self.last_serial, st.serial
            ));
        }
        self.last_serial = st.serial;
        let mut bad = Vec::new();
        // Never lost: every live resource kiln made is recorded (its object, a deposed one, or
        // what a pending create made), and each record accounts for one live resource at most.
        let mut by_id: BTreeMap<&str, &str> = BTreeMap::new();
        for (a, r) in &st.resources {
            for id in r.ids() {
                by_id.insert(id, a);
            }
        }
        let mut unmatched: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, tag) in self.live() {
            if by_id.contains_key(id.as_str()) {
                continue;
            }
            match tag {
                Some(t) => unmatched.entry(t).or_default().push(id),
                None => bad.push(format!("{id} is live without a kiln-address tag")),
            }
        }
        for (address, ids) in &unmatched {
            let pending = st
                .resources
                .iter()
                .filter(|(a, r)| {
                    r.pending_create.is_some()
                        && (*a == address || pending_address(r).as_ref() == Some(address))
                })
                .count();
            let allowed = if converged { 0 } else { pending };
            if ids.len() > allowed {
                bad.push(format!(
                    "`{address}`: {} live and not in the state ({})",
                    ids.join(", "),
                    if converged {
                        "after a successful apply"
                    } else {
                        "more than its pending creates"
                    }
                ));
            }
        }
        if converged {
            let live: BTreeSet<String> = self.live().into_iter().map(|(id, _)| id).collect();
            for (a, r) in &st.resources {
                if r.pending_create.is_some() || !r.deposed.is_empty() {
                    bad.push(format!(
                        "`{a}` still has a pending create or deposed objects"
                    ));
                }
                if let Some(id) = r.id.as_deref().filter(|id| !live.contains(*id)) {
                    bad.push(format!("`{a}` records {id}, which is not live"));
                }
            }
            let s = self.session()?;
            let plan = ops::plan::plan(&s, &PlanRequest::default())
                .await
                .map_err(|e| format!("the plan after a successful apply failed: {e:?}"))?
                .plan;
            if !plan.is_empty() {
                bad.push(format!(
                    "the plan after a successful apply is not empty:\n{}",
                    kiln::plan::render::text(&plan, kiln::plan::render::Style::default())
                ));
            }
        }
        bad.extend(self.image_invariants(&st, converged));
        match bad.is_empty() {
            true => Ok(()),
            false => Err(bad.join("\n  ")),
        }
    }
}
