//! Shapes: the catalogue (x86 and Arm, fixed and flexible, with the ranges the emulator
//! enforces), shape-config validation for LaunchInstance and UpdateInstance, ListShapes, and which
//! images a shape can boot.

use serde_json::{json, Map, Value};

use super::api::{error, q, required_query, Ctx, Reply, Result};
use super::list;

/// The processor architecture of a shape, and of the images it can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86,
    Arm,
}

impl Arch {
    /// As images record it (`x86_64`, `aarch64`).
    pub fn image_arch(self) -> &'static str {
        match self {
            Arch::X86 => "x86_64",
            Arch::Arm => "aarch64",
        }
    }
}

/// What a flexible shape allows.
#[derive(Clone, Copy, Debug)]
pub struct Flex {
    pub ocpus: (f64, f64),
    /// Memory per OCPU (GB): min, max, and the default when only `ocpus` is given.
    pub per_ocpu: (f64, f64, f64),
    /// Memory in all (GB): min, max.
    pub memory: (f64, f64),
}

/// One shape of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub arch: Arch,
    pub processor: &'static str,
    /// vCPUs per OCPU (2 on x86, 1 on Ampere).
    pub vcpus_per_ocpu: f64,
    /// `None` for a fixed shape, whose `ocpus` and `memory` are then its size.
    pub flex: Option<Flex>,
    pub ocpus: f64,
    pub memory: f64,
    /// PlatformConfig `type` the shape takes (`None`: no platform config).
    pub platform: Option<&'static str>,
    /// Burstable baselines the shape offers (flexible x86 shapes).
    pub burstable: bool,
}

const AMD_MILAN: &str = "2.55 GHz AMD EPYC™ 7J13 (Milan)";

pub const CATALOGUE: &[Shape] = &[
    Shape {
        name: "VM.Standard.E4.Flex",
        arch: Arch::X86,
        processor: AMD_MILAN,
        vcpus_per_ocpu: 2.0,
        flex: Some(Flex {
            ocpus: (1.0, 64.0),
            per_ocpu: (1.0, 64.0, 16.0),
            memory: (1.0, 1024.0),
        }),
        ocpus: 1.0,
        memory: 16.0,
        platform: Some("AMD_VM"),
        burstable: true,
    },
    Shape {
        name: "VM.Standard.E5.Flex",
        arch: Arch::X86,
        processor: "2.4 GHz AMD EPYC™ 9J14 (Genoa)",
        vcpus_per_ocpu: 2.0,
        flex: Some(Flex {
            ocpus: (1.0, 94.0),
            per_ocpu: (1.0, 64.0, 12.0),
            memory: (1.0, 1049.0),
        }),
        ocpus: 1.0,
        memory: 12.0,
        platform: Some("AMD_VM"),
        burstable: true,
    },
    Shape {
        name: "VM.Standard3.Flex",
        arch: Arch::X86,
        processor: "2.0 GHz Intel® Xeon® Platinum 8358 (Ice Lake)",
        vcpus_per_ocpu: 2.0,
        flex: Some(Flex {
            ocpus: (1.0, 32.0),
            per_ocpu: (1.0, 64.0, 16.0),
            memory: (1.0, 512.0),
        }),
        ocpus: 1.0,
        memory: 16.0,
        platform: Some("INTEL_VM"),
        burstable: true,
    },
    Shape {
        name: "VM.Optimized3.Flex",
        arch: Arch::X86,
        processor: "3.0 GHz Intel® Xeon® Gold 6354 (Ice Lake)",
        vcpus_per_ocpu: 2.0,
        flex: Some(Flex {
            ocpus: (1.0, 18.0),
            per_ocpu: (1.0, 64.0, 14.0),
            memory: (1.0, 256.0),
        }),
        ocpus: 1.0,
        memory: 14.0,
        platform: Some("INTEL_VM"),
        burstable: false,
    },
    Shape {
        name: "VM.Standard.A1.Flex",
        arch: Arch::Arm,
        processor: "3.0 GHz Ampere® Altra™",
        vcpus_per_ocpu: 1.0,
        flex: Some(Flex {
            ocpus: (1.0, 80.0),
            per_ocpu: (1.0, 64.0, 6.0),
            memory: (1.0, 512.0),
        }),
        ocpus: 1.0,
        memory: 6.0,
        platform: None,
        burstable: false,
    },
    fixed("VM.Standard2.1", 1.0, 15.0),
    fixed("VM.Standard2.2", 2.0, 30.0),
    fixed("VM.Standard2.4", 4.0, 60.0),
    Shape {
        name: "VM.Standard.E2.1.Micro",
        arch: Arch::X86,
        processor: "2.0 GHz AMD EPYC™ 7551 (Naples)",
        vcpus_per_ocpu: 2.0,
        flex: None,
        ocpus: 1.0,
        memory: 1.0,
        platform: None,
        burstable: false,
    },
    Shape {
        name: "BM.Standard.E4.128",
        arch: Arch::X86,
        processor: AMD_MILAN,
        vcpus_per_ocpu: 2.0,
        flex: None,
        ocpus: 128.0,
        memory: 2048.0,
        platform: Some("AMD_MILAN_BM"),
        burstable: false,
    },
];

