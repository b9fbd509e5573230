//! The policy check `plan` and `apply` share: the plan in Terraform's JSON shape
//! ([`crate::plan::terraform`]) evaluated against the Rego policies of `--policy` and the
//! manifest's `[policy] dirs` ([`crate::policy`]). A denial stops an apply before anything asks
//! or runs; a saved plan is checked again when it is applied.

use std::path::PathBuf;

use crate::plan::{terraform, Plan};
use crate::policy::{Policies, Report};

use super::Session;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the policies denied this plan ({count} denied): {first}")]
#[diagnostic(
    code(kiln::policy::denied),
    help("change the manifest (or the policy) and plan again; the denials are listed above")
)]
pub struct Denied {
    pub count: usize,
    /// The first denial, `FILE: message`.
    pub first: String,
}

/// The directories to check a plan of `s` against: `extra` (`--policy`), then the manifest's.
pub fn dirs(s: &Session, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut d: Vec<PathBuf> = extra.to_vec();
    for m in &s.manifest.policy_dirs {
        if !d.contains(m) {
            d.push(m.clone());
        }
    }
    d
}

/// Load the policies first (a syntax error is reported before anything is read or locked).
pub fn load(dirs: &[PathBuf]) -> miette::Result<Option<Policies>> {
    if dirs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Policies::load(dirs)?))
}

/// Evaluate `plan` against the loaded policies (`None`: no policy, no report).
pub fn check(policies: Option<&Policies>, plan: &Plan) -> miette::Result<Option<Report>> {
    let Some(p) = policies else { return Ok(None) };
    Ok(Some(p.evaluate(&terraform::document(plan))?))
}

/// `Err(Denied)` when the report has a denial.
pub fn enforce(report: Option<&Report>) -> Result<(), Denied> {
    let Some(r) = report else { return Ok(()) };
    let denied: Vec<_> = r.denied().collect();
    match denied.first() {
        None => Ok(()),
        Some(f) => Err(Denied {
            count: denied.len(),
            first: format!("{}: {}", f.file.display(), f.msg),
        }),
    }
}
