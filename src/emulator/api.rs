//! The Compute API handlers: routing, validation, lifecycles, etags, If-Match, retry tokens.
//! Everything here works on the emulator's own JSON shapes (camelCase, as Oracle's SDK models).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Map, Value};

use super::store::{rfc3339, Record, Replay, Step, WorkRequestRec, World};
use super::{Fixtures, Timings};

/// A response before it is put on the wire.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Reply {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

/// An OCI error reply: `{"code","message"}`.
pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
    Reply::json(status, &json!({ "code": code, "message": message.into() }))
}

type Result<T> = std::result::Result<T, Reply>;

/// If-Match: a mismatch is 412 `NoEtagMatch`; `*` matches any version.
fn etag_matches(if_match: &Option<String>, rec: &Record) -> Result<()> {
    match if_match {
        Some(m) if m != "*" && m != &rec.etag() => Err(error(
            412,
            "NoEtagMatch",
            format!("The resource's etag does not match the If-Match value `{m}`"),
        )),
        _ => Ok(()),
    }
}

/// The OCI operation a request is, for stats and routing (`None`: no such route).
pub fn operation(method: &str, segs: &[&str], query: &[(String, String)]) -> Option<&'static str> {
    let has_action = query.iter().any(|(k, _)| k == "action");
    Some(match (method, segs) {
        ("POST", ["instances"]) => "LaunchInstance",
        ("GET", ["instances"]) => "ListInstances",
        ("GET", ["instances", _]) => "GetInstance",
        ("PUT", ["instances", _]) => "UpdateInstance",
        ("DELETE", ["instances", _]) => "TerminateInstance",
        ("POST", ["instances", _]) if has_action => "InstanceAction",
        ("POST", ["instances", _, "actions", "changeCompartment"]) => "ChangeInstanceCompartment",
        ("POST", ["images"]) => "CreateImage",
        ("GET", ["images"]) => "ListImages",
        ("GET", ["images", _]) => "GetImage",
        ("PUT", ["images", _]) => "UpdateImage",
        ("DELETE", ["images", _]) => "DeleteImage",
        ("POST", ["images", _, "actions", "changeCompartment"]) => "ChangeImageCompartment",
        ("GET", ["subnets"]) => "ListSubnets",
        ("GET", ["subnets", _]) => "GetSubnet",
        ("GET", ["vcns"]) => "ListVcns",
        ("GET", ["vcns", _]) => "GetVcn",
        ("GET", ["vnicAttachments"]) => "ListVnicAttachments",
        ("GET", ["vnics", _]) => "GetVnic",
        ("GET", ["workRequests"]) => "ListWorkRequests",
        ("GET", ["workRequests", _]) => "GetWorkRequest",
        ("GET", ["workRequests", _, "errors"]) => "ListWorkRequestErrors",
        _ => return None,
    })
}

/// Everything a handler needs.
pub struct Ctx<'a> {
    pub world: &'a mut World,
    pub fixtures: &'a Fixtures,
    pub platform: &'a [Record],
    pub timings: &'a Timings,
    pub now: DateTime<Utc>,
    pub region_code: &'a str,
    pub key_id: &'a str,
    pub if_match: Option<String>,
    pub retry_token: Option<String>,
    /// Set by handlers that changed the world (persistence).
    pub mutated: bool,
}

fn new_ocid(kind: &str, region_code: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let tail: String = (0..60)
        .map(|_| (b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]) as char)
        .collect();
    format!("ocid1.{kind}.oc1.{region_code}.{tail}")
}

/// The `limit` query parameter: 1..1000, `default` when absent.
pub(super) fn page_limit(query: &[(String, String)], default: usize) -> Result<usize> {
    match q(query, "limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(error(
                400,
                "InvalidParameter",
                format!("`limit` `{l}` must be between 1 and 1000"),
            )),
        },
    }
}

pub(super) fn q<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(error(
            400,
            "CannotParseRequest",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(error(
            400,
            "CannotParseRequest",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` must be a string"),
        )),
    }
}

fn required<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a str> {
    str_field(m, k)?.ok_or_else(|| error(400, "MissingParameter", format!("`{k}` is required")))
}

/// `ocid1.<kind>.<realm>.<region>.<unique>`, unique part non-empty.
pub fn well_formed_ocid(s: &str, kinds: &[&str]) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 5
        && parts[0] == "ocid1"
        && kinds.contains(&parts[1])
        && parts[2].starts_with("oc")
        && !parts[parts.len() - 1].is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn check_compartment(id: &str, field: &str) -> Result<()> {
    if well_formed_ocid(id, &["compartment", "tenancy"]) {
        Ok(())
    } else {
        Err(error(
            400,
            "InvalidParameter",
            format!("`{field}` `{id}` is not a compartment OCID"),
        ))
    }
}

fn string_map(m: &Map<String, Value>, k: &str) -> Result<Option<Map<String, Value>>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) if o.values().all(Value::is_string) => Ok(Some(o.clone())),
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` must be an object of strings"),
        )),
    }
}

fn defined_tags(m: &Map<String, Value>) -> Result<Option<Map<String, Value>>> {
    match m.get("definedTags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) if o.values().all(Value::is_object) => Ok(Some(o.clone())),
        Some(_) => Err(error(
            400,
            "InvalidParameter",
            "`definedTags` must be an object of objects",
        )),
    }
}

/// OCI adds these on create; kiln must never see them as a diff.
fn oracle_tags(key_id: &str, now: DateTime<Utc>, given: Option<Map<String, Value>>) -> Value {
    let mut tags = given.unwrap_or_default();
    let user = key_id.split('/').nth(1).unwrap_or("unknown");
    tags.insert("Oracle-Tags".into(), json!({ "CreatedBy": format!("oracleidentitycloudservice/{user}"), "CreatedOn": rfc3339(now) }));
    Value::Object(tags)
}

const FLEX: &[&str] = &[
    "VM.Standard.E4.Flex",
    "VM.Standard.E5.Flex",
    "VM.Standard3.Flex",
    "VM.Standard.A1.Flex",
    "VM.Optimized3.Flex",
];
const FIXED: &[(&str, f64, f64)] = &[
    ("VM.Standard2.1", 1.0, 15.0),
    ("VM.Standard2.2", 2.0, 30.0),
    ("VM.Standard2.4", 4.0, 60.0),
    ("VM.Standard.E2.1.Micro", 1.0, 1.0),
    ("BM.Standard.E4.128", 128.0, 2048.0),
];