const fn fixed(name: &'static str, ocpus: f64, memory: f64) -> Shape {
    Shape {
        name,
        arch: Arch::X86,
        processor: "2.0 GHz Intel® Xeon® Platinum 8167M (Skylake)",
        vcpus_per_ocpu: 2.0,
        flex: None,
        ocpus,
        memory,
        platform: Some("INTEL_VM"),
        burstable: false,
    }
}

pub fn find(name: &str) -> Option<&'static Shape> {
    CATALOGUE.iter().find(|s| s.name == name)
}

pub fn known(name: &str) -> Result<&'static Shape> {
    find(name).ok_or_else(|| {
        error(
            400,
            "InvalidParameter",
            format!("unknown shape `{name}` (GET /shapes lists them)"),
        )
    })
}

const BASELINES: &[&str] = &["BASELINE_1_1", "BASELINE_1_2", "BASELINE_1_8"];

/// Fields of LaunchInstanceShapeConfigDetails / UpdateInstanceShapeConfigDetails the emulator
/// models; the others of those types are refused as unmodelled, anything else as unknown.
const MODELLED: &[&str] = &["ocpus", "vcpus", "memoryInGBs", "baselineOcpuUtilization"];
const UNMODELLED: &[&str] = &["nvmes", "resourceManagement", "localVolumeSizeInGBs"];

/// Refuse a shapeConfig key that is not an input field (`of` names the details type).
pub fn check_input_keys(cfg: &Map<String, Value>, of: &str) -> Result<()> {
    for k in cfg.keys() {
        if UNMODELLED.contains(&k.as_str()) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`shapeConfig.{k}` is not supported by the emulator (dense-I/O and bare metal options are not modelled)"),
            ));
        }
        if !MODELLED.contains(&k.as_str()) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`shapeConfig.{k}` is not a field of {of} (server-set fields of InstanceShapeConfig cannot be sent)"),
            ));
        }
    }
    Ok(())
}

fn number(cfg: &Map<String, Value>, k: &str) -> Result<Option<f64>> {
    match cfg.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                format!("`shapeConfig.{k}` must be a number"),
            )
        }),
    }
}

