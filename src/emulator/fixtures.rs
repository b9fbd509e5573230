//! The seeded, well-known world of one region (`GET /_emulator/fixtures`): availability and fault
//! domains, a VCN with a public and a private subnet and network security groups (`web`, and two
//! named `app`, for lookups that find several), platform images for x86 and Arm, the shapes, two
//! Vault keys and a compute capacity reservation (in the first availability domain; see
//! [`super::related`]), and — the same in every region, as OCI's identity is global — the
//! compartments (`kiln-emulator`, `dev`, `prod`, and `app` in `prod`) and tag namespaces of the
//! tenancy.
//!
//! Every id is derived from the region (and a name), so two regions never share an id and a
//! restart gives the same ids: `Fixtures::new(region)` is all a region's listener needs.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::shapes;
use super::store::Record;
use super::EmulatorError;

/// A platform image in the fixtures.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlatformImage {
    pub id: String,
    pub display_name: String,
    pub operating_system: String,
    pub operating_system_version: String,
    /// `x86_64` or `aarch64`: which shapes can boot it ([`shapes::Arch`]).
    pub arch: String,
}

/// A compartment: the tenancy root (its id is the tenancy's) or one under it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Compartment {
    pub id: String,
    pub name: String,
    /// The parent compartment; `None` for a tenancy root.
    pub parent: Option<String>,
}

/// A network security group of the fixture VCN (in the default compartment).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Nsg {
    pub id: String,
    pub display_name: String,
}

/// A tag namespace (in the tenancy root) and the tag keys defined in it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TagNamespace {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
}

/// The seeded, well-known ids of one region.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Fixtures {
    pub region: String,
    pub region_code: String,
    pub availability_domains: Vec<String>,
    pub fault_domains: Vec<String>,
    /// A compartment to use (one of `compartments`).
    pub compartment_id: String,
    /// Every compartment the emulator knows: the tenancy roots of the trusted keys, the named
    /// ones below, and those given with `--compartment`. Any other is 404.
    pub compartments: Vec<Compartment>,
    pub tag_namespaces: Vec<TagNamespace>,
    pub vcn_id: String,
    pub public_subnet_id: String,
    pub private_subnet_id: String,
    /// The `web` network security group (one of `nsgs`).
    pub nsg_id: String,
    /// Vault keys a boot volume can be encrypted with (`sourceDetails.kmsKeyId`); any other is 400.
    pub kms_key_ids: Vec<String>,
    /// A compute capacity reservation in the first availability domain (`capacityReservationId`).
    pub capacity_reservation_id: String,
    /// The VCN's network security groups: `web`, and two both named `app` (OCI does not make an
    /// NSG's display name unique, so a lookup by name can find several).
    pub nsgs: Vec<Nsg>,
    pub platform_images: Vec<PlatformImage>,
    pub shapes: Vec<String>,
    /// The Object Storage namespace, and a seeded bucket in it (for remote state).
    pub namespace: String,
    pub bucket: String,
    /// A seeded bucket for image files: CreateImage imports only objects that exist.
    pub image_bucket: String,
}

const REGIONS: &[(&str, &str, &str)] = &[
    ("us-ashburn-1", "iad", "US-ASHBURN"),
    ("us-phoenix-1", "phx", "PHX"),
    ("eu-frankfurt-1", "fra", "EU-FRANKFURT-1"),
    ("uk-london-1", "lhr", "UK-LONDON-1"),
    ("ap-tokyo-1", "nrt", "AP-TOKYO-1"),
];

/// Every region the emulator knows, by id.
pub fn known_regions() -> impl Iterator<Item = &'static str> {
    REGIONS.iter().map(|(id, _, _)| *id)
}

/// The tenancy the named compartments hang under when no trusted key names one.
pub const EMULATOR_TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaakilnemulator";

fn fixed_id(kind: &str, code: &str, name: &str) -> String {
    let h = Sha256::digest(format!("kiln-emulator/{kind}/{name}").as_bytes());
    let tail: String = h.iter().map(|b| format!("{b:02x}")).collect::<String>()[..52].to_string();
    format!("ocid1.{kind}.oc1.{code}.aaaaaaaa{tail}")
}

/// Subnets: (name, CIDR, private). /18s, so that large fleets fit.
const SUBNETS: &[(&str, &str, bool)] = &[
    ("public", "10.0.0.0/18", false),
    ("private", "10.0.64.0/18", true),
];