/// Validated shape config for `shape` (flex shapes need ocpus and memory within OCI's ratios).
fn shape_config(shape: &str, given: Option<&Value>) -> Result<Value> {
    if FLEX.contains(&shape) {
        let cfg = given.and_then(Value::as_object).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                format!(
                    "shape `{shape}` is a flexible shape: `shapeConfig` with `ocpus` is required"
                ),
            )
        })?;
        let ocpus = cfg.get("ocpus").and_then(Value::as_f64).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                "`shapeConfig.ocpus` is required for a flexible shape",
            )
        })?;
        if !(1.0..=64.0).contains(&ocpus) || (ocpus * 2.0).fract() != 0.0 {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`shapeConfig.ocpus` {ocpus} is out of range for `{shape}` (1 to 64)"),
            ));
        }
        let memory = cfg
            .get("memoryInGBs")
            .and_then(Value::as_f64)
            .unwrap_or(ocpus * 16.0);
        if memory < ocpus || memory > ocpus * 64.0 || memory > 1024.0 {
            return Err(error(400, "InvalidParameter", format!("`shapeConfig.memoryInGBs` {memory} must be between 1 and 64 GB per OCPU ({ocpus} OCPUs), at most 1024")));
        }
        return Ok(
            json!({ "ocpus": ocpus, "memoryInGBs": memory, "vcpus": (ocpus * 2.0) as u64, "baselineOcpuUtilization": cfg.get("baselineOcpuUtilization").cloned().unwrap_or(json!("BASELINE_1_1")), "processorDescription": "2.55 GHz AMD EPYC™ 7J13 (Milan)", "networkingBandwidthInGbps": ocpus, "maxVnicAttachments": 2, "gpus": 0, "localDisks": 0 }),
        );
    }
    let (_, ocpus, memory) = FIXED
        .iter()
        .find(|(s, _, _)| *s == shape)
        .ok_or_else(|| error(400, "InvalidParameter", format!("unknown shape `{shape}`")))?;
    if given.is_some_and(|g| !g.is_null()) {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`shapeConfig` is only for flexible shapes, not `{shape}`"),
        ));
    }
    Ok(
        json!({ "ocpus": ocpus, "memoryInGBs": memory, "vcpus": (ocpus * 2.0) as u64, "maxVnicAttachments": 2, "gpus": 0, "localDisks": 0 }),
    )
}

impl Ctx<'_> {
    fn after(&self, d: std::time::Duration) -> DateTime<Utc> {
        self.now + ChronoDuration::from_std(d).unwrap_or_default()
    }

    fn check_etag(&self, rec: &Record) -> Result<()> {
        etag_matches(&self.if_match, rec)
    }

    fn work_request(
        &mut self,
        op: &str,
        compartment: &str,
        entity: &str,
        id: &str,
        action: &str,
        finishes: DateTime<Utc>,
    ) -> String {
        let wr_id = new_ocid("workrequest", self.region_code);
        let uri = format!("/20160918/{}s/{id}", entity);
        self.world.work_requests.insert(
            wr_id.clone(),
            WorkRequestRec {
                id: wr_id.clone(),
                operation_type: op.to_string(),
                compartment_id: compartment.to_string(),
                resources: vec![json!({ "actionType": action, "entityType": entity, "identifier": id, "entityUri": uri })],
                accepted: self.now,
                finishes,
                failed: None,
            },
        );
        wr_id
    }

    fn instance(&mut self, id: &str) -> Result<&mut Record> {
        self.world.instances.get_mut(id).ok_or_else(|| {
            error(
                404,
                "NotAuthorizedOrNotFound",
                format!("Authorization failed or requested resource not found: instance `{id}`"),
            )
        })
    }

    fn image_any(&self, id: &str) -> Option<&Record> {
        self.world
            .images
            .get(id)
            .or_else(|| self.platform.iter().find(|r| r.id() == id))
    }

    fn reply_record(rec: &Record, status: u16) -> Reply {
        Reply::json(status, &Value::Object(rec.body.clone())).header("etag", rec.etag())
    }
}

/// Dispatch one authenticated Compute request.
pub fn handle(
    ctx: &mut Ctx<'_>,
    op: &str,
    segs: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Reply {
    let r = match op {
        "LaunchInstance" => launch(ctx, body),
        "ListInstances" => list_instances(ctx, query),
        "GetInstance" => ctx.instance(segs[1]).map(|r| Ctx::reply_record(r, 200)),
        "UpdateInstance" => update_instance(ctx, segs[1], body),
        "TerminateInstance" => terminate(ctx, segs[1], query),
        "InstanceAction" => action(ctx, segs[1], query, body),
        "ChangeInstanceCompartment" => change_compartment(ctx, "instance", segs[1], body),
        "CreateImage" => create_image(ctx, body),
        "ListImages" => list_images(ctx, query),
        "GetImage" => ctx
            .image_any(segs[1])
            .map(|r| Ctx::reply_record(r, 200))
            .ok_or_else(|| error(404, "NotAuthorizedOrNotFound", format!("Authorization failed or requested resource not found: image `{}`", segs[1]))),
        "UpdateImage" => update_image(ctx, segs[1], body),
        "DeleteImage" => delete_image(ctx, segs[1]),
        "ChangeImageCompartment" => change_compartment(ctx, "image", segs[1], body),
        "ListSubnets" => required_query(query, "compartmentId").map(|_| Reply::json(200, &json!(ctx.fixtures.subnets_json()))),
        "GetSubnet" => ctx.fixtures.subnet_json(segs[1]).map(|s| Reply::json(200, &s).header("etag", "subnet-1")).ok_or_else(|| not_found("subnet", segs[1])),
        "ListVcns" => required_query(query, "compartmentId").map(|_| Reply::json(200, &json!([ctx.fixtures.vcn_json()]))),
        "GetVcn" => (segs[1] == ctx.fixtures.vcn_id).then(|| Reply::json(200, &ctx.fixtures.vcn_json()).header("etag", "vcn-1")).ok_or_else(|| not_found("vcn", segs[1])),
        "GetWorkRequest" => ctx.world.work_requests.get(segs[1]).map(|w| Reply::json(200, &w.to_json(ctx.now))).ok_or_else(|| not_found("work request", segs[1])),
        "ListWorkRequests" => list_work_requests(ctx, query),
        "ListVnicAttachments" => list_vnic_attachments(ctx, query),
        "GetVnic" => ctx.world.vnics.get(segs[1]).map(|v| Reply::json(200, v).header("etag", "vnic-1")).ok_or_else(|| not_found("vnic", segs[1])),
        "ListWorkRequestErrors" => ctx
            .world
            .work_requests
            .get(segs[1])
            .map(|w| {
                let errs: Vec<Value> = w.failed.iter().filter(|_| ctx.now >= w.finishes).map(|m| json!({ "code": "InternalError", "message": m, "timestamp": rfc3339(w.finishes) })).collect();
                Reply::json(200, &json!(errs))
            })
            .ok_or_else(|| not_found("work request", segs[1])),
        _ => Err(error(404, "NotFound", "no such operation")),
    };
    r.unwrap_or_else(|e| e)
}

fn not_found(what: &str, id: &str) -> Reply {
    error(
        404,
        "NotAuthorizedOrNotFound",
        format!("Authorization failed or requested resource not found: {what} `{id}`"),
    )
}

fn required_query<'a>(query: &'a [(String, String)], k: &str) -> Result<&'a str> {
    q(query, k).ok_or_else(|| {
        error(
            400,
            "MissingParameter",
            format!("query parameter `{k}` is required"),
        )
    })
}

