//! `show`: read a saved plan for its views (no lock, no state, no network).

use std::path::Path;

use crate::plan::saved::SavedPlan;

/// The saved plan at `path`.
pub fn show(path: &Path) -> miette::Result<SavedPlan> {
    Ok(SavedPlan::read(path)?)
}
