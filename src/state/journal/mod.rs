//! The state journal: how an apply records each action at a cost that does not grow with the
//! estate.
//!
//! Rewriting `<env>.json` whole after every group commit made each commit O(N) and a large apply
//! O(N²) (BENCHMARKS.md). Instead, an apply on the local store appends one line per commit to
//! `<env>.json.journal` beside the state — the new records of the addresses that commit changed,
//! and the serial it makes — fsynced before the commit is acknowledged. At the end of the apply
//! the journal is *folded*: the state is written whole once (serial unchanged: the journal's last
//! serial names the same content either way) and the journal removed. A kiln that died before
//! folding leaves the journal; every load folds it in memory, and the next apply writes the fold
//! before it records anything new, so each apply starts without one.
//!
//! ## Format
//! UTF-8 lines, each `<hex SHA-256 of the JSON> <JSON>\n`. The first is the header,
//! `{"kiln_journal":1,"lineage":L,"base_serial":S}`: the state (lineage L, serial S) the journal
//! extends — `base_serial` 0 with no state file is a state created by this journal. Each further
//! line is an entry, `{"serial":S+k,"resources":{ADDRESS: RECORD or null}}`: from serial S+k on,
//! each ADDRESS has this record (null: it is gone from the state). Serials run S+1, S+2, … with
//! no gap. The header is written together with the first entry (one write, one fsync, and the
//! directory fsynced), so a journal that ever acknowledged anything has both.
//!
//! ## What is trusted, and what is refused
//! A commit is acknowledged only once its whole line is on disk (fsync). So a last line that is
//! cut short or fails its checksum was never acknowledged — the kiln died writing it — and is
//! dropped: the state is then what it was at the previous commit, exactly as a kill before that
//! commit would have left it (every OCI change that commit described was preceded by a commit
//! that made it recoverable — a pending create, a deposed object). Anything else that does not
//! check is refused, never guessed at, and nothing is written over it:
//! - a line before the last that fails its checksum or does not parse (a damaged middle: later
//!   lines were acknowledged on top of it);
//! - a header of another lineage than the state's, or of an unknown journal version;
//! - a header extending a serial the state is not at: a journal is *live* when its base is the
//!   state's serial, and *already folded* (ignored, and removed by the next write) when the
//!   state's serial is past the base and at or past its last entry — a fold that died before it
//!   removed the journal; any other pairing (the state rolled back under it, a journal of
//!   another state) is refused;
//! - entries whose serials skip or repeat, unknown fields, repeated keys, and a folded state
//!   that fails the state loader's own checks ([`super::check`]).
//!
//! ## Writing
//! [`Writer`] appends, each append a compare-and-swap (see the `writer` module).
//!
//! The remote (Object Storage) store keeps whole-object commits: see `state/README.md`.

mod writer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::check::{check, NoDuplicateKeys};
use super::{ResourceState, State, FORMAT_VERSION};

pub(super) use writer::{folder, FileId, WriteError, Writer};

/// The journal format this kiln writes and reads.
pub const JOURNAL_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    kiln_journal: u32,
    lineage: String,
    base_serial: u64,
}

/// One commit: the records it changed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub serial: u64,
    pub resources: BTreeMap<String, Option<ResourceState>>,
}

/// `<hex SHA-256> <json>\n`.
fn line(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 66);
    out.extend_from_slice(hex::encode(Sha256::digest(json)).as_bytes());
    out.push(b' ');
    out.extend_from_slice(json);
    out.push(b'\n');
    out
}

/// The JSON of a line whose checksum holds (without its newline).
fn verified(l: &[u8]) -> Option<&[u8]> {
    let (sum, json) = (l.get(..64)?, l.get(65..)?);
    (l.get(64) == Some(&b' ') && hex::encode(Sha256::digest(json)).as_bytes() == sum)
        .then_some(json)
}

fn decode<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(json).map_err(|_| "not UTF-8".to_string())?;
    serde_json::from_str::<NoDuplicateKeys>(text).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// A journal as read: its header and what its entries change (a torn last line dropped).
