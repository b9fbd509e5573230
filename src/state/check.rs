//! The loader's distrust: a state document is accepted only when every part of it can be trusted.
//!
//! kiln acts on what the state says — it resends pending creates, destroys what the manifest no
//! longer declares, renames by address — so a state that is subtly wrong is worse than none: a
//! repeated `"resources"` key that reads as an empty map would duplicate every resource, an id on
//! the wrong address would rename or destroy the wrong instance. Such a state is refused with the
//! file and the problem named, and nothing is written over it.
//!
//! Checked here: JSON syntax; no object key appears twice (at any depth); a known format version;
//! no unknown field; a lineage; a serial that can still grow; every address parses
//! (`instance.NAME`, `image.NAME`, optionally with a `[0]` or `["key"]` member index) and matches
//! its record's kind; every id is an OCID of that kind; a record without an id has a pending
//! create or deposed objects (else it claims a resource it cannot name); no OCID belongs to two
//! records; network facts belong to an instance and name a VNIC OCID.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{ResourceKind, State, StateError, FORMAT_VERSION, OLDEST_FORMAT_VERSION};

/// Parse and check a state document (`path` names it in errors).
pub fn parse(path: &str, text: &str) -> Result<State, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_string(),
        reason,
    };
    // Two passes over the text, side by side on two threads: the distrustful one (every key
    // at any depth checked against its siblings, and the version read on the way) and the
    // state itself, straight from the text. The first pass's verdict comes first: a state with
    // a key twice or another version is refused for that, whatever the second made of it.
    let (head, state) = std::thread::scope(|s| {
        let head = s.spawn(|| serde_json::from_str::<Document>(text));
        let state = serde_json::from_str::<State>(text);
        (head.join().expect("checking keys does not panic"), state)
    });
    let version = head
        .map_err(|e| corrupt(e.to_string()))?
        .version
        .ok_or_else(|| corrupt("no `version`".into()))?;
    if !(OLDEST_FORMAT_VERSION as u64..=FORMAT_VERSION as u64).contains(&version) {
        return Err(StateError::Version {
            path: path.to_string(),
            found: version.min(u32::MAX as u64) as u32,
        });
    }
    let mut state = state.map_err(|e| corrupt(e.to_string()))?;
    check(&state).map_err(corrupt)?;
    // An older format is read as the current one (its records are a subset of it): whatever
    // kiln writes next is the current format, which older kilns refuse rather than misread.
    state.version = FORMAT_VERSION;
    Ok(state)
}

/// The semantic checks (see the module doc); `Err` says what is wrong.
pub(crate) fn check(state: &State) -> Result<(), String> {
    if state.lineage.trim().is_empty() {
        return Err("the lineage is empty".into());
    }
    if state.serial == u64::MAX {
        return Err(format!(
            "the serial {} cannot grow any more; a state kiln cannot write again is refused",
            state.serial
        ));
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (address, r) in &state.resources {
        let kind = address_kind(address).ok_or_else(|| {
            format!("`{address}` is not an address like `instance.NAME` or `image.NAME`")
        })?;
        if kind != r.kind {
            return Err(format!(
                "`{address}` is recorded with kind `{}`",
                kind_name(r.kind)
            ));
        }
        if r.is_empty() {
            return Err(format!(
                "`{address}` has no id, no pending create and nothing deposed"
            ));
        }
        for id in r.ids() {
            let prefix = format!("ocid1.{}.", kind_name(kind));
            if !id.starts_with(&prefix) || id.len() <= prefix.len() {
                return Err(format!(
                    "`{address}` has the id `{id}`, which is not an OCID of an {}",
                    kind_name(kind)
                ));
            }
            if let Some(other) = owner.insert(id, address) {
                return Err(format!(
                    "`{id}` is recorded for both `{other}` and `{address}`"
                ));
            }
        }
        // Retained versions (issue 24) are an image's, each with its own number.
        if !r.retained.is_empty() && kind != ResourceKind::Image {
            return Err(format!(
                "`{address}` retains versions, but only images have them"
            ));
        }
        let mut numbers = BTreeSet::new();
        if let Some(v) = r.retained.iter().find(|v| !numbers.insert(v.version)) {
            return Err(format!("`{address}` retains version {} twice", v.version));
        }
        if let Some(n) = &r.network {
            if kind != ResourceKind::Instance {
                return Err(format!(
                    "`{address}` has network facts but is not an instance"
                ));
            }
            if !n.vnic_id.starts_with("ocid1.vnic.") {
                return Err(format!(
                    "`{address}` has the VNIC id `{}`, which is not an OCID of a VNIC",
                    n.vnic_id
                ));
            }
        }
        if let Some(p) = &r.pending_create {
            if p.retry_token.is_empty() || p.retry_token.len() > 64 {
                return Err(format!(
                    "`{address}` has a pending create without a valid retry token"
                ));
            }
        }
    }
    Ok(())
}

fn kind_name(k: ResourceKind) -> &'static str {
    match k {
        ResourceKind::Instance => "instance",
        ResourceKind::Image => "image",
    }
}

