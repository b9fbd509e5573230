//! Named I/O boundaries (failpoints), where the crash-safety tests inject faults.
//!
//! Every place where kiln touches the world outside its own memory crosses one of the
//! [`POINTS`]: an OCI request about to be sent, an OCI answer about to be read, a state save,
//! load or lock operation, a state journal append or fold. In a normal build [`cross`] is an inlined `None` and costs nothing.
//! Built with the `failpoints` cargo feature (the test suite turns it on), each crossing consults
//! the [`fail`] crate's registry, so a test can make the k-th crossing of a point fail in one of
//! the [`Fault`] ways — and every crossing can be observed, so a reference run lists them.
//!
//! [`Fault::Abort`] stands for the process dying at that instant: from then on every boundary
//! refuses (no request leaves, no byte is written, no lock is released — as after a `kill -9`)
//! until the harness calls [`revive`]. The apply in flight is then dropped by the test, exactly as
//! the operating system would drop it.

/// Every boundary, by name (the names a test configures with `fail::cfg`).
pub const POINTS: &[&str] = &[
    OCI_REQUEST,
    OCI_RESPONSE,
    STATE_LOCK,
    STATE_UNLOCK,
    STATE_LOAD,
    STATE_SAVE,
    STATE_SAVED,
    STATE_JOURNAL,
    STATE_JOURNALED,
    STATE_FOLD,
    STATE_FOLDED,
];

/// An OCI request attempt is about to be sent (faults: abort, or an error answer instead of
/// sending it: `status(401)`, `status(404)`, `status(409)`, `status(429)`, `status(500)`).
pub const OCI_REQUEST: &str = "oci.request";
/// OCI answered a request attempt; kiln has not read the answer yet (faults: abort, `lost` —
/// the change is made, the answer never arrives).
pub const OCI_RESPONSE: &str = "oci.response";
/// A state lock is about to be taken (faults: abort, `error`).
pub const STATE_LOCK: &str = "state.lock";
/// A state lock is about to be released (faults: abort, `error`).
pub const STATE_UNLOCK: &str = "state.unlock";
/// The state is about to be read (faults: abort, `error`).
pub const STATE_LOAD: &str = "state.load";
/// A state save is about to be written (faults: abort, `error` — nothing is written).
pub const STATE_SAVE: &str = "state.save";
/// A state save is durable; its caller has not learnt it yet (faults: abort, `lost` — written,
/// but reported as failed).
pub const STATE_SAVED: &str = "state.saved";

/// A commit is about to be appended to the state journal (faults: abort — the process dies in
/// the middle of the write, leaving half a line; `error` — nothing is written).
pub const STATE_JOURNAL: &str = "state.journal";
/// A journal append is durable; its caller has not learnt it yet (faults: abort, `lost` —
/// written, but reported as failed).
pub const STATE_JOURNALED: &str = "state.journaled";
/// The journal is about to be folded into the state file (faults: abort, `error` — nothing is
/// written).
pub const STATE_FOLD: &str = "state.fold";
/// The folded state is written and the journal removed (the write gate released); the caller
/// has not learnt it yet (faults: abort, `lost` — written, but reported as failed). A fold that
/// dies between the two leaves a journal the state already holds: ignored, removed by the next
/// write (`state::journal`).
pub const STATE_FOLDED: &str = "state.folded";

/// Not a boundary but a switch that breaks an invariant on purpose, so a test can prove that the
/// simulation (`tests/sim/`) catches a broken kiln: when on, a create is sent without its
/// pending create recorded first (`apply::create`), so a lost answer leaves an instance the state
/// does not know and the next apply launches it again. Never in [`POINTS`]: nothing enumerates it.
pub const SKIP_PENDING_SAVE: &str = "apply.skip_pending_save";

/// What a test makes happen at a crossing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The process dies here.
    Abort,
    /// The effect happened but its answer is lost (a dropped connection; a write reported failed).
    Lost,
    /// OCI answers this HTTP status instead (the request is not sent).
    Status(u16),
    /// The operation fails with an I/O error before it has any effect.
    Error,
    /// OCI answers a launch as it does when no host has room: 500 `InternalError` "Out of host
    /// capacity." (the request is not sent).
    Capacity,
}

impl Fault {
    /// The `return(...)` argument naming this fault in a `fail::cfg` action.
    pub fn arg(self) -> String {
        match self {
            Fault::Abort => "abort".into(),
            Fault::Lost => "lost".into(),
            Fault::Status(s) => format!("status({s})"),
            Fault::Error => "error".into(),
            Fault::Capacity => "capacity".into(),
        }
    }

    /// Parse [`Fault::arg`]'s form.
    pub fn parse(s: &str) -> Option<Fault> {
        Some(match s.trim() {
            "abort" => Fault::Abort,
            "lost" => Fault::Lost,
            "error" => Fault::Error,
            "capacity" => Fault::Capacity,
            other => Fault::Status(
                other
                    .strip_prefix("status(")?
                    .strip_suffix(')')?
                    .parse()
                    .ok()?,
            ),
        })
    }
}