fn launch(ctx: &mut Ctx<'_>, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    let ad = required(&b, "availabilityDomain")?;
    if !ctx.fixtures.availability_domains.iter().any(|a| a == ad) {
        return Err(error(
            400,
            "InvalidParameter",
            format!(
                "`availabilityDomain` `{ad}` is not an availability domain of {} (known: {})",
                ctx.fixtures.region,
                ctx.fixtures.availability_domains.join(", ")
            ),
        ));
    }
    let compartment = required(&b, "compartmentId")?;
    check_compartment(compartment, "compartmentId")?;
    let shape = required(&b, "shape")?;
    let shape_cfg = shape_config(shape, b.get("shapeConfig"))?;
    let vnic = b.get("createVnicDetails").and_then(Value::as_object);
    let subnet = vnic
        .and_then(|v| v.get("subnetId"))
        .and_then(Value::as_str)
        .or(str_field(&b, "subnetId")?)
        .ok_or_else(|| {
            error(
                400,
                "MissingParameter",
                "`createVnicDetails.subnetId` is required",
            )
        })?;
    let private = match ctx.fixtures.subnet_json(subnet) {
        Some(s) => s["prohibitPublicIpOnVnic"].as_bool().unwrap_or(false),
        None => {
            return Err(error(
                400,
                "RelatedResourceNotAuthorizedOrNotFound",
                format!("subnet `{subnet}` not found or not authorized"),
            ))
        }
    };
    if private
        && vnic
            .and_then(|v| v.get("assignPublicIp"))
            .and_then(Value::as_bool)
            == Some(true)
    {
        return Err(error(
            400,
            "InvalidParameter",
            format!("subnet `{subnet}` prohibits public IPs: `assignPublicIp` must be false"),
        ));
    }
    if let Some(fd) = str_field(&b, "faultDomain")? {
        if !["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"].contains(&fd) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`faultDomain` `{fd}` is not FAULT-DOMAIN-1, -2 or -3"),
            ));
        }
    }
    let src = b.get("sourceDetails").and_then(Value::as_object).cloned();
    let (source, image_id) = match (&src, str_field(&b, "imageId")?) {
        (Some(s), _) => match s.get("sourceType").and_then(Value::as_str) {
            Some("image") => {
                let img = s.get("imageId").and_then(Value::as_str).ok_or_else(|| {
                    error(
                        400,
                        "MissingParameter",
                        "`sourceDetails.imageId` is required",
                    )
                })?;
                (Value::Object(s.clone()), Some(img.to_string()))
            }
            Some("bootVolume") => {
                let bv = s
                    .get("bootVolumeId")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        error(
                            400,
                            "MissingParameter",
                            "`sourceDetails.bootVolumeId` is required",
                        )
                    })?;
                if !ctx.world.boot_volumes.contains_key(bv) {
                    return Err(error(
                        400,
                        "RelatedResourceNotAuthorizedOrNotFound",
                        format!("boot volume `{bv}` not found or not authorized"),
                    ));
                }
                (Value::Object(s.clone()), None)
            }
            other => {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("`sourceDetails.sourceType` {other:?} is not `image` or `bootVolume`"),
                ))
            }
        },
        (None, Some(img)) => (
            json!({ "sourceType": "image", "imageId": img }),
            Some(img.to_string()),
        ),
        (None, None) => {
            return Err(error(
                400,
                "MissingParameter",
                "`sourceDetails` is required",
            ))
        }
    };
    let mut source = source;
    if let Some(img) = &image_id {
        match ctx.image_any(img) {
            None => {
                return Err(error(
                    400,
                    "RelatedResourceNotAuthorizedOrNotFound",
                    format!("image `{img}` not found or not authorized"),
                ))
            }
            Some(r) if r.state() != "AVAILABLE" => {
                return Err(error(
                    409,
                    "IncorrectState",
                    format!("image `{img}` is {}, not AVAILABLE", r.state()),
                ))
            }
            Some(_) => {}
        }
        if let Some(size) = source.get("bootVolumeSizeInGBs") {
            let ok = size.as_u64().is_some_and(|s| (50..=32768).contains(&s));
            if !ok {
                return Err(error(
                    400,
                    "InvalidParameter",
                    "`sourceDetails.bootVolumeSizeInGBs` must be between 50 and 32768",
                ));
            }
        } else {
            source["bootVolumeSizeInGBs"] = json!(47);
        }
    }
    let metadata = string_map(&b, "metadata")?.unwrap_or_default();
    let id = new_ocid("instance", ctx.region_code);
    let display_name = str_field(&b, "displayName")?
        .map(str::to_string)
        .unwrap_or_else(|| format!("instance{}", ctx.now.format("%Y%m%d%H%M%S")));
    let hostname = hostname_label(ctx.world, subnet, vnic, &b, &display_name)?;
    ctx.world.serial += 1;
    let body = json!({
        "id": id,
        "compartmentId": compartment,
        "availabilityDomain": ad,
        "faultDomain": str_field(&b, "faultDomain")?.unwrap_or("FAULT-DOMAIN-1"),
        "displayName": display_name,
        "lifecycleState": "PROVISIONING",
        "region": ctx.region_code,
        "shape": shape,
        "shapeConfig": shape_cfg,
        "sourceDetails": source,
        "imageId": image_id,
        "metadata": metadata,
        "extendedMetadata": b.get("extendedMetadata").cloned().unwrap_or(json!({})),
        "freeformTags": string_map(&b, "freeformTags")?.unwrap_or_default(),
        "definedTags": oracle_tags(ctx.key_id, ctx.now, defined_tags(&b)?),
        "systemTags": {},
        "timeCreated": rfc3339(ctx.now),
        "launchMode": "PARAVIRTUALIZED",
        "launchOptions": { "bootVolumeType": "PARAVIRTUALIZED", "firmware": "UEFI_64", "networkType": "PARAVIRTUALIZED", "remoteDataVolumeType": "PARAVIRTUALIZED", "isPvEncryptionInTransitEnabled": false, "isConsistentVolumeNamingEnabled": true },
        "agentConfig": { "isMonitoringDisabled": false, "isManagementDisabled": false, "areAllPluginsDisabled": false },
        "availabilityConfig": { "recoveryAction": "RESTORE_INSTANCE", "isLiveMigrationPreferred": null },
        "instanceOptions": { "areLegacyImdsEndpointsDisabled": false },
        "isCrossNumaNode": false,
    });
    let mut rec = Record::new(body.as_object().expect("object").clone());
    let ready = ctx.after(ctx.timings.launch);
    rec.steps = vec![Step {
        at: ready,
        state: "RUNNING".into(),
    }];
    let wr = ctx.work_request(
        "LaunchInstance",
        compartment,
        "instance",
        &id,
        "CREATED",
        ready,
    );
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    // The primary VNIC, in the launch subnet (ListVnicAttachments / GetVnic find it).
    let public = vnic
        .and_then(|v| v.get("assignPublicIp"))
        .and_then(Value::as_bool)
        .unwrap_or(!private);
    let (vnic_id, attachment_id) = (
        new_ocid("vnic", ctx.region_code),
        new_ocid("vnicattachment", ctx.region_code),
    );
    let n = ctx.world.serial % 250 + 2;
    let vnic_name = vnic
        .and_then(|v| v.get("displayName"))
        .and_then(Value::as_str)
        .unwrap_or(&display_name)
        .to_string();
    let mac = format!(
        "02:00:17:{:02X}:{:02X}:{:02X}",
        (ctx.world.serial >> 16) & 0xff,
        (ctx.world.serial >> 8) & 0xff,
        ctx.world.serial & 0xff
    );
    ctx.world.vnics.insert(
        vnic_id.clone(),
        json!({ "id": vnic_id, "compartmentId": compartment, "availabilityDomain": ad, "subnetId": subnet, "isPrimary": true, "lifecycleState": "AVAILABLE",
                "displayName": vnic_name, "hostnameLabel": hostname, "macAddress": mac,
                "privateIp": format!("10.0.{}.{n}", if private { 1 } else { 0 }), "publicIp": if public { Value::String(format!("203.0.113.{n}")) } else { Value::Null },
                "nsgIds": [], "freeformTags": {}, "definedTags": {},
                "timeCreated": rfc3339(ctx.now), "skipSourceDestCheck": false }),
    );
    ctx.world.vnic_attachments.insert(
        attachment_id.clone(),
        json!({ "id": attachment_id, "compartmentId": compartment, "availabilityDomain": ad, "instanceId": id, "vnicId": vnic_id, "subnetId": subnet, "lifecycleState": "ATTACHED", "nicIndex": 0, "timeCreated": rfc3339(ctx.now) }),
    );
    ctx.world.instances.insert(id, rec);
    ctx.mutated = true;
    Ok(reply)
}

