//! An instance's boot volume changed in place: its performance (UpdateBootVolume `vpusPerGB`) and
//! its Vault key (UpdateBootVolumeKmsKey), as an update planned them
//! ([`crate::plan::diff::BOOT_VOLUME_UPDATE`], [`crate::plan::from_manifest::BOOT_VOLUME_UPDATABLE`]).
//!
//! The volume is found with ListBootVolumeAttachments of the instance (its availability domain and
//! compartment, from the state's record) and read with GetBootVolume; each call carries the
//! If-Match of the version that read saw, and the volume (PROVISIONING while OCI applies a change)
//! is waited for until AVAILABLE before the next call and at the end. A volume that already has a
//! value (a lost answer, a retried apply, a boot volume replacement that set the key) is sent
//! nothing; a refusal is answered by reading the volume again: done if it has the value (the first
//! attempt landed and its answer was lost), else the error — someone else's change is never
//! overwritten. The values are then recorded as the instance's inputs (GetInstance keeps the
//! launch-time `sourceDetails`; plans compare with these).

use chrono::Utc;
use serde_json::Value;

use crate::oci::block::BootVolume;
use crate::oci::client::MutationOptions;
use crate::oci::Response;
use crate::plan::from_manifest::BOOT_VOLUME_UPDATABLE;
use crate::plan::Change;

use super::ctx::{label, Ctx};
use super::execute::NodeError;

/// The volume's current value of an UpdateBootVolume / UpdateBootVolumeKmsKey field.
fn value_of(v: &BootVolume, oci: &str) -> Value {
    match oci {
        "vpusPerGB" => v.vpus_per_gb.map(Value::from).unwrap_or(Value::Null),
        _ => v
            .kms_key_id
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null),
    }
}

fn has(v: &BootVolume, oci: &str, want: &Value) -> bool {
    crate::plan::diff::same(&value_of(v, oci), want)
}

impl Ctx {
    /// The boot volume of the instance `id` (its ATTACHED attachment).
    async fn boot_volume_of(&self, c: &Change, id: &str) -> Result<String, NodeError> {
        let (compartment, ad) = {
            let st = self.state.lock().await;
            let r = st.resources.get(&c.address);
            (
                r.and_then(|r| r.compartment.clone()),
                r.and_then(|r| r.attributes.top_str("availabilityDomain")),
            )
        };
        let (Some(compartment), Some(ad)) = (compartment, ad) else {
            return Err(self.invalid(
                c,
                "the instance's compartment or availability domain is not recorded",
            ));
        };
        self.at(id)
            .list_boot_volume_attachments(&ad, &compartment, id)
            .await
            .map_err(|e| self.oci(&c.address, e))?
            .into_iter()
            .find(|a| a.lifecycle_state == "ATTACHED")
            .map(|a| a.boot_volume_id)
            .ok_or_else(|| self.invalid(c, "the instance has no attached boot volume"))
    }

    /// GetBootVolume once it is AVAILABLE.
    async fn available_volume(
        &self,
        c: &Change,
        id: &str,
        volume: &str,
    ) -> Result<Response<BootVolume>, NodeError> {
        self.at(id)
            .wait_for_boot_volume(volume, &self.wait(c))
            .await
            .map_err(|e| self.oci(&c.address, e))
    }

    /// UpdateBootVolume / UpdateBootVolumeKmsKey of the instance `id`'s boot volume with the
    /// values `details` (`{vpusPerGB, kmsKeyId}`, either or both), then the values recorded.
    pub(super) async fn update_boot_volume(
        &self,
        c: &Change,
        id: &str,
        details: Value,
    ) -> Result<(), NodeError> {
        let volume = self.boot_volume_of(c, id).await?;
        let client = self.at(id);
        let mut read = self.available_volume(c, id, &volume).await?;
        for (oci, want) in details.as_object().into_iter().flatten() {
            if has(&read.body, oci, want) {
                continue;
            }
            let step = match oci.as_str() {
                "vpusPerGB" => "changing the boot volume's performance",
                _ => "changing the boot volume's key",
            };
            self.progress.step(&label(c), step);
            let opts = MutationOptions::if_match(read.etag.as_deref());
            let sent = match (oci.as_str(), want) {
                ("vpusPerGB", Value::Number(n)) if n.as_u64().is_some() => client
                    .update_boot_volume_vpus(&volume, n.as_u64().expect("checked"), &opts)
                    .await
                    .map(|_| ()),
                ("kmsKeyId", Value::String(k)) => client
                    .update_boot_volume_kms_key(&volume, k, &opts)
                    .await
                    .map(|_| ()),
                _ => {
                    return Err(self.invalid(
                        c,
                        format!("the boot volume's `{oci}` cannot be set to {want}"),
                    ))
                }
            };
            if let Err(e) = sent {
                // Refused, or its answer lost: the volume says whether the change landed.
                let now = client
                    .get_boot_volume(&volume)
                    .await
                    .map_err(|e| self.oci(&c.address, e))?;
                if !(e.is_precondition_failed() && has(&now.body, oci, want)) {
                    return Err(self.oci(&c.address, e));
                }
            }
            self.progress.step(&label(c), "waiting for the boot volume");
            read = self.available_volume(c, id, &volume).await?;
        }
        let recorded: Vec<(String, Value)> = details
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(oci, v)| {
                BOOT_VOLUME_UPDATABLE
                    .iter()
                    .find(|(_, o, ..)| o == oci)
                    .map(|(k, ..)| (k.to_string(), v.clone()))
            })
            .collect();
        self.record(&c.address, |st| {
            if let Some(r) = st.resources.get_mut(&c.address) {
                let inputs = std::sync::Arc::make_mut(&mut r.inputs);
                inputs.extend(recorded);
                r.updated_at = Utc::now();
            }
        })
        .await
    }
}
