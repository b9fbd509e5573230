//! `kiln import ADDR OCID [DIR]`: adopt an existing instance — write its `[instance.NAME]` table
//! into kiln.toml (comments and layout kept) and record it in state, so the next plan is empty.

use std::process::ExitCode;

use chrono::Utc;
use miette::{miette, IntoDiagnostic};

use crate::manifest::edit::ManifestEdit;
use crate::manifest::{Address, ResourceKind};
use crate::plan::import::{instance_inputs, instance_table};
use crate::state::{self, LockInfo, ResourceState};

use super::args::{Common, Dir, LockWait, Verbosity};
use super::out;
use super::session;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to give it, e.g. `instance.legacy`.
    pub address: String,
    /// The instance's OCID.
    pub ocid: String,
    #[command(flatten)]
    pub dir: Dir,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub lock: LockWait,
    #[command(flatten)]
    pub verbosity: Verbosity,
    /// Print the table instead of writing kiln.toml and the state.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let address: Address = args.address.parse().map_err(|e: String| {
        miette!(
            help = "e.g. `kiln import instance.legacy ocid1.instance…`",
            "{e}"
        )
    })?;
    if address.kind != ResourceKind::Instance {
        return Err(miette!(
            help = "import the instance, then declare the image with `from_instance`",
            "only instances can be imported so far"
        ));
    }
    let dir = args.dir.checked()?;
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async {
        let s = session::open(&dir, &args.common, None).await?;
        let client = s.clients.for_id(&args.ocid)?;
        let live = client.get_instance(&args.ocid).await?;
        if matches!(
            live.body.lifecycle_state.as_str(),
            "TERMINATED" | "TERMINATING"
        ) {
            return Err(miette!(
                "`{}` is {}: there is nothing to import",
                args.ocid,
                live.body.lifecycle_state
            ));
        }
        let attachments = client
            .list_vnic_attachments(&live.body.compartment_id, Some(&args.ocid))
            .await?;
        let primary = attachments
            .iter()
            .filter(|a| a.lifecycle_state == "ATTACHED")
            .min_by_key(|a| a.nic_index.unwrap_or(0))
            .ok_or_else(|| miette!("`{}` has no attached VNIC", args.ocid))?;
        // A fleet member is declared by its fleet's table: the manifest must have it already.
        let member = address.is_member();
        if member && !s.manifest.instances.contains_key(&address.name) {
            return Err(miette!(
                help = format!(
                    "declare `[instance.{}]` with a `count` or `for_each` that makes `{address}`, then import",
                    address.fleet()
                ),
                "`{address}` is not a member of a fleet in kiln.toml"
            ));
        }
        let table = instance_table(&live.body, &primary.subnet_id);
        let mut edit = ManifestEdit::open(&dir)?;
        if !member {
            edit.add_resource("instance", &address.name, table)?;
        }
        if args.dry_run {
            out::println(&edit.to_text())?;
            return Ok(ExitCode::SUCCESS);
        }
        let lock = s
            .store
            .lock(LockInfo::new("import"), args.lock.lock_timeout)
            .await?;
        let mut st = s.store.load().await?.unwrap_or_default();
        if st.resources.contains_key(&address.to_string()) {
            return Err(miette!(
                help = "see `kiln state list`",
                "`{address}` is already in the state; nothing was changed"
            ));
        }
        if let Some((other, _)) = st
            .resources
            .iter()
            .find(|(_, r)| r.id.as_deref() == Some(args.ocid.as_str()))
        {
            return Err(miette!(
                "`{}` is already managed as `{other}`; nothing was changed",
                args.ocid
            ));
        }
        if !member {
            edit.save()?;
        }
        let mut r = ResourceState::new(state::ResourceKind::Instance);
        r.id = Some(args.ocid.clone());
        r.region = crate::region::from_ocid(&args.ocid).map(str::to_string);
        r.compartment = Some(live.body.compartment_id.clone());
        r.etag = live.etag.clone();
        r.attributes = state::RawJson::of(&live.body);
        r.inputs = std::sync::Arc::new(instance_inputs(&primary.subnet_id));
        // Made by kiln under another address (its `kiln-address` tag): adopted on purpose, like
        // a rename — the next plan retags it, unless that address is still claimed.
        r.renamed_from = live
            .body
            .freeform_tags
            .get(crate::plan::from_manifest::ADDRESS_TAG)
            .filter(|t| **t != address.to_string())
            .cloned();
        r.updated_at = Utc::now();
        st.resources.insert(address.to_string(), r);
        s.store.save(&lock, &mut st).await?;
        lock.release().await?;
        if member {
            out::println(&format!(
                "Imported {} as `{address}` (declared by `[instance.{}]`): recorded it in {}",
                args.ocid,
                address.fleet(),
                s.store.describe()
            ))?;
        } else {
            out::println(&format!(
                "Imported {} as `{address}`: added `[{address}]` to {} and recorded it in {}",
                args.ocid,
                dir.join("kiln.toml").display(),
                s.store.describe()
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
