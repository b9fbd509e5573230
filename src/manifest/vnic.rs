//! The primary VNIC's settings of `[instance.NAME]` beyond its subnet: `nsg_ids` (OCIDs, or
//! lookups by name: [`super::lookup`]),
//! `hostname_label`, `private_ip`, `skip_source_dest_check` (CreateVnicDetails at launch), checked
//! here as far as the manifest alone can tell (OCID kinds, label and address syntax); the subnet's
//! CIDR, free addresses and labels are OCI's to check at launch.
//!
//! After launch OCI changes `nsgIds`, `hostnameLabel` and `skipSourceDestCheck` with UpdateVnic
//! (oci-go-sdk v65 `core.UpdateVnicDetails`: definedTags, displayName, freeformTags,
//! securityAttributes, hostnameLabel, nsgIds, skipSourceDestCheck); the private IP is not in it,
//! so a new one replaces the instance.

use std::net::Ipv4Addr;

use indexmap::IndexMap;

use super::diagnostic::Problem;
use super::tree::{bool_of, get, str_of, Entry, Node, Value};
use super::Loader;

/// OCI's limit of network security groups per VNIC.
pub const MAX_NSGS: usize = 5;

/// What the manifest sets of the primary VNIC (its table, else `[defaults]`'s for `nsg_ids` and
/// `skip_source_dest_check`); `None`: not managed, OCI's value is never compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrimaryVnic {
    pub nsg_ids: Option<Vec<String>>,
    pub hostname_label: Option<String>,
    pub private_ip: Option<String>,
    pub skip_source_dest_check: Option<bool>,
}

/// RFC 952/1123 as OCI applies it to hostname labels: 1 to 63 letters, digits and hyphens,
/// starting with a letter.
pub fn hostname_label_ok(h: &str) -> bool {
    (1..=63).contains(&h.len())
        && h.starts_with(|c: char| c.is_ascii_alphabetic())
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Loader {
    pub(super) fn primary_vnic(
        &mut self,
        t: &IndexMap<String, Entry>,
        defaults: &IndexMap<String, Entry>,
    ) -> (PrimaryVnic, Vec<(usize, super::lookup::NetworkLookup)>) {
        let mut lookups = Vec::new();
        let nsg_ids = match Self::field(t, defaults, "nsg_ids") {
            Some(Node {
                value: Value::Array(a),
                at,
            }) => {
                if a.len() > MAX_NSGS {
                    self.problem(
                        Problem::error(
                            "invalid_value",
                            format!("`nsg_ids` lists {} network security groups; a VNIC takes at most {MAX_NSGS}", a.len()),
                        )
                        .at(at, "too many")
                        .help("keep at most 5"),
                    );
                }
                let mut ids = Vec::new();
                for n in a {
                    if let Some((id, lookup)) = self.nsg_of(n) {
                        if let Some(l) = lookup {
                            lookups.push((ids.len(), l));
                        }
                        ids.push(id);
                    }
                }
                Some(ids)
            }
            _ => None,
        };
        let hostname_label = str_of(get(t, "hostname_label")).map(|(h, at)| {
            if !hostname_label_ok(h) {
                self.problem(
                    Problem::error(
                        "invalid_value",
                        format!("`hostname_label` `{h}` is not a hostname label"),
                    )
                    .at(
                        at,
                        "1 to 63 letters, digits and hyphens, starting with a letter",
                    )
                    .help("e.g. `hostname_label = \"web-1\"` (RFC 952/1123)"),
                );
            }
            h.to_string()
        });
        let private_ip = str_of(get(t, "private_ip")).map(|(ip, at)| {
            if ip.parse::<Ipv4Addr>().is_err() {
                self.problem(
                    Problem::error(
                        "invalid_value",
                        format!("`private_ip` `{ip}` is not an IPv4 address"),
                    )
                    .at(at, "expected e.g. `10.0.1.10`")
                    .help("give a free address of the subnet's CIDR block"),
                );
            }
            ip.to_string()
        });
        let vnic = PrimaryVnic {
            nsg_ids,
            hostname_label,
            private_ip,
            skip_source_dest_check: bool_of(Self::field(t, defaults, "skip_source_dest_check")),
        };
        (vnic, lookups)
    }
}