impl Fixtures {
    /// The seeded ids an emulator of `region` serves (each region has its own).
    pub fn for_region(region: &str) -> Result<Fixtures, EmulatorError> {
        Fixtures::new(region)
    }

    pub(super) fn new(region: &str) -> Result<Fixtures, EmulatorError> {
        let (_, code, ad) = REGIONS
            .iter()
            .find(|(r, _, _)| *r == region)
            .ok_or_else(|| EmulatorError::Region(region.to_string()))?;
        let images = [
            ("Oracle Linux", "8", "2026.08.30-0", "x86_64"),
            ("Oracle Linux", "8", "2026.10.28-0", "x86_64"),
            ("Oracle Linux", "9", "2026.07.31-0", "x86_64"),
            ("Oracle Linux", "9", "2026.09.30-0", "x86_64"),
            ("Oracle Linux", "9", "2026.10.31-0", "x86_64"),
            ("Canonical Ubuntu", "22.04", "2026.09.15-0", "x86_64"),
            ("Canonical Ubuntu", "22.04", "2026.10.20-0", "x86_64"),
            ("Canonical Ubuntu", "24.04", "2026.09.18-0", "x86_64"),
            ("Canonical Ubuntu", "24.04", "2026.10.22-0", "x86_64"),
            ("Oracle Linux", "9", "2026.10.31-0", "aarch64"),
            ("Canonical Ubuntu", "24.04", "2026.10.22-0", "aarch64"),
        ];
        let compartment = |name: &str, id: &str| Compartment {
            id: id.to_string(),
            name: name.to_string(),
            parent: Some(EMULATOR_TENANCY.to_string()),
        };
        let namespace = |name: &str, tags: &[&str]| TagNamespace {
            id: format!(
                "ocid1.tagnamespace.oc1..aaaaaaaa{}",
                &fixed_id("tagnamespace", "", name)[28..60]
            ),
            name: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        Ok(Fixtures {
            region: region.to_string(),
            region_code: code.to_string(),
            availability_domains: (1..=3).map(|n| format!("kIdk:{ad}-AD-{n}")).collect(),
            fault_domains: (1..=3).map(|n| format!("FAULT-DOMAIN-{n}")).collect(),
            compartment_id: "ocid1.compartment.oc1..aaaaaaaakilnemulatorcompartment".into(),
            compartments: vec![
                Compartment {
                    id: EMULATOR_TENANCY.into(),
                    name: "kilnemulator".into(),
                    parent: None,
                },
                compartment(
                    "kiln-emulator",
                    "ocid1.compartment.oc1..aaaaaaaakilnemulatorcompartment",
                ),
                compartment("dev", "ocid1.compartment.oc1..aaaaaaaakilnemulatordev"),
                compartment("prod", "ocid1.compartment.oc1..aaaaaaaakilnemulatorprod"),
                // Nested, for compartment paths (`prod/app`).
                Compartment {
                    id: "ocid1.compartment.oc1..aaaaaaaakilnemulatorprodapp".into(),
                    name: "app".into(),
                    parent: Some("ocid1.compartment.oc1..aaaaaaaakilnemulatorprod".into()),
                },
            ],
            tag_namespaces: vec![
                namespace("Oracle-Tags", &["CreatedBy", "CreatedOn"]),
                namespace(
                    "Operations",
                    &["CostCenter", "Environment", "Owner", "Project"],
                ),
            ],
            vcn_id: fixed_id("vcn", code, "vcn"),
            public_subnet_id: fixed_id("subnet", code, "public"),
            private_subnet_id: fixed_id("subnet", code, "private"),
            nsg_id: fixed_id("networksecuritygroup", code, "web"),
            kms_key_ids: ["boot-a", "boot-b"]
                .iter()
                .map(|n| fixed_id("key", code, n))
                .collect(),
            capacity_reservation_id: fixed_id("capacityreservation", code, "ad-1"),
            nsgs: [("web", "web"), ("app", "app-1"), ("app", "app-2")]
                .iter()
                .map(|(name, key)| Nsg {
                    id: fixed_id("networksecuritygroup", code, key),
                    display_name: name.to_string(),
                })
                .collect(),
            platform_images: images
                .iter()
                .map(|(os, v, date, arch)| {
                    let name = match *arch {
                        "aarch64" => format!("{}-{v}-aarch64-{date}", os.replace(' ', "-")),
                        _ => format!("{}-{v}-{date}", os.replace(' ', "-")),
                    };
                    PlatformImage {
                        id: fixed_id("image", code, &name),
                        display_name: name,
                        operating_system: os.to_string(),
                        operating_system_version: v.to_string(),
                        arch: arch.to_string(),
                    }
                })
                .collect(),
            shapes: shapes::CATALOGUE
                .iter()
                .map(|s| s.name.to_string())
                .collect(),
            namespace: "kilnemulator".into(),
            bucket: "kiln-state".into(),
            image_bucket: "images".into(),
        })
    }

    /// Add tenancy roots (from the trusted keys) and extra compartments (`--compartment`), once
    /// each. The named compartments hang under the first tenancy given.
    pub(super) fn add_compartments(&mut self, tenancies: &[String], extra: &[String]) {
        let root = tenancies
            .first()
            .cloned()
            .unwrap_or_else(|| EMULATOR_TENANCY.to_string());
        for c in self.compartments.iter_mut() {
            if c.parent.as_deref() == Some(EMULATOR_TENANCY) {
                c.parent = Some(root.clone());
            }
        }
        for t in tenancies {
            if !self.compartments.iter().any(|c| &c.id == t) {
                self.compartments.push(Compartment {
                    id: t.clone(),
                    name: "tenancy".into(),
                    parent: None,
                });
            }
        }
        for (n, id) in extra.iter().enumerate() {
            if !self.compartments.iter().any(|c| &c.id == id) {
                self.compartments.push(Compartment {
                    id: id.clone(),
                    name: format!("extra-{}", n + 1),
                    parent: Some(root.clone()),
                });
            }
        }
    }

    /// The ids a manifest names, for people (`kiln emulator --fixtures`).
    pub fn listing(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "region {} ({})", self.region, self.region_code);
        let _ = writeln!(out, "  compartments");
        let width = self
            .compartments
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(0);
        for c in &self.compartments {
            let what = match (&c.parent, c.id == self.compartment_id) {
                (None, _) => format!("{} (tenancy root)", c.name),
                (Some(_), true) => format!("{} (the default one)", c.name),
                (Some(_), false) => c.name.clone(),
            };
            let _ = writeln!(out, "    {:<width$}  {what}", c.id);
        }
        let _ = writeln!(
            out,
            "  availability domains\n    {}",
            self.availability_domains.join(", ")
        );
        let _ = writeln!(
            out,
            "  fault domains\n    {}",
            self.fault_domains.join(", ")
        );
        let _ = writeln!(
            out,
            "  vcn\n    {}  kiln-emulator-vcn 10.0.0.0/16",
            self.vcn_id
        );
        let _ = writeln!(out, "  subnets");
        for s in self.subnets_json() {
            let public = match s["prohibitPublicIpOnVnic"].as_bool() {
                Some(true) => "no public IPs",
                _ => "public IPs by default",
            };
            let _ = writeln!(
                out,
                "    {}  {} {} ({public})",
                s["id"].as_str().unwrap_or_default(),
                s["dnsLabel"].as_str().unwrap_or_default(),
                s["cidrBlock"].as_str().unwrap_or_default()
            );
        }
        let _ = writeln!(out, "  network security groups");
        for n in &self.nsgs {
            let _ = writeln!(out, "    {}  {}", n.id, n.display_name);
        }
        let _ = writeln!(out, "  vault keys\n    {}", self.kms_key_ids.join("\n    "));
        let _ = writeln!(
            out,
            "  capacity reservation\n    {}  in {}",
            self.capacity_reservation_id, self.availability_domains[0]
        );
        let _ = writeln!(out, "  platform images");
        for i in &self.platform_images {
            let _ = writeln!(
                out,
                "    {}  {} {} ({}, {})",
                i.id, i.operating_system, i.operating_system_version, i.display_name, i.arch
            );
        }
        let _ = writeln!(out, "  shapes\n    {}", self.shapes.join(", "));
        let tags: Vec<String> = self
            .tag_namespaces
            .iter()
            .map(|n| format!("{} ({})", n.name, n.tags.join(", ")))
            .collect();
        let _ = writeln!(out, "  tag namespaces\n    {}", tags.join("; "));
        let _ = writeln!(
            out,
            "  object storage\n    namespace {}, buckets {} (state), {} (image files)",
            self.namespace, self.bucket, self.image_bucket
        );
        out
    }

