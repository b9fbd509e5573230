//! `show`: read a saved plan for its views, and check it against `--policy` directories (no
//! lock, no state, no network).

use std::path::{Path, PathBuf};

use crate::plan::saved::SavedPlan;
use crate::policy::Report;

/// A saved plan and what the policies said of it.
pub struct Shown {
    pub saved: SavedPlan,
    /// `None`: no policy directory given.
    pub policy: Option<Report>,
}

/// The saved plan at `path`, checked against the policies in `policy_dirs`.
pub fn show(path: &Path, policy_dirs: &[PathBuf]) -> miette::Result<Shown> {
    let saved = SavedPlan::read(path)?;
    let policies = super::policy::load(policy_dirs)?;
    let policy = super::policy::check(policies.as_ref(), &saved.plan)?;
    Ok(Shown { saved, policy })
}
