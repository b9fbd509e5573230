//! `import --compartment OCID [--region R] [--tag K=V]… [--name REGEX] [--out FILE]`: adopt every
//! matching instance and custom image of a compartment in one go ([`import_compartment`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use miette::miette;

use crate::manifest::edit::ManifestEdit;
use crate::oci::compute::{ListImages, ListInstances};
use crate::oci::models::VnicAttachment;
use crate::oci::Client;
use crate::plan::from_manifest::ADDRESS_TAG;
use crate::plan::import::{instance_inputs, instance_table};
use crate::plan::import_image::{image_inputs, image_table};
use crate::state::{self, LockInfo, ResourceState};

use super::super::Session;

/// What `kiln import --compartment` adopts.
#[derive(Clone, Debug)]
pub struct BulkRequest {
    pub compartment: String,
    /// Region id or code (`None`: the one a table without `region` gets — `[defaults]`, else
    /// the provider's).
    pub region: Option<String>,
    /// Freeform tags that must all be on a resource, with these values.
    pub tags: Vec<(String, String)>,
    /// A pattern the display name must match (anywhere in it; anchor with `^…$`).
    pub name: Option<regex::Regex>,
    /// Write the tables to this new file instead of kiln.toml, and record nothing in the state.
    pub out: Option<PathBuf>,
    /// Only show the tables; write nothing.
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

/// One resource a bulk import adopted (or would adopt).
#[derive(Clone, Debug, PartialEq)]
pub struct Adopted {
    pub address: String,
    pub ocid: String,
    pub display_name: String,
    /// Its table was in kiln.toml already (written by an import that stopped before recording
    /// it, recognised by its comment): recorded only.
    pub table_existed: bool,
}

/// A resource a bulk import left alone, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Left {
    pub ocid: String,
    pub display_name: String,
    /// The address it is managed as (already managed), or `None` (skipped).
    pub managed_as: Option<String>,
    pub why: String,
}

/// Where a bulk import's tables went.
#[derive(Clone, Debug, PartialEq)]
pub enum Written {
    /// `--dry-run`: nowhere.
    Nothing,
    /// Appended to kiln.toml, and recorded in the state.
    Manifest { path: PathBuf, state: String },
    /// `--out FILE`: the tables only; nothing recorded in the state.
    Out(PathBuf),
}

/// What `kiln import --compartment` did.
pub struct BulkImported {
    pub region: String,
    /// Instances first, then images, each in address order.
    pub adopted: Vec<Adopted>,
    /// Already managed first, then skipped.
    pub left: Vec<Left>,
    /// The new tables (as written, or to write).
    pub tables: String,
    pub written: Written,
}

/// One resource read for adoption: its table, the record to save, its display name.
struct Candidate {
    kind: &'static str,
    ocid: String,
    display_name: String,
    table: toml_edit::Table,
    record: ResourceState,
    /// Instances: the image it boots from (a reference when that image is managed).
    source_image: Option<String>,
    /// Its `kiln-address` tag (made by kiln, under that address).
    address_tag: Option<String>,
}

