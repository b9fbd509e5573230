//! Image versions (issue 24) in the simulation: `keep` on `[image.golden]`, rebuilds that retain
//! the previous versions, and fleets pinned to one (`source = { image = "image.golden",
//! version = … }`), drawn by [`Step::Keep`] and [`Step::Pin`].
//!
//! A pin the state cannot honour (a version back beyond what it holds: the pipeline just added
//! again, `keep` never raised, or drawn so on purpose) is a plan error the model predicts
//! ([`Model::stale_pins`]): a plan or apply must refuse it at the `version` and change nothing in
//! OCI; then the user drops the pin, as the error says, and the apply goes on.
//!
//! Held after every step, against the emulators' own listings ([`Sim::image_invariants`]):
//! - no live instance runs an image (`imageId`, `sourceDetails.imageId`) that is deleted;
//! - an apply makes at most one version of an image: the images of `image.golden` live are at
//!   most as many as after the last converged apply, plus one per apply since;
//! - after a successful apply, exactly: the `keep` newest versions of those live before it or made
//!   by it (none when the pipeline is removed), and any older one a live instance still runs —
//!   no more (retention), no fewer (nothing deleted early); and they are the state's current
//!   image and its retained versions, no other.

use super::*;

/// A live image kiln made for `image.golden`.
pub(crate) struct Golden {
    pub(crate) id: String,
    pub(crate) version: u64,
}

/// How many versions the state holds for `image.golden` in each region (the image's own record,
/// then its copy's): the current image and the retained ones.
pub(crate) fn golden_versions(st: Option<&State>) -> [usize; 2] {
    let copy = format!("image.golden@{}", REGIONS[1]);
    ["image.golden", copy.as_str()].map(|a| {
        st.and_then(|s| s.resources.get(a))
            .map(|r| usize::from(r.id.is_some()) + r.retained.len())
            .unwrap_or(0)
    })
}

/// The error of a plan that refused a pin, or why it is not that.
pub(crate) fn refused_for_pin(error: &str) -> Result<(), String> {
    match error.contains("does not keep") || error.contains("version_beyond_keep") {
        true => Ok(()),
        false => Err(format!(
            "a pin to a version the state does not keep failed otherwise: {error}"
        )),
    }
}

/// What the summary line counts (not faults).
pub(crate) const RETAINED: &str = "converged with retained versions";
pub(crate) const OLDER: &str = "converged with an instance on an older version";
pub(crate) const COPIED: &str = "converged with a copy";
pub(crate) const PIN_REFUSED: &str = "pins refused";
pub(crate) const PIN_MOVED: &str = "pins moved by a rebuild";

const GONE: [&str; 4] = ["TERMINATING", "TERMINATED", "DELETING", "DELETED"];

impl Sim {
    /// The fleets whose pin the next plan must refuse (see [`Model::stale_pins`]).
    pub(crate) async fn stale_pins(&self) -> Result<Vec<usize>, String> {
        let versions = golden_versions(self.state().await?.as_ref());
        Ok(self.model.stale_pins(versions))
    }

    /// An apply whose manifest pins versions the state does not keep (`stale`): refused, with
    /// OCI unchanged; then the pins are dropped and (without a fault) the apply is run again.
    pub(crate) async fn refused_pin(
        &mut self,
        fault: Option<&Injected>,
        stale: Vec<usize>,
    ) -> Result<(), String> {
        let live = self.live();
        // A pin beyond `keep` is refused with the manifest; one beyond what the state holds, by
        // the plan.
        match self.session() {
            Err(e) => refused_for_pin(&e)?,
            Ok(s) => {
                let req = ApplyRequest {
                    lock_timeout: Duration::ZERO,
                    ..ApplyRequest::new(Kind::Apply)
                };
                let r = ops::apply::apply_approved(
                    &s,
                    &req,
                    &StopFlag::new(),
                    Arc::new(Progress::Silent),
                )
                .await;
                drop(s);
                match r {
                    Ok(_) => {
                        return Err(format!(
                            "an apply took a pin to a version the state does not keep (fleets {stale:?})"
                        ))
                    }
                    Err(e) => refused_for_pin(&format!("{e:?}"))?,
                }
            }
        }
        if self.live() != live {
            return Err("an apply refused for a pin changed OCI".into());
        }
        Tally::count(PIN_REFUSED);
        for i in stale {
            self.model.fleets[i].pin = None;
        }
        match fault {
            None => Box::pin(self.apply(None)).await,
            Some(_) => self.check(false).await,
        }
    }