/// The primary VNIC's `hostnameLabel`: `createVnicDetails.hostnameLabel` (or the deprecated
/// top-level `hostnameLabel`; both must agree), else one made from the display name as OCI does
/// (lower case, letters, digits and `-`, at most 63, starting with a letter; a number is appended
/// when the subnet has it already), none when `assignPrivateDnsRecord` is false or the name gives
/// no label.
fn hostname_label(
    world: &World,
    subnet: &str,
    vnic: Option<&Map<String, Value>>,
    b: &Map<String, Value>,
    display_name: &str,
) -> Result<Value> {
    let given = vnic
        .and_then(|v| v.get("hostnameLabel"))
        .and_then(Value::as_str);
    let legacy = str_field(b, "hostnameLabel")?;
    if let (Some(g), Some(l)) = (given, legacy) {
        if g != l {
            return Err(error(
                400,
                "InvalidParameter",
                "`hostnameLabel` and `createVnicDetails.hostnameLabel` differ",
            ));
        }
    }
    let taken = |label: &str| {
        world
            .vnics
            .values()
            .any(|v| v["subnetId"] == subnet && v["hostnameLabel"] == label)
    };
    if let Some(label) = given.or(legacy) {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.starts_with(|c: char| c.is_ascii_alphabetic())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`hostnameLabel` `{label}` is not a valid hostname (RFC 952 and RFC 1123)"),
            ));
        }
        if taken(label) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`hostnameLabel` `{label}` is already used in subnet `{subnet}`"),
            ));
        }
        return Ok(json!(label));
    }
    let dns = vnic
        .and_then(|v| v.get("assignPrivateDnsRecord"))
        .and_then(Value::as_bool)
        != Some(false);
    let base: String = display_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(58)
        .collect();
    if !dns || !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Ok(Value::Null);
    }
    let mut label = base.clone();
    let mut n = 1;
    while taken(&label) {
        n += 1;
        label = format!("{base}-{n}");
    }
    Ok(json!(label))
}