/// Cross the boundary `name`: `None` to go on; under the `failpoints` feature, the fault a test
/// configured for this crossing.
#[inline]
pub fn cross(name: &'static str) -> Option<Fault> {
    #[cfg(feature = "failpoints")]
    {
        imp::cross(name)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// [`cross`], and then the same boundary narrowed to one OCI operation (`oci.response.CreateImage`),
/// so a test can fault one kind of request wherever it falls.
#[inline]
pub fn cross_op(name: &'static str, operation: &str) -> Option<Fault> {
    #[cfg(feature = "failpoints")]
    {
        imp::cross(name).or_else(|| imp::cross_named(&format!("{name}.{operation}")))
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (name, operation);
        None
    }
}

/// Whether the test-only switch `name` (e.g. [`SKIP_PENDING_SAVE`]) is on: configured with any
/// `return` action. Always false without the feature.
#[inline]
pub fn switched_on(name: &'static str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |_| ()).is_some()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// In a kiln binary built with the feature: configure the failpoints named in the `FAILPOINTS`
/// environment variable (the `fail` crate's syntax, e.g. `oci.response.LaunchInstance=return(abort)`),
/// with [`Fault::Abort`] aborting the process for real. Without the feature: nothing.
// Runs before anything else is set up, with only stderr to warn on.
#[allow(clippy::disallowed_methods)]
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    if std::env::var_os("FAILPOINTS").is_some() {
        std::mem::forget(fail::FailScenario::setup());
        imp::REAL_ABORT.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    #[cfg(not(feature = "failpoints"))]
    if std::env::var_os("FAILPOINTS").is_some() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"warning: FAILPOINTS is set, but this kiln was built without the `failpoints` feature: it is ignored\n",
        );
    }
}

/// An I/O error standing for an injected fault at `name`.
pub fn io_error(name: &str, fault: Fault) -> std::io::Error {
    std::io::Error::other(format!("injected fault `{}` at `{name}`", fault.arg()))
}

/// Whether an injected abort has "killed" this process (always false without the feature).
pub fn aborted() -> bool {
    #[cfg(feature = "failpoints")]
    {
        imp::ABORTED.load(std::sync::atomic::Ordering::SeqCst)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}

/// Bring the "process" back after an injected abort (the next run of the crash tests).
#[cfg(feature = "failpoints")]
pub fn revive() {
    imp::ABORTED.store(false, std::sync::atomic::Ordering::SeqCst);
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::Fault;

    pub(super) static ABORTED: AtomicBool = AtomicBool::new(false);
    /// A binary under test: an injected abort is a real one.
    pub(super) static REAL_ABORT: AtomicBool = AtomicBool::new(false);

    pub(super) fn cross(name: &'static str) -> Option<Fault> {
        cross_named(name)
    }

    use super::hold;

    pub(super) fn cross_named(name: &str) -> Option<Fault> {
        if ABORTED.load(Ordering::SeqCst) {
            return Some(Fault::Abort);
        }
        let fault = fail::eval(name, |arg| {
            let arg = arg.unwrap_or_default();
            if let Some(fifo) = arg.strip_prefix("hold(").and_then(|a| a.strip_suffix(')')) {
                hold(fifo);
                return None;
            }
            Some(
                Fault::parse(&arg)
                    .unwrap_or_else(|| panic!("failpoint `{name}`: unknown fault `{arg}`")),
            )
        })
        .flatten()?;
        if fault == Fault::Abort {
            if REAL_ABORT.load(Ordering::SeqCst) {
                std::process::abort();
            }
            ABORTED.store(true, Ordering::SeqCst);
        }
        Some(fault)
    }
}

/// `return(hold(FIFO))`: stop at the crossing until a test has opened the named pipe `FIFO`
/// for writing and closed it again. The test's open returns when the run has reached the
/// crossing (a FIFO's open waits for its other end), so it knows where the run is, and its
/// close lets the run go on — across processes, with no timing involved. In a multi-threaded
/// tokio runtime the wait leaves the runtime's other tasks running.
#[cfg(feature = "failpoints")]
fn hold(fifo: &str) {
    let wait = || {
        let read = std::fs::File::open(fifo)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut Vec::new()));
        if let Err(e) = read {
            panic!("failpoint hold: cannot read the pipe `{fifo}`: {e}");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_args_round_trip() {
        for f in [
            Fault::Abort,
            Fault::Lost,
            Fault::Error,
            Fault::Status(401),
            Fault::Status(500),
            Fault::Capacity,
        ] {
            assert_eq!(Fault::parse(&f.arg()), Some(f));
        }
        assert_eq!(Fault::parse("status(x)"), None);
        assert_eq!(Fault::parse("nonsense"), None);
    }
}