/// The instance's InstanceShapeConfig for `shape` and the given config (already key-checked):
/// flexible shapes take the shape's defaults for what is left out, fixed ones refuse a config.
pub fn instance_config(shape: &Shape, given: Option<&Map<String, Value>>) -> Result<Value> {
    let empty = Map::new();
    let cfg = given.unwrap_or(&empty);
    let Some(flex) = shape.flex else {
        if !cfg.is_empty() {
            return Err(error(
                400,
                "InvalidParameter",
                format!(
                    "`shapeConfig` is only for flexible shapes, not `{}`",
                    shape.name
                ),
            ));
        }
        return Ok(config_json(shape, shape.ocpus, shape.memory, None));
    };
    let vcpus = number(cfg, "vcpus")?;
    let ocpus = match (number(cfg, "ocpus")?, vcpus) {
        (Some(o), _) => o,
        (None, Some(v)) => v / shape.vcpus_per_ocpu,
        (None, None) => shape.ocpus,
    };
    let (lo, hi) = flex.ocpus;
    if !(lo..=hi).contains(&ocpus) || (ocpus * 2.0).fract() != 0.0 {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "`shapeConfig.ocpus` {ocpus} is out of range for `{}` ({lo} to {hi}, in halves)",
                shape.name
            ),
        ));
    }
    if let Some(v) = vcpus {
        if (v - ocpus * shape.vcpus_per_ocpu).abs() > 1e-9 {
            return Err(error(
                400,
                "InvalidParameter",
                format!(
                    "`shapeConfig.vcpus` {v} does not match {ocpus} OCPUs of `{}` ({} vCPUs per OCPU)",
                    shape.name, shape.vcpus_per_ocpu
                ),
            ));
        }
    }
    let memory = number(cfg, "memoryInGBs")?.unwrap_or(ocpus * flex.per_ocpu.2);
    let (min, max) = (
        (ocpus * flex.per_ocpu.0).max(flex.memory.0),
        (ocpus * flex.per_ocpu.1).min(flex.memory.1),
    );
    if memory < min || memory > max {
        return Err(error(400, "InvalidParameter", format!("`shapeConfig.memoryInGBs` {memory} must be between {} and {} GB per OCPU ({ocpus} OCPUs of `{}`), at most {} GB", flex.per_ocpu.0, flex.per_ocpu.1, shape.name, flex.memory.1)));
    }
    let baseline = match cfg.get("baselineOcpuUtilization") {
        None | Some(Value::Null) => None,
        Some(Value::String(b)) if BASELINES.contains(&b.as_str()) => {
            if b != "BASELINE_1_1" && !shape.burstable {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("`{}` is not a burstable shape: `baselineOcpuUtilization` must be BASELINE_1_1", shape.name),
                ));
            }
            Some(b.clone())
        }
        Some(other) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!(
                    "`shapeConfig.baselineOcpuUtilization` {other} is not one of {}",
                    BASELINES.join(", ")
                ),
            ))
        }
    };
    Ok(config_json(shape, ocpus, memory, baseline))
}

/// Every field of InstanceShapeConfig, null where OCI says nothing.
fn config_json(shape: &Shape, ocpus: f64, memory: f64, baseline: Option<String>) -> Value {
    json!({
        "ocpus": ocpus,
        "memoryInGBs": memory,
        "vcpus": (ocpus * shape.vcpus_per_ocpu) as u64,
        "baselineOcpuUtilization": if shape.flex.is_some() { json!(baseline.unwrap_or_else(|| "BASELINE_1_1".into())) } else { Value::Null },
        "processorDescription": shape.processor,
        "networkingBandwidthInGbps": bandwidth(shape, ocpus),
        "maxVnicAttachments": max_vnics(ocpus),
        "gpus": 0,
        "gpuDescription": null,
        "localDisks": 0,
        "localDisksTotalSizeInGBs": null,
        "localDiskDescription": null,
        "resourceManagement": null,
        "localVolumeSizeInGBs": null,
    })
}

fn bandwidth(shape: &Shape, ocpus: f64) -> f64 {
    if shape.flex.is_some() {
        ocpus.min(40.0)
    } else {
        (ocpus * 0.5).max(0.5)
    }
}

fn max_vnics(ocpus: f64) -> u64 {
    (ocpus as u64).clamp(2, 24)
}