    pub fn compartment(&self, id: &str) -> Option<&Compartment> {
        self.compartments.iter().find(|c| c.id == id)
    }

    /// The tenancy root above `id` (itself for a root).
    pub fn root_of(&self, id: &str) -> Option<&str> {
        let mut at = self.compartment(id)?;
        for _ in 0..8 {
            match &at.parent {
                None => return Some(&at.id),
                Some(p) => at = self.compartment(p)?,
            }
        }
        None
    }

    pub fn vcn_json(&self) -> Value {
        json!({ "id": self.vcn_id, "compartmentId": self.compartment_id, "displayName": "kiln-emulator-vcn", "cidrBlock": "10.0.0.0/16", "cidrBlocks": ["10.0.0.0/16"], "byoipv6CidrBlocks": [], "ipv6PrivateCidrBlocks": [], "ipv6CidrBlocks": [], "dnsLabel": "kilnvcn", "lifecycleState": "AVAILABLE", "timeCreated": "2026-01-01T00:00:00.000Z", "vcnDomainName": "kilnvcn.oraclevcn.com", "defaultDhcpOptionsId": null, "defaultRouteTableId": null, "defaultSecurityListId": null, "isZprOnly": false, "securityAttributes": {}, "systemTags": {}, "freeformTags": {}, "definedTags": {} })
    }

