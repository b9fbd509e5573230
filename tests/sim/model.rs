//! What a history is made of: its steps, the manifest they edit (the model), and how a seed
//! draws them.

use super::*;

/// One step of a history. Picks (`pick`) choose among what exists when the step runs (modulo
/// its count), so a history with steps removed still means something.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Step {
    AddFleet {
        region: u8,
        keyed: bool,
        size: u8,
    },
    RemoveFleet {
        pick: u32,
    },
    Resize {
        pick: u32,
        size: u8,
    },
    RenameMember {
        pick: u32,
    },
    RenameFleet {
        pick: u32,
    },
    Retag {
        pick: u32,
    },
    Reshape {
        pick: u32,
    },
    Power {
        pick: u32,
    },
    Compartment {
        pick: u32,
    },
    Region {
        pick: u32,
    },
    Enable {
        pick: u32,
    },
    Pipeline,
    Rebuild,
    Apply {
        fault: Option<Injected>,
    },
    Plan,
    OutOfBand {
        what: Oob,
        pick: u32,
    },
    SecondKiln {
        forced: bool,
    },
    Age,
    /// `[instance.F.rollout]` set (or removed) on a fleet; set on a fleet of the golden image's
    /// region it also flips whether the fleet boots from `image.golden`, so the next apply rolls.
    Rollout {
        pick: u32,
        roll: Option<Roll>,
    },
    /// `placement` set or removed on a fleet (decided at create: members already placed stay).
    Place {
        pick: u32,
    },
    /// A fleet's launch settings ([`Fleet::launch`]).
    Launch {
        pick: u32,
        kind: u8,
    },
    /// `keep` on `[image.golden]`: 0 removes it (the default, 1), N sets it (and declares the
    /// pipeline when there is none).
    Keep {
        keep: u8,
    },
    /// A fleet of the golden image's region pinned to a version of `image.golden` (it boots
    /// from the image from then on), or unpinned (`back: None`). The version is `back` modulo
    /// one more than the versions the state holds when the step runs: mostly one it holds, now
    /// and then one it does not (a plan error [`Model::stale_pins`] predicts).
    Pin {
        pick: u32,
        back: Option<u8>,
    },
    /// `regions = ["us-phoenix-1"]` (with `export`) added to the golden image, or removed: its
    /// copy there, which fleets of that region may then boot from ([`Step::Pin`]).
    Copy,
}

/// A fleet's `rollout`: `max_surge`, `max_unavailable`, and `replace_method = "boot_volume"`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Roll {
    pub(crate) surge: u8,
    pub(crate) unavailable: u8,
    pub(crate) boot_volume: bool,
}

/// The health check of every rolling fleet: it passes, and leaves a trace of each member it saw
/// healthy (what [`super::rollout`] requires of an old member's successor).
pub(crate) const CHECK: &str = "command = [\"sh\", \"-c\", \"echo $KILN_INSTANCE_ID >> checked.log\"], timeout = \"0s\", interval = \"0s\"";

/// The sim's own fault class: the emulators restart ([`RunningEmulator::restart`]).
pub(crate) const RESTART: &str = "emulator restart";

/// The bucket (in the image's region) the golden image's copies are exported through.
pub(crate) const BUCKET: &str = "kiln-images";

/// A fault at the `skip`-th next crossing of `point` (none if the apply crosses it fewer times).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Injected {
    pub(crate) point: String,
    pub(crate) skip: u32,
    pub(crate) fault: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum Oob {
    Retag,
    Stop,
    Terminate,
}

#[derive(Clone, Debug)]
pub(crate) enum Members {
    Count(u8),
    Keys(Vec<String>),
}

#[derive(Clone, Debug)]
pub(crate) struct Fleet {
    pub(crate) name: String,
    pub(crate) region: usize,
    pub(crate) members: Members,
    pub(crate) tag: u32,
    pub(crate) ocpus: u32,
    pub(crate) stopped: bool,
    pub(crate) other_compartment: bool,
    pub(crate) enabled: bool,
    /// Launched from `image.golden` (region 0 only).
    pub(crate) from_image: bool,
    pub(crate) rollout: Option<Roll>,
    /// `placement` over every availability domain of its region, fault domains spread.
    pub(crate) placed: bool,
    /// Launch settings: 0 none; 1 legacy IMDS off and an agent plugin on (both in place); 2
    /// preemptible (set at launch only: a change replaces; never on a fleet declared STOPPED,
    /// which OCI refuses).
    pub(crate) launch: u8,
    /// `source = { image = "image.golden", version = N }` (1 is written `"previous"`), when the
    /// fleet boots from the golden image (or, in the other region, its copy there).
    pub(crate) pin: Option<u8>,
}