/// The kind of a well-formed address: `KIND.NAME`, optionally `[N]` or `["KEY"]` after it; an
/// image's copy in another region is the image's address and `@<region id>`
/// (`image.golden@eu-frankfurt-1`, see `plan::image_copies`).
pub fn address_kind(address: &str) -> Option<ResourceKind> {
    if let Some((image, region)) = address.rsplit_once('@') {
        let known = crate::region::resolve(region).ok() == Some(region);
        return match address_kind(image) {
            Some(ResourceKind::Image) if known => Some(ResourceKind::Image),
            _ => None,
        };
    }
    let (kind, rest) = address.split_once('.')?;
    let kind = match kind {
        "instance" => ResourceKind::Instance,
        "image" => ResourceKind::Image,
        _ => return None,
    };
    let (name, index) = match rest.find('[') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let index_ok = match index {
        None => true,
        Some(ix) => {
            let inner = ix.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
            match inner {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => true,
                Some(k) => {
                    k.len() >= 3
                        && k.starts_with('"')
                        && k.ends_with('"')
                        && !k[1..k.len() - 1].contains(['"', '\\'])
                }
                None => false,
            }
        }
    };
    (name_ok && index_ok).then_some(kind)
}

/// Deserialises any JSON and fails on an object key that appears twice (serde_json keeps the last).
pub(super) struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        check_keys(&mut map, |_, map| {
            map.next_value::<NoDuplicateKeys>().map(drop)
        })?;
        Ok(self)
    }
}

/// Walk an object's entries, failing on a key seen before in it; `value` reads each key's value.
fn check_keys<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut value: impl FnMut(&str, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    // Keys borrowed from the text where they can be; a state's objects are mostly small, so
    // they are compared in a list, and only a large object (`resources`) gets a set.
    const SMALL: usize = 16;
    let mut few: Vec<Cow<'de, str>> = Vec::new();
    let mut many: HashSet<Cow<'de, str>> = HashSet::new();
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        let twice = if many.is_empty() && few.len() < SMALL {
            let twice = few.contains(&key);
            few.push(key.clone());
            twice
        } else {
            if many.is_empty() {
                many.extend(few.drain(..));
            }
            !many.insert(key.clone())
        };
        if twice {
            return Err(de::Error::custom(format!(
                "the key `{key}` appears twice in one object"
            )));
        }
        value(&key, map)?;
    }
    Ok(())
}

/// The whole document through [`NoDuplicateKeys`], with its top-level `version` when that is a
/// whole number (read in the same pass).
struct Document {
    version: Option<u64>,
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a state document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let mut version = None;
                let keys = check_keys(&mut map, |key, map| match key {
                    "version" => {
                        version = map.next_value::<Version>()?.0;
                        Ok(())
                    }
                    _ => map.next_value::<NoDuplicateKeys>().map(drop),
                });
                keys.map(|()| Document { version })
            }
        }
        d.deserialize_map(V)
    }
}