    pub fn subnets_json(&self) -> Vec<Value> {
        [&self.public_subnet_id, &self.private_subnet_id]
            .iter()
            .zip(SUBNETS)
            .map(|(id, (name, cidr, private))| {
                json!({ "id": id, "compartmentId": self.compartment_id, "vcnId": self.vcn_id, "displayName": format!("kiln-emulator-{name}"), "cidrBlock": cidr, "ipv4CidrBlocks": [cidr], "availabilityDomain": null, "dnsLabel": name, "subnetDomainName": format!("{name}.kilnvcn.oraclevcn.com"), "lifecycleState": "AVAILABLE", "prohibitPublicIpOnVnic": private, "prohibitInternetIngress": private, "ipv6CidrBlock": null, "ipv6CidrBlocks": [], "ipv6VirtualRouterIp": null, "virtualRouterIp": cidr.replace(".0/18", ".1"), "virtualRouterMac": "00:00:17:00:00:01", "dhcpOptionsId": null, "routeTableId": null, "securityListIds": [], "timeCreated": "2026-01-01T00:00:00.000Z", "systemTags": {}, "freeformTags": {}, "definedTags": {} })
            })
            .collect()
    }

    /// The network security groups' JSON, as oci-go-sdk v65 `core/network_security_group.go`
    /// has them (compartmentId, id, lifecycleState, timeCreated, vcnId, definedTags,
    /// displayName, freeformTags, systemTags).
    pub fn nsgs_json(&self) -> Vec<Value> {
        self.nsgs
            .iter()
            .map(|n| json!({ "id": n.id, "compartmentId": self.compartment_id, "vcnId": self.vcn_id, "displayName": n.display_name, "lifecycleState": "AVAILABLE", "timeCreated": "2026-01-01T00:00:00.000Z", "systemTags": {}, "freeformTags": {}, "definedTags": {} }))
            .collect()
    }

    /// Whether `id` is a network security group of the fixture VCN.
    pub fn is_nsg(&self, id: &str) -> bool {
        self.nsgs.iter().any(|n| n.id == id)
    }

    pub fn subnet_json(&self, id: &str) -> Option<Value> {
        self.subnets_json().into_iter().find(|s| s["id"] == id)
    }

    pub(super) fn platform_records(&self) -> Vec<Record> {
        self.platform_images
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let body = json!({ "id": p.id, "compartmentId": null, "displayName": p.display_name, "lifecycleState": "AVAILABLE", "operatingSystem": p.operating_system, "operatingSystemVersion": p.operating_system_version, "launchMode": "PARAVIRTUALIZED", "launchOptions": super::images::launch_options(), "agentFeatures": null, "createImageAllowed": true, "sizeInMBs": 47694, "billableSizeInGBs": 3, "listingType": "NONE", "baseImageId": null, "timeCreated": format!("2026-{:02}-01T00:00:00.000Z", 1 + i), "freeformTags": {}, "definedTags": {} });
                let mut r = Record::new(body.as_object().expect("object").clone());
                r.meta.insert("arch".into(), json!(p.arch));
                r
            })
            .collect()
    }
}