    /// The images of `image.golden` live in the emulators (not DELETING or DELETED), by the
    /// `kiln-address` tag they carry (a region's copy is `image.golden@<region>`).
    pub(crate) fn golden(&self) -> BTreeMap<String, Vec<Golden>> {
        let mut out: BTreeMap<String, Vec<Golden>> = BTreeMap::new();
        for e in self.emus.iter() {
            for r in e.snapshot().images.values() {
                let tags = &r.body["freeformTags"];
                let Some(address) = tags["kiln-address"].as_str() else {
                    continue;
                };
                if !address.starts_with("image.golden") || GONE.contains(&r.state()) {
                    continue;
                }
                out.entry(address.to_string()).or_default().push(Golden {
                    id: r.id().to_string(),
                    version: tags["kiln-version"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                });
            }
        }
        out
    }

    /// Before an apply: what [`Sim::image_invariants`] compares its end with.
    pub(crate) fn golden_mark(&mut self) {
        self.applies_since += 1;
        self.golden_before = self
            .golden()
            .into_iter()
            .map(|(a, g)| (a, g.into_iter().map(|g| (g.id, g.version)).collect()))
            .collect();
    }

    /// The image-version invariants (module docs); `converged`: after a successful apply.
    pub(crate) fn image_invariants(&mut self, st: &State, converged: bool) -> Vec<String> {
        let mut bad = Vec::new();
        // What live instances run, and none runs a deleted image.
        let mut used = BTreeSet::new();
        for e in self.emus.iter() {
            let w = e.snapshot();
            for i in w.instances.values().filter(|i| !GONE.contains(&i.state())) {
                let ran = [
                    i.body.get("imageId"),
                    i.body.get("sourceDetails").and_then(|s| s.get("imageId")),
                ];
                for id in ran.into_iter().flatten().filter_map(|v| v.as_str()) {
                    used.insert(id.to_string());
                    if let Some(image) = w.images.get(id).filter(|m| GONE.contains(&m.state())) {
                        bad.push(format!(
                            "{} (`{}`) runs {id}, which is {}",
                            i.id(),
                            i.body["freeformTags"]["kiln-address"]
                                .as_str()
                                .unwrap_or("?"),
                            image.state()
                        ));
                    }
                }
            }
        }
        let golden = self.golden();
        for (address, now) in &golden {
            let cap = self.golden_cap.get(address).copied().unwrap_or(0) + self.applies_since;
            if now.len() > cap {
                bad.push(format!(
                    "`{address}`: {} versions live, more than one made per apply ({} after the last converged apply, {} applies since)",
                    now.len(),
                    cap - self.applies_since,
                    self.applies_since
                ));
            }
        }
        if !converged {
            return bad;
        }
        let mut counts = BTreeSet::new();
        let addresses: BTreeSet<&String> = golden.keys().chain(self.golden_before.keys()).collect();
        for address in addresses {
            let keep = self.model.keep_of(address);
            let now: BTreeMap<&str, u64> = golden
                .get(address)
                .map(|g| g.iter().map(|g| (g.id.as_str(), g.version)).collect())
                .unwrap_or_default();
            let mut seen: BTreeMap<&str, u64> = self
                .golden_before
                .get(address)
                .map(|b| b.iter().map(|(id, v)| (id.as_str(), *v)).collect())
                .unwrap_or_default();
            seen.extend(now.iter().map(|(id, v)| (*id, *v)));
            let mut newest: Vec<(u64, &str)> = seen.iter().map(|(id, v)| (*v, *id)).collect();
            newest.sort_by_key(|v| std::cmp::Reverse(v.0));
            let expected: BTreeSet<&str> = newest
                .iter()
                .enumerate()
                .filter(|(n, (_, id))| *n < keep || used.contains(*id))
                .map(|(_, (_, id))| *id)
                .collect();
            let live: BTreeSet<&str> = now.keys().copied().collect();
            let show = |ids: &BTreeSet<&str>| {
                let v: Vec<String> = ids
                    .iter()
                    .map(|id| match seen.get(id) {
                        Some(v) => format!("v{v}"),
                        None => id.to_string(),
                    })
                    .collect();
                format!("[{}]", v.join(", "))
            };
            if live != expected {
                bad.push(format!(
                    "`{address}` with keep = {keep}: versions {} live after a successful apply, {} expected (the newest {keep} and those in use of {})",
                    show(&live),
                    show(&expected),
                    show(&seen.keys().copied().collect()),
                ));
            }
            let recorded: BTreeSet<&str> = st
                .resources
                .get(address)
                .map(|r| r.id.iter().chain(r.retained.iter().map(|v| &v.id)))
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            if recorded != live {
                bad.push(format!(
                    "`{address}`: the state records versions {} (current and retained), {} are live",
                    show(&recorded),
                    show(&live)
                ));
            }
            self.golden_cap.insert(address.clone(), live.len());
            if live.len() > 1 {
                counts.insert(RETAINED);
            }
            if address.contains('@') && !live.is_empty() {
                counts.insert(COPIED);
            }
            let newest = newest.first().map(|v| v.1);
            if live
                .iter()
                .any(|id| used.contains(*id) && Some(*id) != newest)
            {
                counts.insert(OLDER);
            }
        }
        counts.into_iter().for_each(Tally::count);
        self.applies_since = 0;
        bad
    }
}
