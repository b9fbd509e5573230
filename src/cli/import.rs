//! `kiln import ADDR OCID [DIR]`: adopt an existing instance — write its `[instance.NAME]` table
//! into kiln.toml (comments and layout kept) and record it in state, so the next plan is empty.
//! `kiln import --compartment OCID [DIR]`: the same for every matching instance and custom image
//! of a compartment at once (`ops::import::import_compartment`).

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::ops::{
    self,
    import::{BulkImported, BulkRequest, ImportRequest, Written},
};

use super::args::{Common, Dir, LockWait, Verbosity};
use super::out;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to give it, e.g. `instance.legacy` (with `--compartment`: the DIR)
    #[arg(required_unless_present = "compartment")]
    pub address: Option<String>,
    /// The instance's OCID
    #[arg(
        required_unless_present = "compartment",
        conflicts_with = "compartment"
    )]
    pub ocid: Option<String>,
    #[command(flatten)]
    pub dir: Dir,
    /// Adopt every instance and custom image of this compartment (not those the state manages)
    #[arg(long, value_name = "OCID")]
    pub compartment: Option<String>,
    /// With `--compartment`: the region to list, else the one a table without `region` gets
    #[arg(long, value_name = "REGION", requires = "compartment")]
    pub region: Option<String>,
    /// With `--compartment`: only resources with this freeform tag (repeatable: all must match)
    #[arg(long = "tag", value_name = "KEY=VALUE", requires = "compartment", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// With `--compartment`: only resources whose display name matches this regular expression
    #[arg(long, value_name = "REGEX", requires = "compartment")]
    pub name: Option<regex::Regex>,
    /// With `--compartment`: write the tables to this new file instead of kiln.toml, and record
    /// nothing in the state
    #[arg(long, value_name = "FILE", requires = "compartment")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub lock: LockWait,
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// Print the table(s) instead of writing them and the state
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    // `kiln import --compartment X DIR`: the lone positional is the DIR.
    let dir = match (&args.compartment, &args.address) {
        (Some(_), Some(d)) if args.dir.path() == std::path::Path::new(".") => {
            Dir::new(PathBuf::from(d)).checked()?
        }
        (Some(_), Some(_)) => {
            return Err(miette::miette!(
                help = "`kiln import --compartment OCID [DIR]`, or `kiln import ADDR OCID [DIR]`",
                "`--compartment` takes no address"
            ))
        }
        _ => args.dir.checked()?,
    };
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let s = super::open(&dir, &args.common, None).await?;
        if let Some(compartment) = &args.compartment {
            let req = BulkRequest {
                compartment: compartment.clone(),
                region: args.region.clone(),
                tags: args.tags.clone(),
                name: args.name.clone(),
                out: args.out.clone(),
                dry_run: args.dry_run,
                lock_timeout: args.lock.lock_timeout,
            };
            let done = ops::import::import_compartment(&s, &req).await?;
            out::print(&bulk_report(compartment, &done))?;
            return Ok(ExitCode::SUCCESS);
        }
        let (Some(address), Some(ocid)) = (&args.address, &args.ocid) else {
            unreachable!("clap requires ADDRESS and OCID without --compartment");
        };
        let req = ImportRequest {
            address: address.clone(),
            ocid: ocid.clone(),
            dry_run: args.dry_run,
            lock_timeout: args.lock.lock_timeout,
        };
        let done = ops::import::import(&s, &req).await?;
        let address = &done.address;
        if !done.written {
            out::println(&done.manifest_text)?;
        } else if done.member {
            out::println(&format!(
                "Imported {ocid} as `{address}` (declared by `[instance.{}]`): recorded it in {}",
                address.fleet(),
                s.store.describe()
            ))?;
        } else {
            out::println(&format!(
                "Imported {ocid} as `{address}`: added `[{address}]` to {} and recorded it in {}",
                dir.join("kiln.toml").display(),
                s.store.describe()
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What a bulk import says: the tables (a dry run) or where they went, what it adopted, what
/// it left and why.
fn bulk_report(compartment: &str, done: &BulkImported) -> String {
    let mut t = String::new();
    if done.written == Written::Nothing && !done.tables.is_empty() {
        t.push_str(&done.tables);
        t.push('\n');
    }
    let n = done.adopted.len();
    let what = if n == 1 { "resource" } else { "resources" };
    t.push_str(&match &done.written {
        Written::Nothing if n > 0 => format!(
            "Dry run: would import {n} {what} of {compartment} in {} (nothing written)\n",
            done.region
        ),
        Written::Nothing => format!(
            "Nothing to import from {compartment} in {}\n",
            done.region
        ),
        Written::Manifest { path, state } => format!(
            "Imported {n} {what} of {compartment} in {}: tables added to {} and recorded in {state}\n",
            done.region,
            path.display()
        ),
        Written::Out(path) => format!(
            "Wrote {n} {what} of {compartment} in {} to {}: nothing was recorded in the state (add the tables to kiln.toml and run `kiln import` again to record them)\n",
            done.region,
            path.display()
        ),
    });
    for a in &done.adopted {
        let note = if a.table_existed {
            " (its table was in kiln.toml already)"
        } else {
            ""
        };
        t.push_str(&format!(
            "  + {:<28} {} \"{}\"{note}\n",
            a.address, a.ocid, a.display_name
        ));
    }
    for l in &done.left {
        t.push_str(&match &l.managed_as {
            Some(a) => format!(
                "  = {:<28} {} \"{}\": already managed\n",
                a, l.ocid, l.display_name
            ),
            None => format!(
                "  ! {:<28} {} \"{}\": skipped, {}\n",
                "", l.ocid, l.display_name, l.why
            ),
        });
    }
    t
}
