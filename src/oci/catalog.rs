//! Read-only listings a plan resolves names and checks a manifest's values against: the
//! children of a compartment (ListCompartments), availability and fault domains, shapes, and
//! the VCNs, subnets and network security groups of a compartment — each every page, at the
//! largest page size, so a caller that caches them pays O(pages).
//!
//! Paths and parameters as oci-go-sdk v65 has them (`identity/list_compartments_request_response.go`,
//! `identity/list_availability_domains_request_response.go`,
//! `identity/list_fault_domains_request_response.go`, `core/list_shapes_request_response.go`,
//! `core/list_vcns_request_response.go`, `core/list_subnets_request_response.go`,
//! `core/list_network_security_groups_request_response.go`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{Call, Client};
use super::compute::{all_pages, enc};
use super::error::OciError;

/// A compartment (identity `Compartment`, the fields read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compartment {
    pub id: String,
    #[serde(default)]
    pub compartment_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub lifecycle_state: String,
}

/// An availability or fault domain (its `name` is what a launch names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    pub name: String,
}

/// A shape of ListShapes (core `Shape`, the field read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    pub shape: String,
}

/// A VCN, subnet or network security group, as far as a lookup by name reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Named {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub vcn_id: Option<String>,
    #[serde(default)]
    pub lifecycle_state: String,
}

/// Which network listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetworkKind {
    Vcn,
    Subnet,
    Nsg,
}

impl NetworkKind {
    fn call(self) -> (&'static str, &'static str) {
        match self {
            NetworkKind::Vcn => ("ListVcns", "/vcns"),
            NetworkKind::Subnet => ("ListSubnets", "/subnets"),
            NetworkKind::Nsg => ("ListNetworkSecurityGroups", "/networkSecurityGroups"),
        }
    }
}

impl Client {
    /// The direct children of `parent` (ListCompartments, ACTIVE ones, every page).
    pub async fn list_child_compartments(
        &self,
        parent: &str,
    ) -> Result<Vec<Compartment>, OciError> {
        all_pages(|page| async move {
            let call = Call::new("ListCompartments", Method::GET, "/compartments")
                .query("compartmentId", Some(parent))
                .query("lifecycleState", Some("ACTIVE"))
                .query("limit", Some(1000))
                .query("page", page)
                .resource(parent);
            self.send_json(call).await
        })
        .await
    }

    /// ListAvailabilityDomains of `compartment`'s tenancy.
    pub async fn list_availability_domains(
        &self,
        compartment: &str,
    ) -> Result<Vec<Domain>, OciError> {
        let call = Call::new(
            "ListAvailabilityDomains",
            Method::GET,
            "/availabilityDomains",
        )
        .query("compartmentId", Some(compartment))
        .resource(compartment);
        Ok(self.send_json(call).await?.body)
    }

    /// ListFaultDomains of availability domain `ad`.
    pub async fn list_fault_domains(
        &self,
        compartment: &str,
        ad: &str,
    ) -> Result<Vec<Domain>, OciError> {
        let call = Call::new("ListFaultDomains", Method::GET, "/faultDomains")
            .query("compartmentId", Some(compartment))
            .query("availabilityDomain", Some(ad))
            .resource(ad);
        Ok(self.send_json(call).await?.body)
    }

    /// ListShapes of `compartment` in availability domain `ad`, every page.
    pub async fn list_shapes(&self, compartment: &str, ad: &str) -> Result<Vec<Shape>, OciError> {
        all_pages(|page| async move {
            let call = Call::new("ListShapes", Method::GET, "/shapes")
                .query("compartmentId", Some(compartment))
                .query("availabilityDomain", Some(ad))
                .query("limit", Some(1000))
                .query("page", page)
                .resource(compartment);
            self.send_json(call).await
        })
        .await
    }

    /// The VCNs, subnets or network security groups of `compartment` (of VCN `vcn` for the
    /// last two), every page.
    pub async fn list_network(
        &self,
        kind: NetworkKind,
        compartment: &str,
        vcn: Option<&str>,
    ) -> Result<Vec<Named>, OciError> {
        let (operation, path) = kind.call();
        all_pages(|page| async move {
            let call = Call::new(operation, Method::GET, path)
                .query("compartmentId", Some(compartment))
                .query("vcnId", vcn)
                .query("limit", Some(1000))
                .query("page", page)
                .resource(vcn.unwrap_or(compartment));
            self.send_json(call).await
        })
        .await
    }

    /// GetNetworkSecurityGroup.
    pub async fn get_network_security_group(&self, id: &str) -> Result<Named, OciError> {
        let call = Call::new(
            "GetNetworkSecurityGroup",
            Method::GET,
            format!("/networkSecurityGroups/{}", enc(id)),
        )
        .resource(id);
        Ok(self.send_json(call).await?.body)
    }
}
