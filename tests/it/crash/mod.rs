//! Crash safety, with the kiln binary against the emulator: a kiln killed or interrupted mid-apply
//! ([`kills`]), one regression test per way "never twice, never lost" broke ([`never_twice`],
//! [`pending_creates`]), and a second kiln forcing the lock from a running one ([`takeover`]).
//! The exhaustive proofs are the fault-enumeration suite (`tests/faults/`) and the simulation
//! (`tests/sim/`).

mod kills;
mod never_twice;
mod pending_creates;
mod takeover;