/// Sort list items as `sortBy`/`sortOrder` ask (TIMECREATED: newest first by default;
/// DISPLAYNAME: ascending by default, case-sensitive).
fn sort_items(items: &mut [Value], query: &[(String, String)], default_sort: &str) -> Result<()> {
    let sort_by = q(query, "sortBy").unwrap_or(default_sort);
    let (key, default_desc) = match sort_by {
        "TIMECREATED" => ("timeCreated", true),
        "DISPLAYNAME" => ("displayName", false),
        other => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`sortBy` `{other}` must be TIMECREATED or DISPLAYNAME"),
            ))
        }
    };
    let desc = match q(query, "sortOrder") {
        None => default_desc,
        Some(o) if o.eq_ignore_ascii_case("DESC") => true,
        Some(o) if o.eq_ignore_ascii_case("ASC") => false,
        Some(o) => {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`sortOrder` `{o}` must be ASC or DESC"),
            ))
        }
    };
    items.sort_by(|a, b| {
        let o = a[key]
            .as_str()
            .cmp(&b[key].as_str())
            .then(a["id"].as_str().cmp(&b["id"].as_str()));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    Ok(())
}

/// One page of `items`: `limit` 1..1000 (default 100); `page` is the opaque token of the previous
/// response's `opc-next-page`.
fn paginate(items: Vec<Value>, query: &[(String, String)]) -> Result<Reply> {
    let limit = page_limit(query, 100)?;
    let start = match q(query, "page") {
        None => 0,
        Some(p) => p
            .strip_prefix("kilnpage-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= items.len())
            .ok_or_else(|| {
                error(
                    400,
                    "InvalidParameter",
                    format!("`page` `{p}` is not a page token from this list"),
                )
            })?,
    };
    let end = (start + limit).min(items.len());
    let mut reply = Reply::json(200, &Value::Array(items[start..end].to_vec()));
    if end < items.len() {
        reply = reply.header("opc-next-page", format!("kilnpage-{end}"));
    }
    Ok(reply)
}

fn state_filter(query: &[(String, String)], v: &Value) -> bool {
    q(query, "lifecycleState").is_none_or(|s| {
        v["lifecycleState"]
            .as_str()
            .is_some_and(|x| x.eq_ignore_ascii_case(s))
    })
}

fn list_instances(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    check_compartment(compartment, "compartmentId")?;
    let items: Vec<Value> = ctx
        .world
        .instances
        .values()
        .map(|r| Value::Object(r.body.clone()))
        .filter(|v| v["compartmentId"] == compartment)
        .filter(|v| q(query, "availabilityDomain").is_none_or(|a| v["availabilityDomain"] == a))
        .filter(|v| q(query, "displayName").is_none_or(|d| v["displayName"] == d))
        .filter(|v| state_filter(query, v))
        .collect();
    let mut items = items;
    sort_items(&mut items, query, "TIMECREATED")?;
    paginate(items, query)
}

const UPDATABLE_INSTANCE: &[&str] = &[
    "displayName",
    "freeformTags",
    "definedTags",
    "securityAttributes",
    "agentConfig",
    "metadata",
    "extendedMetadata",
    "shape",
    "shapeConfig",
    "sourceDetails",
    "updateOperationConstraint",
    "instanceOptions",
    "faultDomain",
    "launchOptions",
    "availabilityConfig",
    "timeMaintenanceRebootDue",
    "dedicatedVmHostId",
    "platformConfig",
    "licensingConfigs",
    "capacityReservationId",
    "isAIEnterpriseEnabled",
];

fn update_instance(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    if let Some(k) = b.keys().find(|k| !UPDATABLE_INSTANCE.contains(&k.as_str())) {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` is not a field of UpdateInstanceDetails"),
        ));
    }
    let (key_id, now) = (ctx.key_id.to_string(), ctx.now);
    let _ = (key_id, now);
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    if matches!(rec.state(), "TERMINATING" | "TERMINATED") {
        return Err(error(
            409,
            "IncorrectState",
            format!("instance `{id}` is {}", rec.state()),
        ));
    }
    let mut rec = rec;
    if let Some(meta) = string_map(&b, "metadata")? {
        let old = rec
            .body
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for k in ["ssh_authorized_keys", "user_data"] {
            if old.get(k) != meta.get(k) {
                return Err(error(
                    400,
                    "InvalidParameter",
                    format!("metadata `{k}` cannot be changed after launch"),
                ));
            }
        }
        rec.body.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(s) = str_field(&b, "displayName")? {
        rec.body.insert("displayName".into(), json!(s));
    }
    if let Some(t) = string_map(&b, "freeformTags")? {
        rec.body.insert("freeformTags".into(), Value::Object(t));
    }
    if let Some(t) = defined_tags(&b)? {
        rec.body.insert("definedTags".into(), Value::Object(t));
    }
    if let Some(fd) = str_field(&b, "faultDomain")? {
        if !["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"].contains(&fd) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`faultDomain` `{fd}` is not FAULT-DOMAIN-1, -2 or -3"),
            ));
        }
        rec.body.insert("faultDomain".into(), json!(fd));
    }
    if b.contains_key("shape") || b.contains_key("shapeConfig") {
        let shape = str_field(&b, "shape")?
            .map(str::to_string)
            .unwrap_or_else(|| rec.body["shape"].as_str().unwrap_or("").to_string());
        let given = match b.get("shapeConfig") {
            Some(c) => {
                // Partial shape configs keep the current values.
                let mut merged = rec
                    .body
                    .get("shapeConfig")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Some(o) = c.as_object() {
                    merged.extend(o.clone());
                }
                Some(Value::Object(merged))
            }
            None if FLEX.contains(&shape.as_str()) => rec.body.get("shapeConfig").cloned(),
            None => None,
        };
        let cfg = shape_config(&shape, given.as_ref())?;
        rec.body.insert("shape".into(), json!(shape));
        rec.body.insert("shapeConfig".into(), cfg);
    }
    if let Some(v) = b.get("extendedMetadata") {
        rec.body.insert("extendedMetadata".into(), v.clone());
    }
    rec.touch();
    let compartment = rec.body["compartmentId"].as_str().unwrap_or("").to_string();
    let wr = ctx.work_request(
        "UpdateInstance",
        &compartment,
        "instance",
        id,
        "UPDATED",
        ctx.now,
    );
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    ctx.world.instances.insert(id.to_string(), rec);
    ctx.mutated = true;
    Ok(reply)
}

fn terminate(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)]) -> Result<Reply> {
    let flag = |k: &str| -> Result<Option<bool>> {
        match q(query, k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(error(
                400,
                "InvalidParameter",
                format!("`{k}` `{v}` must be true or false"),
            )),
        }
    };
    let preserve = flag("preserveBootVolume")?.unwrap_or(false);
    flag("preserveDataVolumesCreatedAtLaunch")?;
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    match rec.state() {
        "TERMINATED" => return Err(not_found("instance", id)),
        "TERMINATING" => {
            return Err(error(
                409,
                "IncorrectState",
                format!("instance `{id}` is already TERMINATING"),
            ))
        }
        _ => {}
    }
    let done = ctx.after(ctx.timings.terminate);
    let compartment = rec.body["compartmentId"].as_str().unwrap_or("").to_string();
    if preserve {
        let bv = new_ocid("bootvolume", ctx.region_code);
        ctx.world.boot_volumes.insert(
            bv.clone(),
            json!({ "id": bv, "sourceInstanceId": id, "compartmentId": compartment }),
        );
    }
    let rec = ctx.instance(id)?;
    rec.transition(
        "TERMINATING",
        vec![Step {
            at: done,
            state: "TERMINATED".into(),
        }],
    );
    let wr = ctx.work_request(
        "TerminateInstance",
        &compartment,
        "instance",
        id,
        "DELETED",
        done,
    );
    ctx.mutated = true;
    Ok(Reply::empty(204).header("opc-work-request-id", wr))
}

fn action(ctx: &mut Ctx<'_>, id: &str, query: &[(String, String)], body: &[u8]) -> Result<Reply> {
    let act = q(query, "action").unwrap_or("");
    if !body.is_empty() {
        let b = parse_body(body)?;
        let t = b.get("actionType").and_then(Value::as_str).ok_or_else(|| {
            error(
                400,
                "InvalidParameter",
                "`actionType` is required in InstancePowerActionDetails",
            )
        })?;
        let ok = matches!(
            (t, act),
            ("reset", "RESET") | ("softreset", "SOFTRESET") | ("rebootMigrate", "REBOOTMIGRATE")
        );
        if !ok {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`actionType` `{t}` does not go with action `{act}`"),
            ));
        }
    }
    let t = ctx.timings.clone();
    let rec = ctx.instance(id)?.clone();
    ctx.check_etag(&rec)?;
    let state = rec.state().to_string();
    let at = |d: std::time::Duration| ctx.after(d);
    let (now_state, steps): (&str, Vec<Step>) = match (act, state.as_str()) {
        ("STOP" | "SOFTSTOP", "STOPPED") | ("START", "RUNNING") => return Ok(Ctx::reply_record(&rec, 200)),
        ("STOP", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop), state: "STOPPED".into() }]),
        ("SOFTSTOP", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop * 3 / 2), state: "STOPPED".into() }]),
        ("START", "STOPPED") => ("STARTING", vec![Step { at: at(t.start), state: "RUNNING".into() }]),
        ("RESET" | "SOFTRESET" | "DIAGNOSTICREBOOT" | "REBOOTMIGRATE", "RUNNING") => ("STOPPING", vec![Step { at: at(t.stop), state: "STARTING".into() }, Step { at: at(t.stop + t.start), state: "RUNNING".into() }]),
        ("SENDDIAGNOSTICINTERRUPT", "RUNNING") => ("RUNNING", vec![]),
        ("STOP" | "START" | "SOFTSTOP" | "RESET" | "SOFTRESET" | "SENDDIAGNOSTICINTERRUPT" | "DIAGNOSTICREBOOT" | "REBOOTMIGRATE", s) => {
            return Err(error(409, "IncorrectState", format!("instance `{id}` is {s}: action {act} is not possible now")))
        }
        ("", _) => return Err(error(400, "MissingParameter", "query parameter `action` is required")),
        (other, _) => return Err(error(400, "InvalidParameter", format!("`action` `{other}` is not one of STOP, START, SOFTSTOP, RESET, SOFTRESET, SENDDIAGNOSTICINTERRUPT, DIAGNOSTICREBOOT, REBOOTMIGRATE"))),
    };
    let done = steps.last().map(|s| s.at).unwrap_or(ctx.now);
    let compartment = rec.body["compartmentId"].as_str().unwrap_or("").to_string();
    let rec = ctx.instance(id)?;
    rec.transition(now_state, steps);
    let reply = Ctx::reply_record(rec, 200);
    let wr = ctx.work_request(
        "InstanceAction",
        &compartment,
        "instance",
        id,
        "UPDATED",
        done,
    );
    ctx.mutated = true;
    Ok(reply.header("opc-work-request-id", wr))
}

fn change_compartment(ctx: &mut Ctx<'_>, kind: &str, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    let target = required(&b, "compartmentId")?.to_string();
    check_compartment(&target, "compartmentId")?;
    let now = ctx.now;
    let done = ctx.after(ctx.timings.move_);
    let if_match = ctx.if_match.clone();
    let rec = match kind {
        "instance" => ctx.world.instances.get_mut(id),
        _ => ctx.world.images.get_mut(id),
    }
    .ok_or_else(|| not_found(kind, id))?;
    etag_matches(&if_match, rec)?;
    if matches!(
        rec.state(),
        "TERMINATING" | "TERMINATED" | "DELETED" | "PROVISIONING" | "CREATING_IMAGE"
    ) {
        return Err(error(
            409,
            "IncorrectState",
            format!("{kind} `{id}` is {}", rec.state()),
        ));
    }
    rec.body.insert("compartmentId".into(), json!(target));
    rec.touch();
    let etag = rec.etag();
    let _ = now;
    if kind == "instance" {
        // A VNIC attachment is in its instance's compartment; the VNIC itself stays where it is.
        for a in ctx.world.vnic_attachments.values_mut() {
            if a["instanceId"] == id {
                a["compartmentId"] = json!(target);
            }
        }
    }
    let op = if kind == "instance" {
        "ChangeInstanceCompartment"
    } else {
        "ChangeImageCompartment"
    };
    let wr = ctx.work_request(op, &target, kind, id, "RELATED", done);
    ctx.mutated = true;
    Ok(Reply::empty(200)
        .header("etag", etag)
        .header("opc-work-request-id", wr))
}

fn create_image(ctx: &mut Ctx<'_>, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    let compartment = required(&b, "compartmentId")?.to_string();
    check_compartment(&compartment, "compartmentId")?;
    let instance_id = str_field(&b, "instanceId")?.map(str::to_string);
    let source = b
        .get("imageSourceDetails")
        .and_then(Value::as_object)
        .cloned();
    if let Some(m) = str_field(&b, "launchMode")? {
        if !["NATIVE", "EMULATED", "PARAVIRTUALIZED", "CUSTOM"].contains(&m) {
            return Err(error(
                400,
                "InvalidParameter",
                format!("`launchMode` `{m}` is not NATIVE, EMULATED, PARAVIRTUALIZED or CUSTOM"),
            ));
        }
    }
    let id = new_ocid("image", ctx.region_code);
    let (os, version, base, ready, state) = match (&instance_id, &source) {
        (Some(_), Some(_)) => {
            return Err(error(
                400,
                "InvalidParameter",
                "give either `instanceId` or `imageSourceDetails`, not both",
            ))
        }
        (None, None) => {
            return Err(error(
                400,
                "MissingParameter",
                "`instanceId` or `imageSourceDetails` is required",
            ))
        }
        (Some(iid), None) => {
            let (capture, cooldown) = (ctx.timings.capture, ctx.timings.cooldown);
            let now = ctx.now;
            let ready = ctx.after(capture);
            let last = ctx.world.last_capture.get(iid).copied();
            let inst = ctx.instance(iid).map_err(|_| {
                error(
                    400,
                    "RelatedResourceNotAuthorizedOrNotFound",
                    format!("instance `{iid}` not found or not authorized"),
                )
            })?;
            let back = match inst.state() {
                "RUNNING" => "RUNNING",
                "STOPPED" => "STOPPED",
                "CREATING_IMAGE" => return Err(error(409, "IncorrectState", format!("instance `{iid}` is already being captured: one image at a time"))),
                s => return Err(error(409, "IncorrectState", format!("instance `{iid}` is {s}: it must be RUNNING or STOPPED to capture an image"))),
            };
            if let Some(last) = last {
                let until = last + ChronoDuration::from_std(cooldown).unwrap_or_default();
                if now < until {
                    return Err(error(409, "IncorrectState", format!("instance `{iid}` was captured recently: the next image can be made after {}", rfc3339(until))));
                }
            }
            // A running source is shut down for the capture and restarts afterwards (as OCI documents).
            inst.transition(
                "CREATING_IMAGE",
                vec![Step {
                    at: ready,
                    state: back.into(),
                }],
            );
            let image_id = inst
                .body
                .get("imageId")
                .and_then(Value::as_str)
                .map(str::to_string);
            ctx.world.last_capture.insert(iid.clone(), ready);
            let (os, version) = image_id
                .as_deref()
                .and_then(|i| ctx.image_any(i))
                .map(|r| {
                    (
                        r.body["operatingSystem"].clone(),
                        r.body["operatingSystemVersion"].clone(),
                    )
                })
                .unwrap_or((json!("Custom"), json!("1")));
            (
                os,
                version,
                image_id.map(Value::String).unwrap_or(Value::Null),
                ready,
                "PROVISIONING",
            )
        }
        (None, Some(s)) => {
            match s.get("sourceType").and_then(Value::as_str) {
                Some("objectStorageTuple") => {
                    for k in ["namespaceName", "bucketName", "objectName"] {
                        if s.get(k).and_then(Value::as_str).is_none() {
                            return Err(error(400, "MissingParameter", format!("`imageSourceDetails.{k}` is required")));
                        }
                    }
                }
                Some("objectStorageUri") => {
                    if s.get("sourceUri").and_then(Value::as_str).is_none() {
                        return Err(error(400, "MissingParameter", "`imageSourceDetails.sourceUri` is required"));
                    }
                }
                other => return Err(error(400, "InvalidParameter", format!("`imageSourceDetails.sourceType` {other:?} is not objectStorageTuple or objectStorageUri"))),
            }
            let ready = ctx.after(ctx.timings.import);
            (
                s.get("operatingSystem").cloned().unwrap_or(json!("Custom")),
                s.get("operatingSystemVersion")
                    .cloned()
                    .unwrap_or(json!("1")),
                Value::Null,
                ready,
                "IMPORTING",
            )
        }
    };
    let body = json!({
        "id": id,
        "compartmentId": compartment,
        "displayName": str_field(&b, "displayName")?.map(str::to_string).unwrap_or_else(|| format!("image{}", ctx.now.format("%Y%m%d%H%M%S"))),
        "lifecycleState": state,
        "operatingSystem": os,
        "operatingSystemVersion": version,
        "baseImageId": base,
        "launchMode": str_field(&b, "launchMode")?.unwrap_or("PARAVIRTUALIZED"),
        "launchOptions": { "bootVolumeType": "PARAVIRTUALIZED", "firmware": "UEFI_64", "networkType": "PARAVIRTUALIZED", "remoteDataVolumeType": "PARAVIRTUALIZED", "isPvEncryptionInTransitEnabled": false, "isConsistentVolumeNamingEnabled": true },
        "createImageAllowed": true,
        "sizeInMBs": 47694,
        "billableSizeInGBs": 3,
        "listingType": "NONE",
        "agentFeatures": null,
        "freeformTags": string_map(&b, "freeformTags")?.unwrap_or_default(),
        "definedTags": oracle_tags(ctx.key_id, ctx.now, defined_tags(&b)?),
        "timeCreated": rfc3339(ctx.now),
    });
    let mut rec = Record::new(body.as_object().expect("object").clone());
    rec.steps = vec![Step {
        at: ready,
        state: "AVAILABLE".into(),
    }];
    let mut wr_resources = vec![
        json!({ "actionType": "CREATED", "entityType": "image", "identifier": id, "entityUri": format!("/20160918/images/{id}") }),
    ];
    if let Some(iid) = &instance_id {
        wr_resources.push(json!({ "actionType": "RELATED", "entityType": "instance", "identifier": iid, "entityUri": format!("/20160918/instances/{iid}") }));
    }
    let wr = ctx.work_request("CreateImage", &compartment, "image", &id, "CREATED", ready);
    if let Some(w) = ctx.world.work_requests.get_mut(&wr) {
        w.resources = wr_resources;
    }
    let reply = Ctx::reply_record(&rec, 200).header("opc-work-request-id", wr);
    ctx.world.images.insert(id, rec);
    ctx.mutated = true;
    Ok(reply)
}

fn list_images(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    check_compartment(compartment, "compartmentId")?;
    let filter = |v: &Value| {
        q(query, "operatingSystem").is_none_or(|o| v["operatingSystem"] == o)
            && q(query, "operatingSystemVersion").is_none_or(|o| v["operatingSystemVersion"] == o)
            && q(query, "displayName").is_none_or(|d| v["displayName"] == d)
            && state_filter(query, v)
    };
    // Platform images first, then the compartment's custom images (each part sorted on its own).
    let platform: Vec<Value> = ctx
        .platform
        .iter()
        .map(|r| Value::Object(r.body.clone()))
        .filter(|v| filter(v))
        .collect();
    let custom: Vec<Value> = ctx
        .world
        .images
        .values()
        .map(|r| Value::Object(r.body.clone()))
        .filter(|v| {
            v["compartmentId"] == compartment && filter(v) && v["lifecycleState"] != "DELETED"
        })
        .collect();
    let mut platform = platform;
    let mut custom = custom;
    sort_items(&mut platform, query, "TIMECREATED")?;
    sort_items(&mut custom, query, "TIMECREATED")?;
    platform.extend(custom);
    paginate(platform, query)
}

fn update_image(ctx: &mut Ctx<'_>, id: &str, body: &[u8]) -> Result<Reply> {
    let b = parse_body(body)?;
    const FIELDS: &[&str] = &[
        "displayName",
        "freeformTags",
        "definedTags",
        "operatingSystem",
        "operatingSystemVersion",
    ];
    if let Some(k) = b.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(error(
            400,
            "InvalidParameter",
            format!("`{k}` is not a field of UpdateImageDetails"),
        ));
    }
    if ctx.platform.iter().any(|r| r.id() == id) {
        return Err(error(404, "NotAuthorizedOrNotFound", format!("Authorization failed or requested resource not found: image `{id}` (platform images cannot be changed)")));
    }
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .images
        .get_mut(id)
        .ok_or_else(|| not_found("image", id))?;
    etag_matches(&if_match, rec)?;
    if rec.state() == "DELETED" {
        return Err(error(
            409,
            "IncorrectState",
            format!("image `{id}` is DELETED"),
        ));
    }
    for k in ["displayName", "operatingSystem", "operatingSystemVersion"] {
        if let Some(v) = str_field(&b, k)? {
            rec.body.insert(k.into(), json!(v));
        }
    }
    if let Some(t) = string_map(&b, "freeformTags")? {
        rec.body.insert("freeformTags".into(), Value::Object(t));
    }
    if let Some(t) = defined_tags(&b)? {
        rec.body.insert("definedTags".into(), Value::Object(t));
    }
    rec.touch();
    let reply = Ctx::reply_record(rec, 200);
    ctx.mutated = true;
    Ok(reply)
}

fn delete_image(ctx: &mut Ctx<'_>, id: &str) -> Result<Reply> {
    let if_match = ctx.if_match.clone();
    let rec = ctx
        .world
        .images
        .get_mut(id)
        .ok_or_else(|| not_found("image", id))?;
    etag_matches(&if_match, rec)?;
    match rec.state() {
        "DELETED" => return Err(not_found("image", id)),
        "PROVISIONING" | "IMPORTING" => {
            return Err(error(
                409,
                "IncorrectState",
                format!(
                    "image `{id}` is {}: wait until it is AVAILABLE",
                    rec.state()
                ),
            ))
        }
        _ => {}
    }
    rec.transition("DELETED", Vec::new());
    ctx.mutated = true;
    Ok(Reply::empty(204))
}

fn list_vnic_attachments(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    check_compartment(compartment, "compartmentId")?;
    let instance = q(query, "instanceId");
    let terminated = |id: &str| {
        ctx.world
            .instances
            .get(id)
            .is_some_and(|r| r.state() == "TERMINATED")
    };
    let items: Vec<Value> = ctx
        .world
        .vnic_attachments
        .values()
        .filter(|a| a["compartmentId"] == compartment)
        .filter(|a| instance.is_none_or(|i| a["instanceId"] == i))
        .map(|a| {
            let mut a = a.clone();
            if terminated(a["instanceId"].as_str().unwrap_or("")) {
                a["lifecycleState"] = json!("DETACHED");
            }
            a
        })
        .collect();
    let mut items = items;
    items.sort_by(|a, b| {
        a["timeCreated"]
            .as_str()
            .cmp(&b["timeCreated"].as_str())
            .then(a["id"].as_str().cmp(&b["id"].as_str()))
    });
    paginate(items, query)
}

fn list_work_requests(ctx: &mut Ctx<'_>, query: &[(String, String)]) -> Result<Reply> {
    let compartment = required_query(query, "compartmentId")?;
    let resource = q(query, "resourceId");
    let items: Vec<Value> = ctx
        .world
        .work_requests
        .values()
        .filter(|w| w.compartment_id == compartment)
        .filter(|w| resource.is_none_or(|r| w.resources.iter().any(|x| x["identifier"] == r)))
        .map(|w| w.to_json(ctx.now))
        .collect();
    let mut items = items;
    items.sort_by(|a, b| {
        b["timeAccepted"]
            .as_str()
            .cmp(&a["timeAccepted"].as_str())
            .then(a["id"].as_str().cmp(&b["id"].as_str()))
    });
    paginate(items, query)
}

/// Store a replayable response for an `opc-retry-token`.
pub fn remember(
    world: &mut World,
    token: &str,
    op: &str,
    target: &str,
    body_sha256: &str,
    now: DateTime<Utc>,
    reply: &Reply,
) {
    world.retry_tokens.insert(
        token.to_string(),
        Replay {
            operation: op.to_string(),
            target: target.to_string(),
            body_sha256: body_sha256.to_string(),
            at: now,
            status: reply.status,
            headers: reply.headers.clone(),
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        },
    );
}
