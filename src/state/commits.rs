//! The state writes of an apply ([`Commits`]): each commit records only the records it changed
//! where the store can append — the local store's journal ([`super::journal`]), folded into the
//! state file at the end — and the whole state elsewhere (the remote store: `state/README.md`
//! says why). Every write is a compare-and-swap by construction: the local store compares and
//! writes under its write gate ([`super::gate`]), the remote store with `If-Match`.

use std::collections::BTreeMap;

use super::journal;
use super::StateStore;
use super::{injected, serialise, LocalStore, ResourceState, State, StateError, StateLock};
use crate::failpoint;

/// The state writes of an apply (see the module doc).
pub struct Commits {
    store: StateStore,
    journal: Option<journal::Writer>,
}

impl Commits {
    pub fn new(store: StateStore) -> Commits {
        Commits {
            store,
            journal: None,
        }
    }

    /// Whether commits take only the changed records ([`Commits::append`]) rather than the
    /// whole state ([`Commits::save`]).
    pub fn journaled(&self) -> bool {
        matches!(self.store, StateStore::Local(_))
    }

    fn journal_error(
        &self,
        e: journal::WriteError,
        l: &LocalStore,
        lineage: &str,
        serial: u64,
    ) -> StateError {
        match e {
            journal::WriteError::Io(source) => StateError::Write {
                path: l.journal_path().display().to_string(),
                source,
            },
            journal::WriteError::Moved(reason) => {
                tracing::debug!("state moved under the journal: {reason}");
                l.conflict(lineage, serial)
            }
            journal::WriteError::State(e) => *e,
        }
    }

    /// Before the first commit: fold a journal a kiln that died left beside the state (the
    /// state given was loaded with it folded in), so this apply starts its own. Refused (a
    /// conflict) when the stored state is no longer the one given.
    pub async fn begin(&mut self, lock: &StateLock, state: &State) -> Result<(), StateError> {
        let _held = lock;
        let StateStore::Local(l) = &self.store else {
            return Ok(());
        };
        if !l.has_journal() {
            return Ok(());
        }
        self.fold(l, state, None).map(|_| ())
    }

    /// Fold the journal into the state file, compare-and-swap against (`state.lineage`,
    /// `state.serial`): the state written is the one stored (state file and journal, read
    /// under the gate), which is `state` when nobody else wrote since. Returns what is stored
    /// (`None`: nothing is, or it is `state`).
    fn fold(
        &self,
        l: &LocalStore,
        state: &State,
        writer: Option<&journal::Writer>,
    ) -> Result<Folded, StateError> {
        if let Some(fault) = failpoint::cross(failpoint::STATE_FOLD) {
            return Err(injected(
                self.store.describe(),
                failpoint::STATE_FOLD,
                fault,
            ));
        }
        // With this kiln's own journal, nothing is read back when nobody else wrote meanwhile
        // ([`LocalStore::fold_own`]).
        let mut written = match writer {
            Some(w) => l.fold_own(w, state).map(|stored| match stored {
                None => Folded::Same,
                Some(s) => Folded::Stored(s),
            }),
            None => l.fold(&state.lineage, state.serial).map(Folded::Stored),
        };
        if written.is_ok() {
            if let Some(fault) = failpoint::cross(failpoint::STATE_FOLDED) {
                written = Err(injected(
                    self.store.describe(),
                    failpoint::STATE_FOLDED,
                    fault,
                ));
            }
        }
        match written {
            // An error after the write may hide a write that landed: read it back.
            Err(StateError::Write { .. })
                if !failpoint::aborted() && !l.has_journal() && l.holds(&serialise(state)) =>
            {
                Ok(Folded::Same)
            }
            other => other,
        }
    }

    /// Record `changes` (address → its record now, `None`: gone) as serial `serial` + 1 of the
    /// state (`lineage`, `serial`); the new serial once it is durable.
    pub async fn append(
        &mut self,
        lock: &StateLock,
        lineage: &str,
        serial: u64,
        changes: BTreeMap<String, Option<ResourceState>>,
    ) -> Result<u64, StateError> {
        let _held = lock;
        let StateStore::Local(l) = &self.store else {
            unreachable!("only the local store appends")
        };
        let next = serial.checked_add(1).ok_or_else(|| StateError::Corrupt {
            path: self.store.describe(),
            reason: "the serial cannot grow any more".into(),
        })?;
        let entry = journal::Entry {
            serial: next,
            resources: changes,
        };
        let result = match &mut self.journal {
            Some(w) => w.append(&entry),
            // The first commit: the stored state must be the one this apply started from,
            // with no journal beside it (`begin` folded any).
            None => l
                .start_journal(lineage, serial, &entry)
                .map(|w| self.journal = Some(w)),
        };
        result.map_err(|e| self.journal_error(e, l, lineage, serial))?;
        Ok(next)
    }

    /// Save the whole state (serial + 1, compare-and-swap): the stores without a journal.
    pub async fn save(&mut self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        self.store.save(lock, state).await
    }

    /// After the last commit: fold the journal into the state file (`state` is what it holds,
    /// serial included). With `unrecorded`, `state` has changes whose commit failed: they are
    /// saved whole (serial + 1) instead, if the store still takes them. Both compare-and-swap:
    /// a state someone else wrote meanwhile (after `kiln force-unlock --force`) is never
    /// written over.
    pub async fn finish(
        &mut self,
        lock: &StateLock,
        state: &mut State,
        unrecorded: bool,
    ) -> Result<(), StateError> {
        match (&self.store, self.journal.take()) {
            (StateStore::Local(l), Some(writer)) if !unrecorded => {
                // Every change was committed with the addresses it touched: the journal folds
                // to exactly the state in memory.
                if let Folded::Stored(stored) = self.fold(l, state, Some(&writer))? {
                    debug_assert_eq!(
                        stored.as_ref(),
                        Some(&*state),
                        "the journal does not fold to the state in memory: a change was recorded without its address"
                    );
                }
                Ok(())
            }
            _ if unrecorded => self.store.save(lock, state).await,
            _ => Ok(()),
        }
    }
}

/// What a fold left stored.
enum Folded {
    /// The state the fold was given.
    Same,
    /// This (read under the gate: another kiln wrote meanwhile, or the fold read it back).
    Stored(Option<State>),
}
