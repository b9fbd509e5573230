//! The state lock as kiln holds it ([`StateLock`]: released on drop, or from a signal handler
//! through a [`LockReleaser`]) and the record that names its holder ([`LockInfo`]: who, host,
//! pid, operation, since — and on a remote store the lease the holder keeps renewing).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{local, remote, StateError};
use crate::failpoint;

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub operation: String,
    pub since: DateTime<Utc>,
    /// Remote locks: how long the lock holds without a renewal, in seconds; the holder renews it
    /// well before that while it runs ([`super::remote::Lease`]). `None` for local locks (the OS
    /// lock says whether the holder runs) and lock objects written by kilns without leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Remote locks: when the holder last renewed its lease (its own clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<DateTime<Utc>>,
}

impl LockInfo {
    /// A lock record for this process.
    pub fn new(operation: &str) -> LockInfo {
        let who = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            who,
            host,
            pid: std::process::id(),
            operation: operation.into(),
            since: Utc::now(),
            lease_seconds: None,
            renewed_at: None,
        }
    }

    /// When the lease runs out unless renewed (`None`: the record has no lease).
    pub fn lease_until(&self) -> Option<DateTime<Utc>> {
        let seconds = i64::try_from(self.lease_seconds?).ok()?;
        self.renewed_at?
            .checked_add_signed(chrono::Duration::try_seconds(seconds)?)
    }

    pub fn describe(&self) -> String {
        let lease = match self.renewed_at {
            Some(t) => format!(", lease renewed at {}", t.format("%Y-%m-%d %H:%M:%S UTC")),
            None => String::new(),
        };
        format!(
            "{}@{} (pid {}, `kiln {}` since {}, lock id {}{lease})",
            self.who,
            self.host,
            self.pid,
            self.operation,
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.id
        )
    }
}

/// A held lock; released on drop (or with [`StateLock::release`], which reports failures).
pub struct StateLock {
    pub info: LockInfo,
    /// Shared with [`LockReleaser`]s, so a signal handler can release it before the process exits.
    held: Arc<Mutex<Held>>,
}

// One per held lock, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Held {
    Local(local::FileLock),
    Memory(Arc<Mutex<Option<LockInfo>>>),
    Remote(remote::ObjectLock),
    Released,
}

impl Held {
    /// Release without reporting (a destructor, or a process about to exit).
    fn release_now(&mut self) {
        if self.faulted().is_none() {
            self.release_unchecked();
        }
    }

    /// Cross the unlock boundary; on an injected fault, forget the lock as a process that died
    /// here would: its local flock closes with it (the record stays, stale), a lock object stays.
    fn faulted(&mut self) -> Option<failpoint::Fault> {
        if matches!(self, Held::Released) {
            return None;
        }
        let fault = failpoint::cross(failpoint::STATE_UNLOCK)?;
        *self = Held::Released;
        Some(fault)
    }

    fn release_unchecked(&mut self) {
        match std::mem::replace(self, Held::Released) {
            Held::Local(f) => f.release(),
            Held::Memory(m) => *m.lock().expect("memory lock") = None,
            Held::Remote(l) => l.release_blocking(),
            Held::Released => {}
        }
    }
}

/// A handle that releases a [`StateLock`] from elsewhere (e.g. the second Ctrl-C, right before
/// the process exits). Releasing twice is harmless.
#[derive(Clone)]
pub struct LockReleaser(Arc<Mutex<Held>>);

impl LockReleaser {
    /// Release now, best effort, blocking the calling thread for at most a few seconds.
    pub fn release_now(&self) {
        self.0.lock().expect("state lock handle").release_now();
    }
}

impl StateLock {
    pub(super) fn new(info: LockInfo, held: Held) -> StateLock {
        StateLock {
            info,
            held: Arc::new(Mutex::new(held)),
        }
    }

    pub fn releaser(&self) -> LockReleaser {
        LockReleaser(self.held.clone())
    }

    /// Release now, reporting a failure (dropping releases too, best effort).
    pub async fn release(self) -> Result<(), StateError> {
        let held = {
            let mut guard = self.held.lock().expect("state lock handle");
            if let Some(fault) = guard.faulted() {
                return Err(StateError::Write {
                    path: "(the state lock)".into(),
                    source: failpoint::io_error(failpoint::STATE_UNLOCK, fault),
                });
            }
            std::mem::replace(&mut *guard, Held::Released)
        };
        match held {
            Held::Remote(l) => l.release().await,
            mut other => {
                other.release_unchecked();
                Ok(())
            }
        }
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            held.release_now();
        }
    }
}
