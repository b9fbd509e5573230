//! Ctrl-C and SIGTERM for commands that take the state lock.
//!
//! The watcher is installed before the lock is taken, so no signal ever finds a lock it cannot
//! release. The first SIGINT or SIGTERM (CI runners send SIGTERM) asks for a stop: no new action
//! starts, actions in flight finish and are saved, the lock is released, and kiln exits 130; at
//! the confirmation prompt it cancels at once. A second one releases the lock and exits
//! immediately (the state stays valid: every finished action was saved).

use std::sync::{Arc, Mutex};

use super::out;
use crate::apply::progress::Progress;
use crate::apply::walk::StopFlag;
use crate::state::LockReleaser;

/// The exit code after an interruption.
pub const INTERRUPTED: u8 = 130;

/// The installed watcher: what it releases and where it reports.
#[derive(Clone)]
pub struct Interrupts {
    pub stop: StopFlag,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
    lock: Arc<Mutex<Option<LockReleaser>>>,
    progress: Arc<Mutex<Option<Arc<Progress>>>>,
}

impl Interrupts {
    /// Install the watcher on the current tokio runtime.
    pub fn install() -> Interrupts {
        let me = Interrupts {
            stop: StopFlag::new(),
            interrupted: Arc::default(),
            lock: Arc::new(Mutex::new(None)),
            progress: Arc::new(Mutex::new(None)),
        };
        let watcher = me.clone();
        // Both handlers are registered here, before this returns — not when the task is first
        // polled: a signal that arrives before then (a loaded machine) must not kill kiln.
        let mut signals = Signals {
            int: watch(tokio::signal::unix::SignalKind::interrupt()),
            term: watch(tokio::signal::unix::SignalKind::terminate()),
        };
        tokio::spawn(async move {
            if !signals.next().await {
                return;
            }
            watcher.note("Interrupted: no new action starts; waiting for the ones in flight (interrupt again to quit now — the state stays valid)");
            watcher
                .interrupted
                .store(true, std::sync::atomic::Ordering::SeqCst);
            watcher.stop.stop();
            if signals.next().await {
                watcher.release();
                // No spinner left frozen on the screen, and the terminal's echo as it was.
                if let Some(p) = watcher.progress.lock().expect("interrupts").as_ref() {
                    p.clear();
                }
                std::process::exit(INTERRUPTED as i32);
            }
        });
        me
    }

    /// Whether a signal asked kiln to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The lock to release if kiln must quit at once.
    pub fn hold(&self, lock: LockReleaser) {
        *self.lock.lock().expect("interrupts") = Some(lock);
    }

    /// Where to report from now on (the live progress display, so no spinner is left frozen).
    pub fn report_to(&self, progress: Arc<Progress>) {
        *self.progress.lock().expect("interrupts") = Some(progress);
    }

    fn note(&self, text: &str) {
        match self.progress.lock().expect("interrupts").as_ref() {
            Some(p) => p.note(text),
            None => out::eprintln(&format!("\n{text}")),
        }
    }

    /// Release the lock now (best effort).
    pub fn release(&self) {
        if let Some(l) = self.lock.lock().expect("interrupts").take() {
            l.release_now();
        }
    }
}

/// SIGINT and SIGTERM, each watched if it can be.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// The next SIGINT or SIGTERM (`false` if neither can be watched).
    async fn next(&mut self) -> bool {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> bool {
            match s {
                Some(s) => s.recv().await.is_some(),
                None => std::future::pending().await,
            }
        }
        if self.int.is_none() && self.term.is_none() {
            return false;
        }
        tokio::select! {
            r = recv(&mut self.int) => r,
            r = recv(&mut self.term) => r,
        }
    }
}

fn watch(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}