/// `kiln import --compartment`: list, check everything, then write the tables (kiln.toml first,
/// then one compare-and-swap save of the state, under its lock — the single import's order: a
/// kiln stopped between them leaves tables the state does not record yet, which the next plan
/// shows as creates and a second run of the same import recognises by their comment and records;
/// never a record without its table, which a plan would destroy).
pub async fn import_compartment(s: &Session, req: &BulkRequest) -> miette::Result<BulkImported> {
    let edit = ManifestEdit::open(&s.manifest.dir)?;
    let implicit = implicit_region(s, &edit);
    let region = match &req.region {
        Some(r) => crate::region::resolve(r)
            .map_err(|e| {
                miette!(
                    help = "a region id such as `us-ashburn-1` or a code such as `iad`",
                    "{e}"
                )
            })?
            .to_string(),
        None => implicit.clone(),
    };
    let client = s.clients.for_region(Some(&region))?;
    // Held from before the state is read until it is saved (not for a dry run or `--out`,
    // which write no state).
    let lock = match req.dry_run || req.out.is_some() {
        true => None,
        false => Some(
            s.store
                .lock(LockInfo::new("import"), req.lock_timeout)
                .await?,
        ),
    };
    let mut st = s.store.load().await?.unwrap_or_default();
    let managed: HashMap<&str, &str> = st
        .resources
        .iter()
        .filter_map(|(a, r)| r.id.as_deref().map(|id| (id, a.as_str())))
        .collect();
    let mut left = Vec::new();
    let wanted = |name: &str, tags: &std::collections::BTreeMap<String, String>| {
        req.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
            && req.name.as_ref().is_none_or(|re| re.is_match(name))
    };

    // Custom images: ListImages returns the platform images too, which have no compartment
    // (Oracle's API reference, ListImages: "including platform images and custom images";
    // "Platform images do not show a compartment OCID"). They are not adopted.
    let mut images: Vec<_> = client
        .list_images(&ListImages {
            compartment_id: req.compartment.clone(),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|i| i.compartment_id.as_deref() == Some(req.compartment.as_str()))
        .filter(|i| !matches!(i.lifecycle_state.as_str(), "DELETED" | "DELETING"))
        .filter(|i| wanted(i.display_name.as_deref().unwrap_or(""), &i.freeform_tags))
        .collect();
    images.sort_by(|a, b| {
        (&a.display_name, &a.time_created, &a.id).cmp(&(&b.display_name, &b.time_created, &b.id))
    });
    let mut instances: Vec<_> = client
        .list_instances(&ListInstances {
            compartment_id: req.compartment.clone(),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|i| !matches!(i.lifecycle_state.as_str(), "TERMINATED" | "TERMINATING"))
        .filter(|i| wanted(i.display_name.as_deref().unwrap_or(""), &i.freeform_tags))
        .collect();
    instances.sort_by(|a, b| {
        (&a.display_name, &a.time_created, &a.id).cmp(&(&b.display_name, &b.time_created, &b.id))
    });

    let mut leave = |ocid: &str, name: Option<&String>, managed_as: Option<&str>, why: String| {
        left.push(Left {
            ocid: ocid.to_string(),
            display_name: name.cloned().unwrap_or_default(),
            managed_as: managed_as.map(str::to_string),
            why,
        })
    };
    let mut image_ids = Vec::new();
    for i in &images {
        if let Some(a) = managed.get(i.id.as_str()) {
            leave(
                &i.id,
                i.display_name.as_ref(),
                Some(a),
                "already managed".into(),
            );
        } else if i.lifecycle_state != "AVAILABLE" {
            leave(
                &i.id,
                i.display_name.as_ref(),
                None,
                format!(
                    "it is {}: import it once it is AVAILABLE",
                    i.lifecycle_state
                ),
            );
        } else {
            image_ids.push(i.id.clone());
        }
    }
    // The primary VNIC of every instance, from one listing of the compartment's attachments.
    let attachments = match instances.is_empty() {
        true => Vec::new(),
        false => client.list_vnic_attachments(&req.compartment, None).await?,
    };
    let mut instance_ids = Vec::new();
    for i in &instances {
        let primary = attachments
            .iter()
            .filter(|a| a.instance_id == i.id && a.lifecycle_state == "ATTACHED")
            .min_by_key(|a| a.nic_index.unwrap_or(0));
        if let Some(a) = managed.get(i.id.as_str()) {
            leave(
                &i.id,
                i.display_name.as_ref(),
                Some(a),
                "already managed".into(),
            );
        } else if !matches!(i.lifecycle_state.as_str(), "RUNNING" | "STOPPED") {
            leave(
                &i.id,
                i.display_name.as_ref(),
                None,
                format!(
                    "it is {}: import it once it is RUNNING or STOPPED",
                    i.lifecycle_state
                ),
            );
        } else if primary.is_none() {
            leave(
                &i.id,
                i.display_name.as_ref(),
                None,
                "it has no attached VNIC".into(),
            );
        } else {
            instance_ids.push((i.id.clone(), primary.cloned()));
        }
    }
    left.sort_by_key(|l| l.managed_as.is_none());

    // Every read before anything is written: a failed one leaves everything as it was.
    let n = s.parallelism.max(1);
    let image_reads: Vec<Candidate> = stream::iter(image_ids)
        .map(|id| async move { read_image(client, id).await })
        .buffered(n)
        .try_collect()
        .await?;
    let instance_reads: Vec<Candidate> = stream::iter(instance_ids)
        .map(|(id, primary)| async move { read_instance(client, id, primary).await })
        .buffered(n)
        .try_collect()
        .await?;

    // Addresses: from display names, never one the manifest or the state has; tables this
    // import wrote before (their comment) keep theirs.
    let mut earlier: HashMap<String, String> = HashMap::new();
    let mut taken: HashSet<String> = st.resources.keys().cloned().collect();
    for kind in ["instance", "image"] {
        for (name, ocid) in edit.adopted(kind) {
            earlier.insert(ocid, format!("{kind}.{name}"));
        }
        taken.extend(edit.names(kind).into_iter().map(|n| format!("{kind}.{n}")));
    }
    taken.extend(s.manifest.resources().map(|a| a.to_string()));
    let mut adopted = Vec::new();
    let mut image_address: HashMap<String, String> = st
        .resources
        .iter()
        .filter(|(_, r)| r.kind == state::ResourceKind::Image)
        .filter_map(|(a, r)| Some((r.id.clone()?, a.clone())))
        .collect();
    let mut out_edit = match &req.out {
        Some(path) => ManifestEdit::empty(path.clone()),
        None => ManifestEdit::open(&s.manifest.dir)?,
    };
    let mut only_new = ManifestEdit::empty(PathBuf::new());
    for mut c in image_reads.into_iter().chain(instance_reads) {
        let (address, existed) = match earlier.get(&c.ocid) {
            Some(a) if req.out.is_none() && !st.resources.contains_key(a) => (a.clone(), true),
            _ => (unique_address(c.kind, &c.display_name, &mut taken), false),
        };
        let name = address
            .split_once('.')
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        if c.kind == "image" {
            image_address.insert(c.ocid.clone(), address.clone());
        }
        if let Some(img) = c.source_image.as_ref().and_then(|i| image_address.get(i)) {
            set_source_image(&mut c.table, img);
        }
        if region != implicit {
            c.table.insert("region", toml_edit::value(region.as_str()));
        }
        // Made by kiln under another address: adopted on purpose, like the single import.
        c.record.renamed_from = c.address_tag.take().filter(|t| *t != address);
        if !existed {
            out_edit.add_adopted(c.kind, &name, c.table.clone(), &c.ocid)?;
            only_new.add_adopted(c.kind, &name, c.table, &c.ocid)?;
        }
        st.resources.insert(address.clone(), c.record);
        adopted.push(Adopted {
            address,
            ocid: c.ocid,
            display_name: c.display_name,
            table_existed: existed,
        });
    }
    let tables = only_new.to_text();
    let written = if req.dry_run {
        Written::Nothing
    } else if let Some(path) = &req.out {
        if path.exists() {
            return Err(miette!(
                help = "choose a new file, or leave out `--out` to append the tables to kiln.toml",
                "`{}` exists: `--out` writes a new file",
                path.display()
            ));
        }
        out_edit.save()?;
        Written::Out(path.clone())
    } else if adopted.is_empty() {
        if let Some(lock) = lock {
            lock.release().await?;
        }
        Written::Nothing
    } else {
        let lock = lock.expect("locked unless a dry run or `--out`");
        // kiln.toml first: a record without its table would be destroyed by the next plan.
        out_edit.save()?;
        s.store.save(&lock, &mut st).await?;
        lock.release().await?;
        Written::Manifest {
            path: s.manifest.dir.join("kiln.toml"),
            state: s.store.describe(),
        }
    };
    Ok(BulkImported {
        region,
        adopted,
        left,
        tables,
        written,
    })
}

/// The region a table without `region` gets: `[defaults] region`, else the provider's (as the
/// planner reads it).
fn implicit_region(s: &Session, edit: &ManifestEdit) -> String {
    edit.str_at("defaults", "region")
        .and_then(|r| crate::region::resolve(&r).ok())
        .map(str::to_string)
        .or_else(|| s.manifest.provider.region.clone())
        .unwrap_or_else(|| s.clients.default_region().to_string())
}

/// A custom image's table and record, read with GetImage (its etag).
async fn read_image(client: &Client, id: String) -> Result<Candidate, crate::oci::OciError> {
    let live = client.get_image(&id).await?;
    let mut r = ResourceState::new(state::ResourceKind::Image);
    r.id = Some(id.clone());
    r.region = crate::region::from_ocid(&id).map(str::to_string);
    r.compartment = live.body.compartment_id.clone();
    r.etag = live.etag.clone();
    r.attributes = state::RawJson::of(&live.body);
    r.inputs = std::sync::Arc::new(image_inputs(&id));
    r.updated_at = Utc::now();
    Ok(Candidate {
        kind: "image",
        display_name: live.body.display_name.clone().unwrap_or_default(),
        table: image_table(&live.body),
        address_tag: live.body.freeform_tags.get(ADDRESS_TAG).cloned(),
        ocid: id,
        record: r,
        source_image: None,
    })
}

/// An instance's table and record, read with GetInstance (its etag) and its primary VNIC's
/// GetVnic (the VNIC's settings are not the instance's), as the single import reads them.
async fn read_instance(
    client: &Client,
    id: String,
    primary: Option<VnicAttachment>,
) -> Result<Candidate, crate::oci::OciError> {
    let live = client.get_instance(&id).await?;
    let vnic = match primary.as_ref().and_then(|p| p.vnic_id.as_deref()) {
        Some(v) => client.get_vnic(v).await?.body,
        None => crate::oci::models::Vnic {
            subnet_id: primary.map(|p| p.subnet_id).unwrap_or_default(),
            ..Default::default()
        },
    };
    let volume = super::boot_volume(client, &live.body).await?;
    let (now, volume_inputs) = crate::plan::import::with_boot_volume(&live.body, volume.as_ref());
    let mut table = instance_table(&now, &vnic);
    // kiln manages its address tag, the manifest does not.
    if let Some(tags) = table
        .get_mut("freeform_tags")
        .and_then(|t| t.as_inline_table_mut())
    {
        tags.remove(ADDRESS_TAG);
        if tags.is_empty() {
            table.remove("freeform_tags");
        }
    }
    let source_image = live
        .body
        .extra
        .get("sourceDetails")
        .and_then(|s| s.get("imageId"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let mut r = ResourceState::new(state::ResourceKind::Instance);
    r.id = Some(id.clone());
    r.region = crate::region::from_ocid(&id).map(str::to_string);
    r.compartment = Some(live.body.compartment_id.clone());
    r.etag = live.etag.clone();
    r.attributes = state::RawJson::of(&live.body);
    let mut inputs = instance_inputs(&vnic);
    inputs.extend(volume_inputs);
    r.inputs = std::sync::Arc::new(inputs);
    r.updated_at = Utc::now();
    Ok(Candidate {
        kind: "instance",
        display_name: live.body.display_name.clone().unwrap_or_default(),
        address_tag: live.body.freeform_tags.get(ADDRESS_TAG).cloned(),
        table,
        ocid: id,
        record: r,
        source_image,
    })
}

/// `kind.NAME` from a display name: the characters a table name cannot hold become `-` (runs of
/// them one), none at either end, `kind` when nothing is left; `-2`, `-3`, … after a name
/// `taken` has (which then has this one too).
fn unique_address(kind: &str, display_name: &str, taken: &mut HashSet<String>) -> String {
    let mut base = String::new();
    for c in display_name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            base.push(c);
        } else if !base.ends_with('-') {
            base.push('-');
        }
    }
    let base = match base.trim_matches('-') {
        "" => kind.to_string(),
        b => b.to_string(),
    };
    let mut address = format!("{kind}.{base}");
    let mut n = 2;
    while taken.contains(&address) {
        address = format!("{kind}.{base}-{n}");
        n += 1;
    }
    taken.insert(address.clone());
    address
}

/// `source = { image = "image.NAME" }` for an instance that boots from a managed image.
fn set_source_image(table: &mut toml_edit::Table, image: &str) {
    if let Some(v) = table
        .get_mut("source")
        .and_then(|s| s.as_inline_table_mut())
        .and_then(|s| s.get_mut("image"))
    {
        *v = image.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_display_names_are_valid_and_unique() {
        let mut taken: HashSet<String> = ["instance.web".to_string()].into();
        let mut a = |k, n| unique_address(k, n, &mut taken);
        assert_eq!(a("instance", "web"), "instance.web-2");
        assert_eq!(a("instance", "web"), "instance.web-3");
        assert_eq!(a("instance", "Web Server #1"), "instance.Web-Server-1");
        assert_eq!(a("instance", "  "), "instance.instance");
        assert_eq!(a("image", "web"), "image.web");
        assert_eq!(a("image", "ol9/golden.2024"), "image.ol9-golden-2024");
        for t in &taken {
            let name = t.split_once('.').unwrap().1;
            assert!(crate::manifest::valid_name(name), "{t}");
        }
    }
}
