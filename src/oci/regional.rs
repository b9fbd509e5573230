//! One client per region. OCI is a set of independent regions, each with its own endpoint; a
//! resource lives in one of them — the region in its OCID (`ocid1.instance.oc1.iad.…`), or, before
//! it exists, the region it is to be created in.

use std::collections::BTreeMap;

use super::{Client, ErrorKind, OciError};

/// The clients of every region kiln talks to, and the default region (the provider's).
#[derive(Clone, Debug)]
pub struct Clients {
    default: String,
    by_region: BTreeMap<String, Client>,
}

impl Clients {
    /// One region.
    pub fn single(region: impl Into<String>, client: Client) -> Clients {
        let region = region.into();
        let mut by_region = BTreeMap::new();
        by_region.insert(region.clone(), client);
        Clients {
            default: region,
            by_region,
        }
    }

    /// Add (or replace) the client of `region`.
    pub fn insert(&mut self, region: impl Into<String>, client: Client) {
        self.by_region.insert(region.into(), client);
    }

    pub fn default_region(&self) -> &str {
        &self.default
    }

    /// The default region's client.
    pub fn default_client(&self) -> &Client {
        &self.by_region[&self.default]
    }

    /// Every region with a client, in name order.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.by_region.keys().map(String::as_str)
    }

    /// The client of `region` (`None`: the default region's).
    pub fn for_region(&self, region: Option<&str>) -> Result<&Client, OciError> {
        let region = region.unwrap_or(&self.default);
        self.by_region.get(region).ok_or_else(|| OciError {
            kind: ErrorKind::Client,
            operation: "(choose a region)",
            resource: None,
            status: None,
            code: "UnknownRegion".into(),
            message: format!(
                "kiln has no endpoint for region `{region}` (it knows {})",
                self.regions().collect::<Vec<_>>().join(", ")
            ),
            opc_request_id: None,
            attempts: 0,
            help: Some("declare the region in the manifest (`region` on a resource or in `[defaults]`), or its endpoint in `[provider] endpoints`".into()),
        })
    }

    /// The client of the region an OCID names (regionless OCIDs, like compartments', use the
    /// default region).
    pub fn for_id(&self, id: &str) -> Result<&Client, OciError> {
        self.for_region(crate::region::from_ocid(id))
    }
}