/// What the manifest declares.
#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    pub(crate) fleets: Vec<Fleet>,
    /// `[[moved]]` renames not yet applied by a successful apply.
    pub(crate) moved: Vec<(String, String)>,
    /// The golden image pipeline: `Some(native launch mode)`.
    pub(crate) image: Option<bool>,
    /// `keep` on `[image.golden]` (`None`: not written, the default 1).
    pub(crate) keep: Option<u8>,
    /// The golden image copied to the second region (`regions`, `export`).
    pub(crate) copy: bool,
    /// Names are never reused (a `[[moved]]` source must not be declared again).
    pub(crate) next: u32,
}

impl Model {
    pub(crate) fn name(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    pub(crate) fn pick(&mut self, pick: u32) -> Option<&mut Fleet> {
        let n = self.fleets.len();
        (n > 0).then(|| &mut self.fleets[pick as usize % n])
    }

    /// The member addresses of a fleet.
    pub(crate) fn members(f: &Fleet) -> Vec<String> {
        match &f.members {
            Members::Count(n) => (0..*n)
                .map(|i| format!("instance.{}[{i}]", f.name))
                .collect(),
            Members::Keys(keys) => keys
                .iter()
                .map(|k| format!("instance.{}[\"{k}\"]", f.name))
                .collect(),
        }
    }

    /// Rename `from` to `to` with `[[moved]]` (a chain a → b → c is one move a → c).
    pub(crate) fn rename(&mut self, from: String, to: String) {
        match self.moved.iter_mut().find(|(_, t)| *t == from) {
            Some(m) => m.1 = to,
            None => self.moved.push((from, to)),
        }
    }

    /// The fleets whose pin the plan must refuse: a version back that the state's `versions`
    /// (its current image and the retained ones) do not reach. Only a declared member carries a
    /// pin (a fleet of none, or switched off, pins nothing); version 0 (the newest) is always
    /// there.
    /// `versions` is per region: the image's own record, then its copy's.
    pub(crate) fn stale_pins(&self, versions: [usize; 2]) -> Vec<usize> {
        (0..self.fleets.len())
            .filter(|&i| {
                let f = &self.fleets[i];
                let back = self.pin_of(f).unwrap_or(0) as usize;
                // Beyond what the state holds (a plan error), or beyond `keep` (a manifest
                // error: such a pin could never hold, `manifest::versions`).
                back >= 1
                    && (back >= versions[f.region] || back >= self.keep.unwrap_or(1) as usize)
                    && f.enabled
                    && !Model::members(f).is_empty()
            })
            .collect()
    }

    /// Whether a fleet boots from `image.golden` (in the second region, from its copy).
    pub(crate) fn golden(&self, f: &Fleet) -> bool {
        f.from_image && self.image.is_some() && (f.region == 0 || self.copy)
    }

    /// The pin a fleet's manifest table carries.
    pub(crate) fn pin_of(&self, f: &Fleet) -> Option<u8> {
        f.pin.filter(|_| self.golden(f))
    }

    /// How many versions an image record of the golden image keeps: `image.golden`, or its copy
    /// `image.golden@<region>` (the image's `keep`; none once the image or the copy is gone).
    pub(crate) fn keep_of(&self, address: &str) -> usize {
        match self.image {
            Some(_) if address == "image.golden" || self.copy => self.keep.unwrap_or(1) as usize,
            _ => 0,
        }
    }

    /// Every address the manifest declares.
    pub(crate) fn declared(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .fleets
            .iter()
            .filter(|f| f.enabled)
            .flat_map(Model::members)
            .collect();
        if self.image.is_some() {
            out.extend(["instance.builder".to_string(), "image.golden".to_string()]);
        }
        out
    }

    /// The manifest's text (after the emulators' header). Renames whose target is no longer
    /// declared (the member was dropped since) are dropped with it, as a user would.
    pub(crate) fn toml(&mut self, fix: &[kiln::emulator::Fixtures; 2]) -> String {
        let declared = self.declared();
        self.moved
            .retain(|(from, to)| declared.contains(to) && !declared.contains(from));
        let mut m = String::new();
        if let Some(native) = self.image {
            let mode = if native { "NATIVE" } else { "PARAVIRTUALIZED" };
            m += &format!("[instance.builder]\nstate = \"STOPPED\"\n\n[image.golden]\nfrom_instance = \"instance.builder\"\nlaunch_mode = \"{mode}\"\n");
            if let Some(k) = self.keep {
                m += &format!("keep = {k}\n");
            }
            if self.copy {
                m += &format!(
                    "regions = [\"{}\"]\nexport = {{ namespace = \"{}\", bucket = \"{BUCKET}\" }}\n",
                    REGIONS[1], fix[0].namespace
                );
            }
            m += "\n";
        }
        for f in &self.fleets {
            m += &format!("[instance.{}]\n", f.name);
            match &f.members {
                Members::Count(n) => m += &format!("count = {n}\n"),
                Members::Keys(k) => m += &format!("for_each = {k:?}\n"),
            }
            m += &format!(
                "freeform_tags = {{ t = \"{}\" }}\nshape_config = {{ ocpus = {}, memory_in_gbs = 16 }}\n",
                f.tag, f.ocpus
            );
            if f.stopped {
                m += "state = \"STOPPED\"\n";
            }
            if f.other_compartment {
                m += &format!("compartment = \"{}\"\n", support::OTHER_COMPARTMENT);
            }
            if !f.enabled {
                m += "enabled = false\n";
            }
            if f.rollout.is_some_and(|r| r.boot_volume) {
                m += "replace_method = \"boot_volume\"\n";
            }
            match f.launch {
                1 => m += "instance_options = { are_legacy_imds_endpoints_disabled = true }\nagent_config = { plugins = { \"Vulnerability Scanning\" = \"ENABLED\" } }\n",
                2 if !f.stopped => m += "preemptible = { preserve_boot_volume = false }\n",
                _ => {}
            }
            if f.placed {
                let ads: Vec<String> = fix[f.region]
                    .availability_domains
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect();
                m += &format!(
                    "placement = {{ availability_domains = [{}], fault_domains = \"spread\" }}\n",
                    ads.join(", ")
                );
            }
            if f.region == 1 {
                let x = &fix[1];
                if !f.placed {
                    m += &format!("availability_domain = \"{}\"\n", x.availability_domains[0]);
                }
                m += &format!(
                    "region = \"{}\"\nsubnet = \"{}\"\n",
                    REGIONS[1], x.public_subnet_id
                );
            }
            if f.region == 1 && !self.golden(f) {
                m += &format!(
                    "source = {{ image = \"{}\" }}\n",
                    fix[1].platform_images[0].id
                );
            } else if self.golden(f) {
                let pin = match self.pin_of(f) {
                    None => String::new(),
                    Some(1) => ", version = \"previous\"".into(),
                    Some(n) => format!(", version = {n}"),
                };
                m += &format!("source = {{ image = \"image.golden\"{pin} }}\n");
            }
            if let Some(r) = f.rollout {
                m += &format!(
                    "\n[instance.{}.rollout]\nmax_surge = {}\nmax_unavailable = {}\nhealth_check = {{ {CHECK} }}\n",
                    f.name, r.surge, r.unavailable
                );
            }
            m += "\n";
        }
        for (from, to) in &self.moved {
            m += &format!("[[moved]]\nfrom = '{from}'\nto = '{to}'\n\n");
        }
        m
    }
}

/// Draw the next step.
pub(crate) fn draw(rng: &mut StdRng, model: &Model) -> Step {
    let pick = rng.gen();
    let empty = model.fleets.is_empty();
    match rng.gen_range(0..109) {
        _ if empty && rng.gen_bool(0.7) => Step::AddFleet {
            region: rng.gen_range(0..2),
            keyed: rng.gen(),
            size: rng.gen_range(1..4),
        },
        0..=5 => Step::AddFleet {
            region: rng.gen_range(0..2),
            keyed: rng.gen(),
            size: rng.gen_range(1..4),
        },
        6..=8 => Step::RemoveFleet { pick },
        9..=14 => Step::Resize {
            pick,
            size: rng.gen_range(0..5),
        },
        15..=17 => Step::RenameMember { pick },
        18..=19 => Step::RenameFleet { pick },
        20..=23 => Step::Retag { pick },
        24..=25 => Step::Reshape { pick },
        26..=28 => Step::Power { pick },
        29..=30 => Step::Compartment { pick },
        31..=32 => Step::Region { pick },
        33..=34 => Step::Enable { pick },
        35..=36 => Step::Pipeline,
        37..=38 => Step::Rebuild,
        56..=57 => Step::Place { pick },
        58..=59 => Step::Launch {
            pick,
            kind: rng.gen_range(0..3),
        },
        39..=55 => Step::Apply {
            fault: Some(inject(rng)),
        },
        60..=74 => Step::Apply { fault: None },
        75..=79 => Step::Plan,
        80..=89 => Step::OutOfBand {
            what: [Oob::Retag, Oob::Stop, Oob::Terminate][rng.gen_range(0..3)],
            pick,
        },
        90..=93 => Step::SecondKiln { forced: rng.gen() },
        94..=95 => Step::Age,
        100..=102 => Step::Keep {
            keep: rng.gen_range(0..4),
        },
        103..=106 => Step::Pin {
            pick,
            back: rng.gen_bool(0.8).then(|| rng.gen_range(0..4)),
        },
        107..=108 => Step::Copy,
        _ => Step::Rollout {
            pick,
            roll: rng.gen_bool(0.8).then(|| {
                // Boot volume replacement takes a member down: at least one may be unavailable.
                let boot_volume = rng.gen_bool(0.4);
                let unavailable = rng.gen_range(u8::from(boot_volume)..3);
                let surge = rng.gen_range(u8::from(unavailable == 0)..3);
                Roll {
                    surge,
                    unavailable,
                    boot_volume,
                }
            }),
        },
    }
}

/// A fault to inject: launches and their answers most often (where "never twice" is won or
/// lost), then any boundary.
pub(crate) fn inject(rng: &mut StdRng) -> Injected {
    let point = match rng.gen_range(0..10) {
        0..=2 => format!("{}.LaunchInstance", failpoint::OCI_RESPONSE),
        3 => format!("{}.LaunchInstance", failpoint::OCI_REQUEST),
        _ => failpoint::POINTS[rng.gen_range(0..failpoint::POINTS.len())].to_string(),
    };
    let base = point.split('.').take(2).collect::<Vec<_>>().join(".");
    let on_the_wire = [failpoint::OCI_REQUEST, failpoint::OCI_RESPONSE].contains(&base.as_str());
    // Both emulators restart (every connection dropped, the world through its data file).
    if on_the_wire && rng.gen_range(0..5) == 0 {
        return Injected {
            point,
            skip: rng.gen_range(0..12),
            fault: RESTART.into(),
        };
    }
    let fault = match rng.gen_range(0..3) {
        0 => Fault::Abort,
        // No host has room (what a launch alone is answered).
        _ if point.ends_with(".LaunchInstance") && base == failpoint::OCI_REQUEST => {
            Fault::Capacity
        }
        _ => match base.as_str() {
            failpoint::OCI_REQUEST => Fault::Status(STATUSES[rng.gen_range(0..STATUSES.len())]),
            failpoint::OCI_RESPONSE
            | failpoint::STATE_SAVED
            | failpoint::STATE_JOURNALED
            | failpoint::STATE_FOLDED => Fault::Lost,
            _ => Fault::Error,
        },
    };
    // Within what an apply crosses: a few launches, a few dozen requests, a save per change,
    // one load, lock and release (a skip beyond them injects nothing: "not reached").
    let skip = match point.as_str() {
        failpoint::OCI_REQUEST | failpoint::OCI_RESPONSE => rng.gen_range(0..12),
        failpoint::STATE_LOCK | failpoint::STATE_UNLOCK | failpoint::STATE_LOAD => 0,
        p if p.starts_with("state.") => rng.gen_range(0..4),
        _ => rng.gen_range(0..3),
    };
    Injected {
        point,
        skip,
        fault: fault.arg(),
    }
}

/// The history of `seed`, `steps` long (the model is replayed to draw each step).
pub(crate) fn history(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut out = Vec::new();
    for _ in 0..steps {
        let s = draw(&mut rng, &model);
        // Keep the drawing model's fleet count in step (edits only; apply outcomes do not
        // change what is declared).
        match &s {
            Step::AddFleet {
                region,
                keyed,
                size,
            } => model.fleets.push(Fleet {
                name: String::new(),
                region: *region as usize,
                members: if *keyed {
                    Members::Keys(vec![String::new(); *size as usize])
                } else {
                    Members::Count(*size)
                },
                tag: 0,
                ocpus: 1,
                stopped: false,
                other_compartment: false,
                enabled: true,
                from_image: false,
                rollout: None,
                placed: false,
                launch: 0,
                pin: None,
            }),
            Step::RemoveFleet { pick } if !model.fleets.is_empty() => {
                let n = model.fleets.len();
                model.fleets.remove(*pick as usize % n);
            }
            _ => {}
        }
        out.push(s);
    }
    out
}