/// A value that is a whole number, or anything else (checked for keys twice, read as `None`).
struct Version(Option<u64>);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Version;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a version")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Version, E> {
                Ok(Version(Some(v)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Version, E> {
                Ok(Version(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Version, E> {
                Ok(Version(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Version, E> {
                Ok(Version(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Version, E> {
                Ok(Version(None))
            }
            fn visit_unit<E>(self) -> Result<Version, E> {
                Ok(Version(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Version, A::Error> {
                NoDuplicateKeys.visit_seq(seq).map(|_| Version(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Version, A::Error> {
                NoDuplicateKeys.visit_map(map).map(|_| Version(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, borrowed from the text unless it has escapes (serde's own `Cow` always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "instance.web",
            "image.golden-1",
            "instance.web[0]",
            "instance.web[\"a\"]",
            "image.golden@eu-frankfurt-1",
            "image.golden[0]@us-phoenix-1",
        ] {
            assert!(address_kind(ok).is_some(), "{ok}");
        }
        for bad in [
            "web",
            "vm.web",
            "instance.",
            "instance.a b",
            "instance.web[",
            "instance.web[]",
            "instance.web[x]",
            "instance.web[0]x",
            "instance.../x",
            "instance.web@us-phoenix-1",
            "image.golden@nowhere-1",
            "image.golden@phx",
            "image.golden@",
        ] {
            assert!(address_kind(bad).is_none(), "{bad}");
        }
    }

    fn doc(resources: &str) -> String {
        format!(r#"{{"version":2,"lineage":"l","serial":3,"resources":{{{resources}}}}}"#)
    }

    fn rec(kind: &str, id: &str) -> String {
        format!(r#"{{"kind":"{kind}","id":{id},"updated_at":"2026-11-23T00:00:00Z"}}"#)
    }

    #[test]
    fn a_key_twice_is_found_in_small_and_large_objects_and_through_escapes() {
        let dup = |text: &str| serde_json::from_str::<NoDuplicateKeys>(text).is_err();
        assert!(!dup(r#"{"a":1,"b":{"a":2}}"#));
        assert!(dup(r#"{"a":1,"b":2,"a":3}"#));
        assert!(dup(r#"{"a":1,"\u0061":2}"#));
        // Past the small-object list: the set, with the keys seen before it.
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        assert!(!dup(&format!("{{{}}}", keys.join(","))));
        for again in ["k3", "k39", "k20"] {
            assert!(
                dup(&format!(r#"{{{},"{again}":0}}"#, keys.join(","))),
                "{again}"
            );
        }
        assert!(dup(&format!(
            r#"{{{},"k17":0,"z":1}}"#,
            keys[..20].join(",")
        )));
    }

    #[test]
    fn the_version_is_read_in_the_key_check() {
        let with =
            |v: &str| format!(r#"{{"lineage":"l","version":{v},"serial":1,"resources":{{}}}}"#);
        assert!(parse("s", &with("2")).is_ok());
        let future = parse("s", &with("99")).unwrap_err();
        assert!(
            matches!(future, StateError::Version { found: 99, .. }),
            "{future}"
        );
        for (v, why) in [
            ("\"2\"", "no `version`"),
            ("-1", "no `version`"),
            ("2.5", "no `version`"),
            (r#"{"a":1,"a":2}"#, "appears twice"),
            (r#"[{"a":1,"a":2}]"#, "appears twice"),
        ] {
            let e = parse("s", &with(v)).unwrap_err().to_string();
            assert!(e.contains(why), "{v}: {e}");
        }
        let e = parse("s", r#"{"lineage":"l","serial":1,"resources":{}}"#).unwrap_err();
        assert!(e.to_string().contains("no `version`"), "{e}");
        let e = parse("s", "[1]").unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn untrustworthy_states_are_refused() {
        let good = rec("instance", "\"ocid1.instance.oc1.iad.a\"");
        assert!(parse("s", &doc(&format!(r#""instance.a":{good}"#))).is_ok());
        let with_network = r#"{"kind":"instance","id":"ocid1.instance.oc1.iad.a","network":{"vnic_id":"ocid1.vnic.oc1.iad.v","private_ip":"10.0.0.2","public_ip":null,"read_at":"2026-11-23T00:00:00Z"},"updated_at":"2026-11-23T00:00:00Z"}"#;
        let st = parse("s", &doc(&format!(r#""instance.a":{with_network}"#))).unwrap();
        let n = st.resources["instance.a"].network.as_ref().unwrap();
        assert_eq!(
            (n.private_ip.as_deref(), n.public_ip.as_deref()),
            (Some("10.0.0.2"), None)
        );
        let cases = [
            (
                format!(
                    r#"{{"version":2,"lineage":"l","serial":3,"resources":{{"instance.a":{good}}},"resources":{{}}}}"#
                ),
                "appears twice",
            ),
            (
                doc(&format!(r#""instance.a":{}"#, rec("instance", "null"))),
                "no id",
            ),
            (
                doc(&format!(
                    r#""instance.a":{}"#,
                    rec("image", "\"ocid1.image.oc1.iad.a\"")
                )),
                "kind",
            ),
            (
                doc(&format!(
                    r#""instance.a":{}"#,
                    rec("instance", "\"ocid1.image.oc1.iad.a\"")
                )),
                "not an OCID",
            ),
            (
                doc(&format!(r#""instance.a":{good},"instance.b":{good}"#)),
                "both",
            ),
            (doc(&format!(r#""instance a":{good}"#)), "not an address"),
            (
                r#"{"version":2,"lineage":"l","serial":18446744073709551615,"resources":{}}"#
                    .to_string(),
                "cannot grow",
            ),
            (
                r#"{"version":2,"lineage":"l","serial":1,"resources":{},"extra":1}"#.to_string(),
                "unknown field",
            ),
            (
                doc(&format!(
                    r#""image.a":{{"kind":"image","id":"ocid1.image.oc1.iad.a","network":{net},"updated_at":"2026-11-23T00:00:00Z"}}"#,
                    net = r#"{"vnic_id":"ocid1.vnic.oc1.iad.v","read_at":"2026-11-23T00:00:00Z"}"#
                )),
                "network facts",
            ),
            (
                doc(&format!(
                    r#""instance.a":{{"kind":"instance","id":"ocid1.instance.oc1.iad.a","network":{net},"updated_at":"2026-11-23T00:00:00Z"}}"#,
                    net =
                        r#"{"vnic_id":"ocid1.subnet.oc1.iad.v","read_at":"2026-11-23T00:00:00Z"}"#
                )),
                "not an OCID of a VNIC",
            ),
            (
                doc(&format!(
                    r#""instance.a":{{"kind":"instance","id":"ocid1.instance.oc1.iad.a","network":{net},"updated_at":"2026-11-23T00:00:00Z"}}"#,
                    net = r#"{"vnic_id":"ocid1.vnic.oc1.iad.v","mac":"x","read_at":"2026-11-23T00:00:00Z"}"#
                )),
                "unknown field",
            ),
        ];
        for (text, why) in cases {
            let e = parse("s", &text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