/// The Shape model, every field.
fn shape_json(s: &Shape) -> Value {
    let flex = s.flex.map(|f| {
        json!({
            "ocpuOptions": { "min": f.ocpus.0, "max": f.ocpus.1, "maxPerNumaNode": f.ocpus.1 },
            "memoryOptions": { "minInGBs": f.memory.0, "maxInGBs": f.memory.1, "defaultPerOcpuInGBs": f.per_ocpu.2, "minPerOcpuInGBs": f.per_ocpu.0, "maxPerOcpuInGBs": f.per_ocpu.1, "maxPerNumaNodeInGBs": f.memory.1 },
            "networkingBandwidthOptions": { "minInGbps": 1.0, "maxInGbps": 40.0, "defaultPerOcpuInGbps": 1.0 },
            "maxVnicAttachmentOptions": { "min": 2, "max": 24.0, "defaultPerOcpu": 1.0 },
        })
    });
    let opt = |k: &str| flex.as_ref().map(|f| f[k].clone()).unwrap_or(Value::Null);
    json!({
        "shape": s.name,
        "processorDescription": s.processor,
        "ocpus": s.ocpus,
        "memoryInGBs": s.memory,
        "networkPorts": 2,
        "networkingBandwidthInGbps": bandwidth(s, s.ocpus),
        "maxVnicAttachments": max_vnics(s.ocpus),
        "gpus": 0,
        "gpuDescription": null,
        "localDisks": 0,
        "localDisksTotalSizeInGBs": null,
        "localDiskDescription": null,
        "rdmaPorts": 0,
        "rdmaBandwidthInGbps": 0,
        "isLiveMigrationSupported": s.flex.is_some(),
        "ocpuOptions": opt("ocpuOptions"),
        "memoryOptions": opt("memoryOptions"),
        "networkingBandwidthOptions": opt("networkingBandwidthOptions"),
        "maxVnicAttachmentOptions": opt("maxVnicAttachmentOptions"),
        "platformConfigOptions": null,
        "bsNvmeAttachmentsConfig": null,
        "isBilledForStoppedInstance": false,
        "billingType": if s.name == "VM.Standard.E2.1.Micro" { "ALWAYS_FREE" } else if s.name == "VM.Standard.A1.Flex" { "LIMITED_FREE" } else { "PAID" },
        "quotaNames": [],
        "isSubcore": false,
        "isFlexible": s.flex.is_some(),
        "baselineOcpuUtilizations": if s.burstable { json!(BASELINES) } else { json!([]) },
        "minTotalBaselineOcpusRequired": null,
        "supportedResourceManagement": [],
        "resizeCompatibleShapes": CATALOGUE.iter().filter(|o| o.arch == s.arch && o.flex.is_some() && o.name != s.name).map(|o| o.name).collect::<Vec<_>>(),
        "recommendedAlternatives": [],
        "platformNames": [],
    })
}

/// `GET /shapes`: compartmentId required; `availabilityDomain`, `imageId` (only shapes that can
/// boot it) and `shape` filter.
pub fn list(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    ctx.check_compartment(compartment, "compartmentId")?;
    if let Some(ad) = q(query, "availabilityDomain") {
        ctx.check_ad(ad)?;
    }
    let arch = match q(query, "imageId") {
        None => None,
        Some(id) => Some(
            ctx.image_any(id)
                .map(|r| r.meta_str("arch").unwrap_or("x86_64").to_string())
                .ok_or_else(|| super::api::not_found("image", id))?,
        ),
    };
    let items: Vec<(list::Key, Value)> = CATALOGUE
        .iter()
        .enumerate()
        .filter(|(_, s)| arch.as_deref().is_none_or(|a| s.arch.image_arch() == a))
        .filter(|(_, s)| q(query, "shape").is_none_or(|n| s.name == n))
        .map(|(i, s)| (list::Key::new(0, format!("{i:04}"), s.name), shape_json(s)))
        .collect();
    list::page(items, false, query)
}
