//! Image versions in the manifest (issue 24): `keep = N` on `[image.NAME]` (how many versions a
//! rebuild keeps), and the pins of an instance's `source`: `version = "previous"` or an integer
//! counted back from the newest (0 = newest), or `env = "staging"` (the image another
//! environment's state records: promotion). Both are resolved against a state at plan time
//! (`plan::versions`): the manifest only checks what it can on its own, at the span.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::diagnostic::{At, Problem};
use super::tree::{get, str_of, Entry, Node, Value};
use super::{Address, ImageSpec, InstanceSource, InstanceSpec, Loader, Ref};

/// At most this many versions of one image (each is a custom image in OCI, which counts them
/// against the tenancy's custom image limit).
pub const MAX_KEEP: i64 = 100;

/// Which image of `source.image` an instance boots, when not the newest of this environment.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePin {
    pub which: Pin,
    /// The `version` or `env` value, for the plan's problems.
    pub at: At,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// `version`: this many versions back from the newest (`"previous"` = 1).
    Back(u64),
    /// `env`: the image the named environment's state records, in the instance's region.
    Env(String),
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Back(0) => write!(f, "the newest version"),
            Pin::Back(1) => write!(f, "the previous version"),
            Pin::Back(n) => write!(f, "the version {n} back from the newest"),
            Pin::Env(e) => write!(f, "the image of environment `{e}`"),
        }
    }
}

impl Loader {
    /// `keep` of an `[image.NAME]` table: 1 (the default) replaces the image on a rebuild as
    /// before; N > 1 keeps N versions.
    pub(super) fn image_keep(&mut self, address: &Address, t: &IndexMap<String, Entry>) -> u64 {
        match get(t, "keep") {
            Some(Node {
                value: Value::Int(n),
                ..
            }) if (1..=MAX_KEEP).contains(n) => *n as u64,
            Some(
                n @ Node {
                    value: Value::Int(k),
                    ..
                },
            ) => {
                self.problem(
                    Problem::error(
                        "invalid_keep",
                        format!("`{address}` `keep = {k}`: an image keeps from 1 to {MAX_KEEP} versions"),
                    )
                    .at(&n.at, "out of range")
                    .help("`keep = 1` deletes the previous image on a rebuild; `keep = 3` keeps the newest three"),
                );
                1
            }
            // A wrong type is reported by the key table.
            _ => 1,
        }
    }

    /// The pin next to `image` in an instance's `source` table (`None`: no pin, or a problem
    /// reported). `image` must then be an `image.NAME` of the manifest.
    pub(super) fn image_pin(
        &mut self,
        address: &Address,
        t: &IndexMap<String, Entry>,
        image_is_address: bool,
    ) -> Option<ImagePin> {
        let (version, env) = (get(t, "version"), get(t, "env"));
        let pin = match (version, env) {
            (None, None) => return None,
            (Some(_), Some(e)) => {
                self.problem(
                    Problem::error(
                        "invalid_source",
                        format!("`{address}` `source` sets both `version` and `env`"),
                    )
                    .at(&e.at, "one or the other")
                    .help("`version` picks a version this environment keeps; `env` takes another environment's image"),
                );
                return None;
            }
            (Some(v), None) => match &v.value {
                Value::Int(n) if *n >= 0 => (Pin::Back(*n as u64), v.at.clone()),
                Value::Str(s) if s == "previous" => (Pin::Back(1), v.at.clone()),
                // A wrong type is reported by the key table.
                Value::Int(_) | Value::Str(_) => {
                    self.problem(
                        Problem::error(
                            "invalid_version",
                            format!("`{address}` `source.version` must be `\"previous\"` or a count of versions back from the newest (0 = newest)"),
                        )
                        .at(&v.at, "not a version")
                        .help("e.g. `version = \"previous\"` or `version = 2`"),
                    );
                    return None;
                }
                _ => return None,
            },
            (None, Some(e)) => match str_of(Some(e)) {
                Some((s, at)) if crate::env_name::is_valid(s) => {
                    (Pin::Env(s.to_string()), at.clone())
                }
                Some((s, at)) => {
                    self.problem(
                        Problem::error(
                            "invalid_source",
                            format!("`{address}` `source.env` `{s}` is not an environment name"),
                        )
                        .at(at, "not an environment")
                        .help("an environment is a name like `staging` (its state is `state/staging.json`)"),
                    );
                    return None;
                }
                // A wrong type is reported by the key table.
                None => return None,
            },
        };
        if !image_is_address {
            self.problem(
                Problem::error(
                    "invalid_source",
                    format!("`{address}` pins a version of an image given by OCID"),
                )
                .at(&pin.1, "needs `image = \"image.NAME\"`")
                .help("versions are kept for the manifest's images: `source = { image = \"image.NAME\", version = \"previous\" }`"),
            );
            return None;
        }
        Some(ImagePin {
            which: pin.0,
            at: pin.1,
        })
    }

    /// A pin `version = N` needs `keep` > N on the image it pins (the newest is 0): a version
    /// beyond `keep` is deleted at the next rebuild, so such a pin could never hold. Reported
    /// once per pin (a fleet's members share it), at the `version` span.
    pub(super) fn pins_within_keep(
        &mut self,
        instances: &BTreeMap<String, InstanceSpec>,
        images: &BTreeMap<String, ImageSpec>,
    ) {
        let mut seen: Vec<At> = Vec::new();
        for spec in instances.values() {
            let (Some(pin), InstanceSource::Image(Ref::Resource(image))) =
                (&spec.pin, &spec.source)
            else {
                continue;
            };
            let Pin::Back(n) = pin.which else { continue };
            let Some(keep) = images.get(&image.name).map(|i| i.keep) else {
                continue;
            };
            if n < keep || seen.contains(&pin.at) {
                continue;
            }
            seen.push(pin.at.clone());
            self.problem(
                Problem::error(
                    "version_beyond_keep",
                    format!(
                        "`instance.{}` pins {} of `{image}`, which keeps {keep} version(s)",
                        spec.address.fleet(),
                        pin.which
                    ),
                )
                .at(&pin.at, format!("needs `keep = {}` or more", n + 1))
                .help(format!(
                    "set `keep = {}` on `{image}` (the newest is `version = 0`), or pin a newer version",
                    n + 1
                )),
            );
        }
    }
}