///
/// The entries are collapsed as they are read: each address keeps only its last record (or its
/// removal), which is all a fold applies. A first apply writes several entries per resource
/// (pending, created, running, network facts): keeping every decoded entry made the fold at its
/// end the apply's peak of memory (BENCHMARKS.md, section 6).
#[derive(Debug)]
pub(super) struct Parsed {
    header: Option<Header>,
    /// Address → its record after the last entry that names it (`None`: removed).
    changes: BTreeMap<String, Option<ResourceState>>,
    /// The serial of the last entry.
    last: Option<u64>,
    /// Whether a last line was dropped (cut short or failing its checksum).
    pub torn: bool,
}

impl Parsed {
    /// The serial the journal brings the state to (`None`: nothing in it).
    pub fn last_serial(&self) -> Option<u64> {
        let h = self.header.as_ref()?;
        Some(self.last.unwrap_or(h.base_serial))
    }
}

/// Parse a journal's bytes; `Err` says why it cannot be trusted.
#[cfg(test)]
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    read(bytes).map_err(|e| match e {
        ReadError::Io(e) => e.to_string(),
        ReadError::Untrusted(reason) => reason,
    })
}

/// Why a journal could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(std::io::Error),
    /// It was read, and cannot be trusted (the reason).
    Untrusted(String),
}

impl From<String> for ReadError {
    fn from(reason: String) -> Self {
        ReadError::Untrusted(reason)
    }
}

/// Read a journal line by line (a 10,000-launch apply writes ~50 MiB of it: holding the text
/// whole was the peak of the fold at the apply's end, BENCHMARKS.md section 6); `Err` says why it
/// cannot be trusted. Only the very last line may be torn (cut short, or failing its checksum):
/// nothing was acknowledged after it.
pub(super) fn read(mut r: impl std::io::BufRead) -> Result<Parsed, ReadError> {
    let mut buf = Vec::new();
    let mut torn = false;
    // A terminated line that failed its checksum: allowed only if nothing follows it.
    let mut damaged: Option<usize> = None;
    let mut header: Option<Header> = None;
    let mut changes = BTreeMap::new();
    let mut last = None;
    let mut serial = 0;
    let mut n = 0usize;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf).map_err(ReadError::Io)? == 0 {
            break;
        }
        n += 1;
        if let Some(i) = damaged {
            return Err(format!(
                "line {i} is damaged (its checksum does not hold) and lines after it were written"
            )
            .into());
        }
        let Some(l) = buf.strip_suffix(b"\n") else {
            // After the last newline: an unterminated line, never acknowledged.
            torn = true;
            break;
        };
        let Some(json) = verified(l) else {
            damaged = Some(n);
            continue;
        };
        match &header {
            None => {
                let h: Header = decode(json).map_err(|e| format!("the header: {e}"))?;
                if h.kiln_journal != JOURNAL_VERSION {
                    return Err(format!(
                        "journal format {} (this kiln reads {JOURNAL_VERSION})",
                        h.kiln_journal
                    )
                    .into());
                }
                if h.lineage.trim().is_empty() {
                    return Err("the header has no lineage".to_string().into());
                }
                serial = h.base_serial;
                header = Some(h);
            }
            Some(_) => {
                let k = n - 1;
                let e: Entry = decode(json).map_err(|e| format!("entry {k}: {e}"))?;
                let want = serial
                    .checked_add(1)
                    .ok_or_else(|| "the serial cannot grow any more".to_string())?;
                if e.serial != want {
                    return Err(
                        format!("entry {k} has serial {}, expected {want}", e.serial).into(),
                    );
                }
                serial = e.serial;
                last = Some(e.serial);
                changes.extend(e.resources);
            }
        }
    }
    torn |= damaged.is_some();
    Ok(Parsed {
        header,
        changes,
        last,
        torn,
    })
}

/// How a journal relates to the state beside it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Nothing in it (no header: it died before its first commit was acknowledged).
    Empty,
    /// It extends the state: fold it.
    Live,
    /// The state already holds it (a fold that died before removing it).
    Folded,
}

