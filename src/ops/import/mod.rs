//! `import ADDR OCID`: adopt an existing instance — its `[instance.NAME]` table written into
//! kiln.toml (comments and layout kept) and its record into the state, so the next plan is
//! empty. Both are written only after every check passed, the state under its lock.
//!
//! `import --compartment OCID`: every instance and custom image of a compartment at once, in
//! [`bulk`].

mod bulk;

pub use bulk::{import_compartment, BulkImported, BulkRequest, Written};

use std::time::Duration;

use chrono::Utc;
use miette::miette;

use crate::manifest::edit::ManifestEdit;
use crate::manifest::{Address, ResourceKind};
use crate::plan::import::{instance_inputs, instance_table};
use crate::state::{self, LockInfo, ResourceState};

use super::Session;

/// What to import.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    pub address: String,
    pub ocid: String,
    /// Only show the table; write nothing.
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

/// What an import did.
pub struct Imported {
    pub address: Address,
    /// The manifest as it is (`dry_run`) or was written, with the new table.
    pub manifest_text: String,
    /// The instance is a member of a fleet the manifest declares already (no table added).
    pub member: bool,
    /// Whether anything was written (not for `dry_run`).
    pub written: bool,
}

/// `kiln import`.
pub async fn import(s: &Session, req: &ImportRequest) -> miette::Result<Imported> {
    let address: Address = req.address.parse().map_err(|e: String| {
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
    let ocid = &req.ocid;
    let client = s.clients.for_id(ocid)?;
    let live = client.get_instance(ocid).await?;
    if matches!(
        live.body.lifecycle_state.as_str(),
        "TERMINATED" | "TERMINATING"
    ) {
        return Err(miette!(
            "`{ocid}` is {}: there is nothing to import",
            live.body.lifecycle_state
        ));
    }
    let attachments = client
        .list_vnic_attachments(&live.body.compartment_id, Some(ocid))
        .await?;
    let primary = attachments
        .iter()
        .filter(|a| a.lifecycle_state == "ATTACHED")
        .min_by_key(|a| a.nic_index.unwrap_or(0))
        .ok_or_else(|| miette!("`{ocid}` has no attached VNIC"))?;
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
    // The primary VNIC's settings (NSGs, hostname label, private IP, source/destination check)
    // are the VNIC's: GetInstance does not return them.
    let vnic = match &primary.vnic_id {
        Some(v) => client.get_vnic(v).await?.body,
        None => crate::oci::models::Vnic {
            subnet_id: primary.subnet_id.clone(),
            ..Default::default()
        },
    };
    let volume = boot_volume(client, &live.body).await?;
    let (now, volume_inputs) = crate::plan::import::with_boot_volume(&live.body, volume.as_ref());
    let table = instance_table(&now, &vnic);
    let mut edit = ManifestEdit::open(&s.manifest.dir)?;
    if !member {
        edit.add_resource("instance", &address.name, table)?;
    }
    let manifest_text = edit.to_text();
    if req.dry_run {
        return Ok(Imported {
            address,
            manifest_text,
            member,
            written: false,
        });
    }
    let lock = s
        .store
        .lock(LockInfo::new("import"), req.lock_timeout)
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
        .find(|(_, r)| r.id.as_deref() == Some(ocid.as_str()))
    {
        return Err(miette!(
            "`{ocid}` is already managed as `{other}`; nothing was changed"
        ));
    }
    if !member {
        edit.save()?;
    }
    let mut r = ResourceState::new(state::ResourceKind::Instance);
    r.id = Some(ocid.clone());
    r.region = crate::region::from_ocid(ocid).map(str::to_string);
    r.compartment = Some(live.body.compartment_id.clone());
    r.etag = live.etag.clone();
    r.attributes = state::RawJson::of(&live.body);
    let mut inputs = instance_inputs(&vnic);
    inputs.extend(volume_inputs);
    r.inputs = std::sync::Arc::new(inputs);
    // Made by kiln under another address (its `kiln-address` tag): adopted on purpose, like a
    // rename — the next plan retags it, unless that address is still claimed.
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
    Ok(Imported {
        address,
        manifest_text,
        member,
        written: true,
    })
}

/// The boot volume attached to `live` (ListBootVolumeAttachments, GetBootVolume): its performance
/// and Vault key now ([`crate::plan::import::with_boot_volume`]); `None` when none is attached.
pub(super) async fn boot_volume(
    client: &crate::oci::Client,
    live: &crate::oci::models::Instance,
) -> Result<Option<crate::oci::block::BootVolume>, crate::oci::OciError> {
    let attached = client
        .list_boot_volume_attachments(&live.availability_domain, &live.compartment_id, &live.id)
        .await?
        .into_iter()
        .find(|a| a.lifecycle_state == "ATTACHED");
    match attached {
        Some(a) => Ok(Some(client.get_boot_volume(&a.boot_volume_id).await?.body)),
        None => Ok(None),
    }
}
