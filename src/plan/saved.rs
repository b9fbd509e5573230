//! Saved plans (`kiln plan --out FILE`, `kiln apply FILE`): the plan exactly as shown, with the
//! state lineage and serial it was made from and every etag it relied on. Applying it refuses
//! when the state moved since (another apply ran), naming both.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Plan;

/// What a saved plan file holds besides the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Always `"kiln-plan"`: tells a plan file from a manifest directory or a state file.
    pub kind: String,
    /// The manifest directory the plan was made for, absolute, so `kiln apply /path/to/x.plan`
    /// works from any directory.
    pub manifest_dir: PathBuf,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedPlanError {
    #[error("cannot read the saved plan `{path}`")]
    #[diagnostic(code(kiln::plan::saved_unreadable))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a kiln plan file: {reason}")]
    #[diagnostic(
        code(kiln::plan::saved_invalid),
        help("make one with `kiln plan --out FILE`")
    )]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the plan to `{path}`")]
    #[diagnostic(code(kiln::plan::saved_unwritable))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state changed since this plan was made: the plan was made from lineage {plan_lineage} serial {plan_serial}, the state is now lineage {state_lineage} serial {state_serial}")]
    #[diagnostic(
        code(kiln::plan::stale),
        help("run `kiln plan --out FILE` again and apply the new plan")
    )]
    Stale {
        plan_lineage: String,
        plan_serial: u64,
        state_lineage: String,
        state_serial: u64,
    },
}

impl SavedPlan {
    /// The plan of the manifest in `manifest_dir` (recorded absolute; as given if it cannot be
    /// resolved).
    pub fn new(manifest_dir: &Path, plan: Plan) -> SavedPlan {
        SavedPlan {
            kind: "kiln-plan".into(),
            manifest_dir: std::fs::canonicalize(manifest_dir)
                .unwrap_or_else(|_| manifest_dir.to_path_buf()),
            plan,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let text = serde_json::to_string_pretty(self).expect("a plan always serialises");
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.as_file().sync_all()?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|source| SavedPlanError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| SavedPlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let saved: SavedPlan =
            serde_json::from_str(&text).map_err(|e| SavedPlanError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if saved.kind != "kiln-plan" || saved.plan.format_version != super::FORMAT_VERSION {
            return Err(SavedPlanError::Invalid {
                path: path.to_path_buf(),
                reason: format!(
                    "kind `{}`, format version `{}`",
                    saved.kind, saved.plan.format_version
                ),
            });
        }
        Ok(saved)
    }

    /// Refuse when the state is not the one the plan was made from.
    pub fn check_state(&self, lineage: Option<&str>, serial: u64) -> Result<(), SavedPlanError> {
        let same =
            self.plan.state_lineage.as_deref() == lineage && self.plan.state_serial == serial;
        if same {
            return Ok(());
        }
        Err(SavedPlanError::Stale {
            plan_lineage: self
                .plan
                .state_lineage
                .clone()
                .unwrap_or_else(|| "(none)".into()),
            plan_serial: self.plan.state_serial,
            state_lineage: lineage.unwrap_or("(none)").to_string(),
            state_serial: serial,
        })
    }
}