/// Where `journal` stands against `state`; `Err` says why they cannot go together.
pub(super) fn standing(state: Option<&State>, journal: &Parsed) -> Result<Standing, String> {
    let Some(h) = &journal.header else {
        return Ok(Standing::Empty);
    };
    let last = journal.last_serial().unwrap_or(h.base_serial);
    match state {
        None if h.base_serial == 0 => Ok(Standing::Live),
        None => Err(format!(
            "the journal extends serial {} of a state that is not there",
            h.base_serial
        )),
        Some(s) if s.lineage != h.lineage => Err(format!(
            "the journal belongs to lineage {}, the state is lineage {}",
            h.lineage, s.lineage
        )),
        Some(s) if s.serial == h.base_serial => Ok(Standing::Live),
        Some(s) if s.serial > h.base_serial && s.serial >= last => Ok(Standing::Folded),
        Some(s) => Err(format!(
            "the journal extends serial {} (to {last}), the state is at serial {}",
            h.base_serial, s.serial
        )),
    }
}

/// `state` with `journal` folded in (see [`standing`]), and whether the journal changed it;
/// `Err` says why not.
pub(super) fn fold(state: Option<State>, journal: Parsed) -> Result<(Option<State>, bool), String> {
    match standing(state.as_ref(), &journal)? {
        Standing::Empty | Standing::Folded => return Ok((state, false)),
        Standing::Live => {}
    }
    let h = journal.header.expect("a live journal has a header");
    // A journal whose header alone landed changes nothing of a state that is there.
    let changed = journal.last.is_some() || state.is_none();
    let mut s = state.unwrap_or_else(|| State {
        version: FORMAT_VERSION,
        lineage: h.lineage.clone(),
        serial: 0,
        resources: BTreeMap::new(),
    });
    for (address, r) in journal.changes {
        match r {
            Some(r) => {
                s.resources.insert(address, r);
            }
            None => {
                s.resources.remove(&address);
            }
        }
    }
    if let Some(last) = journal.last {
        s.serial = last;
    }
    check(&s).map_err(|e| format!("the state with the journal folded in: {e}"))?;
    Ok((Some(s), changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ResourceKind;

    fn record(id: &str) -> ResourceState {
        let mut r = ResourceState::new(ResourceKind::Instance);
        r.id = Some(id.into());
        r
    }

    fn state(serial: u64) -> State {
        let mut s = State::new();
        s.lineage = "L".into();
        s.serial = serial;
        s.resources
            .insert("instance.a".into(), record("ocid1.instance.oc1..a"));
        s
    }

    fn journal(lineage: &str, base: u64, entries: &[(u64, &str, Option<&str>)]) -> Vec<u8> {
        let mut out = line(
            &serde_json::to_vec(&Header {
                kiln_journal: JOURNAL_VERSION,
                lineage: lineage.into(),
                base_serial: base,
            })
            .unwrap(),
        );
        for (serial, address, id) in entries {
            let e = Entry {
                serial: *serial,
                resources: [(address.to_string(), id.map(record))].into(),
            };
            out.extend(line(&serde_json::to_vec(&e).unwrap()));
        }
        out
    }

    fn folded(state: Option<State>, bytes: &[u8]) -> Result<Option<State>, String> {
        Ok(fold(state, parse(bytes)?)?.0)
    }

    #[test]
    fn a_live_journal_folds_in_order_and_removes_with_null() {
        let j = journal(
            "L",
            4,
            &[
                (5, "instance.b", Some("ocid1.instance.oc1..b")),
                (6, "instance.a", None),
                (7, "instance.c", Some("ocid1.instance.oc1..c")),
            ],
        );
        let s = folded(Some(state(4)), &j).unwrap().unwrap();
        assert_eq!(s.serial, 7);
        assert_eq!(
            s.resources.keys().collect::<Vec<_>>(),
            ["instance.b", "instance.c"]
        );
    }

    #[test]
    fn a_journal_without_a_state_starts_at_serial_zero() {
        let j = journal("L", 0, &[(1, "instance.b", Some("ocid1.instance.oc1..b"))]);
        let s = folded(None, &j).unwrap().unwrap();
        assert_eq!((s.lineage.as_str(), s.serial), ("L", 1));
        let j = journal("L", 3, &[(4, "instance.b", Some("ocid1.instance.oc1..b"))]);
        assert!(folded(None, &j).unwrap_err().contains("not there"));
    }

    #[test]
    fn a_torn_last_line_is_dropped_whether_cut_short_or_damaged() {
        let j = journal(
            "L",
            4,
            &[
                (5, "instance.b", Some("ocid1.instance.oc1..b")),
                (6, "instance.c", Some("ocid1.instance.oc1..c")),
            ],
        );
        // Cut anywhere in the last line: the state of the previous commit.
        let last_start = j[..j.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
        for cut in [
            last_start + 1,
            last_start + 64,
            last_start + 70,
            j.len() - 1,
        ] {
            let p = parse(&j[..cut]).unwrap();
            assert!(p.torn, "cut at {cut}");
            let s = fold(Some(state(4)), p).unwrap().0.unwrap();
            assert_eq!(s.serial, 5, "cut at {cut}");
        }
        // A damaged (but terminated) last line: zeros where the data did not land.
        let mut damaged = j.clone();
        damaged[last_start + 80] = 0;
        let s = folded(Some(state(4)), &damaged).unwrap().unwrap();
        assert_eq!(s.serial, 5);
        // A header cut short: nothing was ever acknowledged.
        let s = folded(Some(state(4)), &j[..20]).unwrap().unwrap();
        assert_eq!(s.serial, 4);
    }

    #[test]
    fn a_damaged_middle_line_is_refused() {
        let mut j = journal(
            "L",
            4,
            &[
                (5, "instance.b", Some("ocid1.instance.oc1..b")),
                (6, "instance.c", Some("ocid1.instance.oc1..c")),
            ],
        );
        let second = j.iter().position(|b| *b == b'\n').unwrap() + 1;
        j[second + 90] ^= 1;
        assert!(folded(Some(state(4)), &j).unwrap_err().contains("damaged"));
    }

    #[test]
    fn foreign_lineages_other_serials_gaps_and_bad_records_are_refused() {
        let entry = |s| (s, "instance.b", Some("ocid1.instance.oc1..b"));
        let refused = |st: Option<State>, j: Vec<u8>| folded(st, &j).unwrap_err();
        assert!(refused(Some(state(4)), journal("M", 4, &[entry(5)])).contains("lineage"));
        // The state moved back under the journal, or is mid-way through it.
        assert!(refused(Some(state(3)), journal("L", 4, &[entry(5)])).contains("serial"));
        assert!(refused(Some(state(5)), journal("L", 4, &[entry(5), entry(6)])).contains("serial"));
        assert!(refused(Some(state(4)), journal("L", 4, &[entry(6)])).contains("expected 5"));
        assert!(
            refused(Some(state(4)), journal("L", 4, &[entry(5), entry(5)])).contains("expected 6")
        );
        // An id that is not an instance's: the folded state fails the loader's checks.
        let bad = journal("L", 4, &[(5, "instance.b", Some("ocid1.image.oc1..b"))]);
        assert!(refused(Some(state(4)), bad).contains("folded"));
        // The same OCID on two addresses.
        let twice = journal("L", 4, &[(5, "instance.b", Some("ocid1.instance.oc1..a"))]);
        assert!(refused(Some(state(4)), twice).contains("both"));
        // An unknown field in an entry.
        let mut j = journal("L", 4, &[]);
        j.extend(line(br#"{"serial":5,"resources":{},"extra":1}"#));
        assert!(refused(Some(state(4)), j).contains("unknown field"));
        // A repeated key.
        let mut j = journal("L", 4, &[]);
        j.extend(line(br#"{"serial":5,"resources":{},"resources":{}}"#));
        assert!(refused(Some(state(4)), j).contains("entry 1"));
        // Another journal version.
        let j = line(br#"{"kiln_journal":2,"lineage":"L","base_serial":4}"#);
        assert!(refused(Some(state(4)), j).contains("format 2"));
    }

    #[test]
    fn a_journal_the_state_already_holds_is_ignored() {
        let j = journal(
            "L",
            4,
            &[
                (5, "instance.b", Some("ocid1.instance.oc1..b")),
                (6, "instance.c", Some("ocid1.instance.oc1..c")),
            ],
        );
        // The fold wrote serial 6 and died before removing it; or a later save made 7.
        for serial in [6, 7] {
            let st = state(serial);
            let s = folded(Some(st.clone()), &j).unwrap().unwrap();
            assert_eq!(s, st);
        }
    }
}
