//! The one table of manifest keys: validation walks it, `kiln schema` renders it as JSON Schema,
//! so the two cannot diverge.

use serde_json::{json, Map, Value};

/// A key's type.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    Int,
    /// Integer or float.
    Num,
    Bool,
    /// Table of strings (tags, metadata).
    StrMap,
    /// Table whose values are each one of the strings (`agent_config.plugins`: name → state).
    EnumMap(&'static [&'static str]),
    /// Table of tables (defined tags: namespace → key → value).
    NestedMap,
    StrList,
    Enum(&'static [&'static str]),
    /// One of the strings, or an array of strings (`fault_domains = "spread"` or `[...]`).
    EnumOrStrList(&'static [&'static str]),
    Table(&'static [Field]),
    /// Table of named tables (`[instance.NAME]`).
    Named(&'static [Field]),
    /// `[vars]`: any scalar values.
    Vars,
    /// An array of tables (`[[moved]]`).
    TableArray(&'static [Field]),
    /// A count (non-negative integer) or a percentage string (`"25%"`).
    CountOrPercent,
    /// An image version: `"previous"` or a count back from the newest.
    Version,
    /// A string (an OCID) or a table of these keys (a lookup by name).
    StrOrTable(&'static [Field]),
    /// An array of [`Ty::StrOrTable`] (`nsg_ids`).
    StrOrTableList(&'static [Field]),
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
}

use super::launch;

const fn f(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field { name, ty, doc }
}

pub const PROVIDER: &[Field] = &[
    f("profile", Ty::Str, "Profile of the OCI config file (default: `--profile`, `OCI_CLI_PROFILE`, then DEFAULT)"),
    f("config_file", Ty::Str, "OCI config file (default: `--config-file`, `OCI_CLI_CONFIG_FILE`, `OCI_CONFIG_FILE`, `~/.oci/config`)"),
    f("region", Ty::Str, "Region id or 3-letter code (default: the profile's region)"),
    f("endpoint", Ty::Str, "`emulator` for the embedded emulator, or a URL that overrides the region's endpoint"),
    f("parallelism", Ty::Int, "How many actions run at once (default 10)"),
    f("endpoints", Ty::StrMap, "Per region: `emulator` or a URL, e.g. `{ us-phoenix-1 = \"http://127.0.0.1:8002\" }` (over `endpoint`)"),
    f(
        "auth",
        Ty::Enum(&["api_key", "security_token", "resource_principal", "instance_principal"]),
        "How to authenticate, as Oracle's CLI names it (overridden by `OCI_CLI_AUTH`, then `--auth`; default: `security_token` for a profile with a `security_token_file`, else `api_key`)",
    ),
    f(
        "ca_bundle",
        Ty::Str,
        "PEM file of the CA certificates to trust instead of the built-in roots, relative to the manifest directory (overridden by `OCI_DEFAULT_CERTS_PATH`)",
    ),
];

pub const BACKEND: &[Field] = &[
    f(
        "kind",
        Ty::Enum(&["local", "object_storage"]),
        "`object_storage`: the state is an object in an OCI Object Storage bucket, shared by every machine; `local` (the default without `[backend]`): `state/<env>.json`",
    ),
    f("namespace", Ty::Str, "Object Storage namespace (`oci os ns get`)"),
    f("bucket", Ty::Str, "Bucket that holds the state objects"),
    f(
        "prefix",
        Ty::Str,
        "Object name prefix: the state of environment ENV is `<prefix><ENV>.json` (default empty)",
    ),
    f(
        "region",
        Ty::Str,
        "Region of the bucket (default: the provider's)",
    ),
    f(
        "endpoint",
        Ty::Str,
        "`emulator` or a URL overriding the Object Storage endpoint (default: the provider's emulator endpoint, else `https://objectstorage.{region}.{domain}`)",
    ),
];

pub const SHAPE_CONFIG: &[Field] = &[
    f("ocpus", Ty::Num, "OCPUs of a flexible shape"),
    f("memory_in_gbs", Ty::Num, "Memory in GB of a flexible shape"),
    f("vcpus", Ty::Int, "vCPUs of a flexible shape"),
    f(
        "baseline_ocpu_utilization",
        Ty::Enum(&["BASELINE_1_1", "BASELINE_1_2", "BASELINE_1_8"]),
        "Burstable baseline",
    ),
];

pub const IMAGE_LOOKUP: &[Field] = &[
    f("os", Ty::Str, "Operating system, e.g. `Oracle Linux`"),
    f("version", Ty::Str, "Operating system version, e.g. `9`"),
    f(
        "shape",
        Ty::Str,
        "Shape the image must support (default: the instance's shape)",
    ),
];

pub const COMPARTMENT_PATH: &[Field] = &[f(
    "path",
    Ty::Str,
    "Names of compartments from the tenancy root down, separated by `/`, e.g. `prod/app`",
)];

pub const NETWORK_LOOKUP: &[Field] = &[
    f("vcn", Ty::Str, "Display name of the VCN"),
    f(
        "display_name",
        Ty::Str,
        "Display name of the subnet or network security group in that VCN",
    ),
    f(
        "compartment",
        Ty::StrOrTable(COMPARTMENT_PATH),
        "Compartment of the VCN and of what is looked up in it, an OCID or `{ path = ... }` (default: the instance's)",
    ),
];

pub const BY_LOOKUP: &[Field] = &[f(
    "lookup",
    Ty::Table(NETWORK_LOOKUP),
    "Found by display name with list calls when planning; none or several found is an error",
)];

pub const INSTANCE_SOURCE: &[Field] = &[
    f("image", Ty::Str, "An image OCID or `image.NAME`"),
    f("version", Ty::Version, "With `image = \"image.NAME\"`: a version it keeps (`keep`), `\"previous\"` or a count back from the newest (0 = newest), resolved from the state when planning"),
    f("env", Ty::Str, "With `image = \"image.NAME\"`: the image that environment's state records for this instance's region (promotion), read when planning"),
    f("boot_volume", Ty::Str, "A boot volume OCID"),
    f(
        "image_lookup",
        Ty::Table(IMAGE_LOOKUP),
        "The newest platform image matching these, resolved when the instance is created",
    ),
];

pub const PLACEMENT: &[Field] = &[
    f(
        "availability_domains",
        Ty::StrList,
        "Availability domains to spread the members over (member i goes to the (i mod N)-th) and to fall back to, in turn, when one has no capacity",
    ),
    f(
        "fault_domains",
        Ty::EnumOrStrList(&["spread", "any"]),
        "`spread`: the members of an availability domain go to its fault domains in turn; a list: those fault domains in turn; `any` (default): OCI chooses",
    ),
];

pub const INSTANCE: &[Field] = &[
    f("region", Ty::Str, "Region it lives in, id or 3-letter code (default: `[defaults]`, else the provider's)"),
    f("count", Ty::Int, "Declare N members `NAME[0]` … `NAME[N-1]` (`${count.index}` in any string is the member's index)"),
    f("for_each", Ty::StrList, "Declare one member `NAME[\"KEY\"]` per key (`${each.key}` in any string is the member's key)"),
    f("enabled", Ty::Bool, "`false`: declare nothing (e.g. in one environment); default true"),
    f(
        "display_name",
        Ty::Str,
        "Display name (default: the table's NAME)",
    ),
    f("compartment", Ty::StrOrTable(COMPARTMENT_PATH), "Compartment OCID, or `{ path = \"prod/app\" }` (its names from the tenancy root down, resolved at plan time)"),
    f(
        "availability_domain",
        Ty::Str,
        "Availability domain, e.g. `kIdk:US-ASHBURN-AD-1`",
    ),
    f(
        "fault_domain",
        Ty::Str,
        "Fault domain, e.g. `FAULT-DOMAIN-1`",
    ),
    f(
        "placement",
        Ty::Table(PLACEMENT),
        "Where the members go, decided at create and kept: spread over availability and fault domains, with capacity fallback (instead of `availability_domain`/`fault_domain`)",
    ),
    f("shape", Ty::Str, "Shape, e.g. `VM.Standard.E4.Flex`"),
    f(
        "shape_config",
        Ty::Table(SHAPE_CONFIG),
        "Flexible shape configuration",
    ),
    f("subnet", Ty::StrOrTable(BY_LOOKUP), "Subnet OCID of the primary VNIC, or `{ lookup = { vcn = \"prod\", display_name = \"app\" } }` (resolved at plan time)"),
    f(
        "assign_public_ip",
        Ty::Bool,
        "Whether the primary VNIC gets a public IP",
    ),
    f(
        "nsg_ids",
        Ty::StrOrTableList(BY_LOOKUP),
        "Network security groups of the primary VNIC, each an OCID or `{ lookup = { vcn = \"prod\", display_name = \"web\" } }` (at most 5; changed in place)",
    ),
    f(
        "hostname_label",
        Ty::Str,
        "DNS hostname label of the primary VNIC, unique in the subnet (changed in place)",
    ),
    f(
        "private_ip",
        Ty::Str,
        "Private IPv4 address of the primary VNIC, free in the subnet (a change replaces the instance)",
    ),
    f(
        "skip_source_dest_check",
        Ty::Bool,
        "Skip the primary VNIC's source/destination check (changed in place)",
    ),
    f(
        "source",
        Ty::Table(INSTANCE_SOURCE),
        "What the instance boots from: exactly one of `image`, `boot_volume`, `image_lookup`",
    ),
    f(
        "boot_volume_size_in_gbs",
        Ty::Int,
        "Boot volume size in GB (50 to 32768)",
    ),
    f("metadata", Ty::StrMap, "Instance metadata"),
    f(
        "user_data_file",
        Ty::Str,
        "File read and base64-encoded into `metadata.user_data` (relative to the manifest)",
    ),
    f(
        "ssh_authorized_keys_file",
        Ty::Str,
        "File read into `metadata.ssh_authorized_keys` (relative to the manifest)",
    ),
    f("freeform_tags", Ty::StrMap, "Free-form tags"),
    f(
        "defined_tags",
        Ty::NestedMap,
        "Defined tags: namespace → key → value",
    ),
    f(
        "state",
        Ty::Enum(&["RUNNING", "STOPPED"]),
        "Desired power state (default RUNNING)",
    ),
    f(
        "preserve_boot_volume",
        Ty::Bool,
        "Keep the boot volume when the instance is terminated (default false)",
    ),
    f(
        "ignore_changes",
        Ty::StrList,
        "Attribute paths whose differences are ignored, e.g. `metadata` or `freeform_tags.owner`",
    ),
    f(
        "prevent_destroy",
        Ty::Bool,
        "Refuse any plan that would destroy or replace this instance",
    ),
    f(
        "create_before_destroy",
        Ty::Bool,
        "On replacement, launch the new instance before terminating the old one",
    ),
    f(
        "instance_options",
        Ty::Table(launch::INSTANCE_OPTIONS.fields),
        launch::INSTANCE_OPTIONS.doc,
    ),
    f(
        "launch_options",
        Ty::Table(launch::LAUNCH_OPTIONS.fields),
        launch::LAUNCH_OPTIONS.doc,
    ),
    f(
        "availability_config",
        Ty::Table(launch::AVAILABILITY_CONFIG.fields),
        launch::AVAILABILITY_CONFIG.doc,
    ),
    f(
        "platform_config",
        Ty::Table(launch::PLATFORM_CONFIG.fields),
        launch::PLATFORM_CONFIG.doc,
    ),
    f(
        "agent_config",
        Ty::Table(launch::AGENT_CONFIG.fields),
        launch::AGENT_CONFIG.doc,
    ),
    f("preemptible", Ty::Table(launch::PREEMPTIBLE), launch::PREEMPTIBLE_DOC),
    f("boot_volume_vpus_per_gb", Ty::Int, launch::VPUS_DOC),
    f("kms_key_id", Ty::Str, launch::KMS_DOC),
    f("capacity_reservation_id", Ty::Str, launch::CAPACITY_RESERVATION_DOC),
    f("replace_method", REPLACE_METHOD, REPLACE_METHOD_DOC),
    f("rollout", Ty::Table(ROLLOUT), ROLLOUT_DOC),
];

pub const HEALTH_CHECK: &[Field] = &[
    f(
        "command",
        Ty::StrList,
        "Program and arguments run in the manifest directory without a shell (write `[\"sh\", \"-c\", \"…\"]` for one), with `KILN_ADDRESS`, `KILN_INSTANCE_ID`, `KILN_PRIVATE_IP`, `KILN_PUBLIC_IP`, `KILN_HOSTNAME`, `KILN_REGION` set; exit 0 is healthy",
    ),
    f("timeout", Ty::Str, "How long the check may keep failing before the member is unhealthy, e.g. `5m` (default `5m`)"),
    f("interval", Ty::Str, "Time between two tries, e.g. `10s` (default `10s`)"),
];

pub const ROLLOUT: &[Field] = &[
    f("max_surge", Ty::CountOrPercent, "How many members beyond `count` may exist during a rollout: a count or a percentage of the fleet, rounded up (default 1)"),
    f("max_unavailable", Ty::CountOrPercent, "How many members may be unhealthy during a rollout: a count or a percentage of the fleet, rounded down (default 0)"),
    f("min_healthy_time", Ty::Str, "How long a new member must stay healthy before the next old one goes, e.g. `30s` (default `0s`)"),
    f("health_check", Ty::Table(HEALTH_CHECK), "The check a member passes after RUNNING (default: none, RUNNING is healthy)"),
    f("on_failure", Ty::Enum(&["pause", "rollback"]), "When a member fails its gate: `pause` (stop, keep what moved) or `rollback` (move the moved members back); default `pause`"),
];

pub const REPLACE_METHOD: Ty = Ty::Enum(&["instance", "boot_volume"]);
const REPLACE_METHOD_DOC: &str = "How a change of `source` reaches a live instance: `instance` (terminate and launch, the default) or `boot_volume` (OCI's boot volume replacement: the OCID, VNIC, IPs and hostname stay)";
const ROLLOUT_DOC: &str = "Replace a fleet's members a few at a time, gated by health (the same as a `[instance.NAME.rollout]` table)";

pub const IMAGE_OBJECT: &[Field] = &[
    f("namespace", Ty::Str, "Object Storage namespace"),
    f("bucket", Ty::Str, "Bucket"),
    f("object", Ty::Str, "Object name"),
];

pub const IMAGE_SOURCE: &[Field] = &[
    f(
        "object_storage",
        Ty::Table(IMAGE_OBJECT),
        "Import from an Object Storage object",
    ),
    f(
        "uri",
        Ty::Str,
        "Import from an Object Storage URI (pre-authenticated request)",
    ),
    f(
        "adopted",
        Ty::Str,
        "An image made outside kiln, adopted by `kiln import --compartment` (its OCID): kept, never rebuilt",
    ),
];

pub const IMAGE: &[Field] = &[
    f("region", Ty::Str, "Region it lives in, id or 3-letter code (default: `[defaults]`, else the provider's)"),
    f("count", Ty::Int, "Declare N members `NAME[0]` … `NAME[N-1]` (`${count.index}` in any string is the member's index)"),
    f("for_each", Ty::StrList, "Declare one member `NAME[\"KEY\"]` per key (`${each.key}` in any string is the member's key)"),
    f("enabled", Ty::Bool, "`false`: declare nothing (e.g. in one environment); default true"),
    f("display_name", Ty::Str, "Display name (default: the table's NAME)"),
    f("compartment", Ty::StrOrTable(COMPARTMENT_PATH), "Compartment OCID, or `{ path = \"prod/app\" }` (resolved at plan time)"),
    f("from_instance", Ty::Str, "`instance.NAME` to capture the image from (it is stopped first)"),
    f("source", Ty::Table(IMAGE_SOURCE), "Import source (or the OCID of an adopted image), instead of `from_instance`"),
    f("launch_mode", Ty::Enum(&["NATIVE", "EMULATED", "PARAVIRTUALIZED", "CUSTOM"]), "Launch mode"),
    f("operating_system", Ty::Str, "Operating system name"),
    f("operating_system_version", Ty::Str, "Operating system version"),
    f("freeform_tags", Ty::StrMap, "Free-form tags"),
    f("defined_tags", Ty::NestedMap, "Defined tags: namespace → key → value"),
    f("restart_source", Ty::Bool, "Start the source instance again after the capture when its desired state is RUNNING (default true)"),
    f("prevent_destroy", Ty::Bool, "Refuse any plan that would destroy or replace this image"),
    f("regions", Ty::StrList, "Regions to copy the image to besides its own (ids or 3-letter codes): exported, copied through Object Storage and imported in each"),
    f("export", Ty::Table(IMAGE_EXPORT), "Where copies are exported to: `{ namespace, bucket }` in the image's region (the bucket of the same name in each region of `regions`)"),
    f("keep_exports", Ty::Bool, "Keep the exported objects once every copy is AVAILABLE (default false: deleted)"),
    f("keep", Ty::Int, "Versions kept when the image is rebuilt (default 1: the previous image is deleted); the oldest beyond it are deleted, never one an instance still runs"),
    f("shapes", Ty::StrOrTableList(IMAGE_SHAPE), "Shapes instances of this image may use (its shape compatibility entries): a shape name, or `{ shape, ocpus = { min, max }, memory_in_gbs = { min, max } }` for a flexible shape's range; an instance on another shape is a plan-time error"),
    f("capabilities", Ty::Vars, "Capabilities the image pins (its capability schema, from OCI's global image capability schema): name → value, e.g. `{ \"Compute.Firmware\" = \"UEFI_64\" }`; names and values are checked against the global schema at plan time"),
];

pub const IMAGE_EXPORT: &[Field] = &[
    f("namespace", Ty::Str, "Object Storage namespace"),
    f(
        "bucket",
        Ty::Str,
        "Bucket (created in a target region when missing)",
    ),
];

const IMAGE_RANGE: &[Field] = &[
    f("min", Ty::Int, "Smallest allowed"),
    f("max", Ty::Int, "Largest allowed"),
];

const IMAGE_SHAPE: &[Field] = &[
    f("shape", Ty::Str, "Shape name, e.g. `VM.Standard.E5.Flex`"),
    f(
        "ocpus",
        Ty::Table(IMAGE_RANGE),
        "OCPUs an instance of this image may have on the shape",
    ),
    f(
        "memory_in_gbs",
        Ty::Table(IMAGE_RANGE),
        "Memory (GB) an instance of this image may have on the shape",
    ),
];

pub const DEFAULTS: &[Field] = &[
    f(
        "region",
        Ty::Str,
        "Region of every resource (default: the provider's)",
    ),
    f(
        "compartment",
        Ty::StrOrTable(COMPARTMENT_PATH),
        "Compartment OCID (or `{ path = ... }`) for every resource",
    ),
    f(
        "availability_domain",
        Ty::Str,
        "Availability domain for every instance",
    ),
    f("fault_domain", Ty::Str, "Fault domain for every instance"),
    f(
        "placement",
        Ty::Table(PLACEMENT),
        "Placement of every instance that sets neither `placement` nor `availability_domain`",
    ),
    f("shape", Ty::Str, "Shape for every instance"),
    f(
        "shape_config",
        Ty::Table(SHAPE_CONFIG),
        "Shape configuration for every instance",
    ),
    f(
        "subnet",
        Ty::StrOrTable(BY_LOOKUP),
        "Subnet OCID (or `{ lookup = ... }`) for every instance",
    ),
    f(
        "assign_public_ip",
        Ty::Bool,
        "Public IP choice for every instance",
    ),
    f(
        "nsg_ids",
        Ty::StrOrTableList(BY_LOOKUP),
        "Network security groups (OCIDs or `{ lookup = ... }`) of every instance's primary VNIC",
    ),
    f(
        "skip_source_dest_check",
        Ty::Bool,
        "Source/destination check choice for every instance's primary VNIC",
    ),
    f(
        "source",
        Ty::Table(INSTANCE_SOURCE),
        "Boot source for every instance",
    ),
    f(
        "boot_volume_size_in_gbs",
        Ty::Int,
        "Boot volume size for every instance",
    ),
    f(
        "metadata",
        Ty::StrMap,
        "Metadata merged into every instance's",
    ),
    f(
        "ssh_authorized_keys_file",
        Ty::Str,
        "SSH keys file for every instance",
    ),
    f(
        "freeform_tags",
        Ty::StrMap,
        "Free-form tags merged into every resource's",
    ),
    f(
        "defined_tags",
        Ty::NestedMap,
        "Defined tags merged into every resource's",
    ),
    f("preserve_boot_volume", Ty::Bool, "For every instance"),
    f(
        "instance_options",
        Ty::Table(launch::INSTANCE_OPTIONS.fields),
        launch::INSTANCE_OPTIONS.doc,
    ),
    f(
        "launch_options",
        Ty::Table(launch::LAUNCH_OPTIONS.fields),
        launch::LAUNCH_OPTIONS.doc,
    ),
    f(
        "availability_config",
        Ty::Table(launch::AVAILABILITY_CONFIG.fields),
        launch::AVAILABILITY_CONFIG.doc,
    ),
    f(
        "platform_config",
        Ty::Table(launch::PLATFORM_CONFIG.fields),
        launch::PLATFORM_CONFIG.doc,
    ),
    f(
        "agent_config",
        Ty::Table(launch::AGENT_CONFIG.fields),
        launch::AGENT_CONFIG.doc,
    ),
    f(
        "preemptible",
        Ty::Table(launch::PREEMPTIBLE),
        launch::PREEMPTIBLE_DOC,
    ),
    f("boot_volume_vpus_per_gb", Ty::Int, launch::VPUS_DOC),
    f("kms_key_id", Ty::Str, launch::KMS_DOC),
    f(
        "capacity_reservation_id",
        Ty::Str,
        launch::CAPACITY_RESERVATION_DOC,
    ),
    f("replace_method", REPLACE_METHOD, REPLACE_METHOD_DOC),
    f("rollout", Ty::Table(ROLLOUT), ROLLOUT_DOC),
];

pub const TOP: &[Field] = &[
    f("provider", Ty::Table(PROVIDER), "How to reach OCI"),
    f(
        "backend",
        Ty::Table(BACKEND),
        "Where the state lives (default: `state/<env>.json` next to the manifest)",
    ),
    f(
        "defaults",
        Ty::Table(DEFAULTS),
        "Values applied to every resource that does not set them",
    ),
    f(
        "vars",
        Ty::Vars,
        "Named values: `${vars.NAME}` in any string is replaced by the value",
    ),
    f(
        "instance",
        Ty::Named(INSTANCE),
        "Compute instances, one table per instance: `[instance.NAME]`",
    ),
    f(
        "image",
        Ty::Named(IMAGE),
        "Custom images, one table per image: `[image.NAME]`",
    ),
    f(
        "policy",
        Ty::Table(POLICY),
        "Policies checked against every plan: `dirs = [\"policies\"]`",
    ),
    f(
        "moved",
        Ty::TableArray(MOVED),
        "`[[moved]]`: an address renamed in the manifest, so its state moves with it (never destroy + create)",
    ),
];

pub const POLICY: &[Field] = &[f(
    "dirs",
    Ty::StrList,
    "Directories of Rego policies (conftest conventions) every `kiln plan` and `kiln apply` checks the plan against, relative to the manifest",
)];

pub const MOVED: &[Field] = &[
    f("from", Ty::Str, "The address in state, e.g. `instance.web`"),
    f(
        "to",
        Ty::Str,
        "The address in the manifest now, e.g. `instance.web[0]`",
    ),
];

fn ty_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::Int => json!({ "type": "integer" }),
        Ty::Num => json!({ "type": "number" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::StrMap => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        Ty::NestedMap => json!({ "type": "object", "additionalProperties": { "type": "object" } }),
        Ty::EnumMap(values) => {
            json!({ "type": "object", "additionalProperties": { "type": "string", "enum": values } })
        }
        Ty::StrList => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::EnumOrStrList(values) => json!({ "oneOf": [
            { "type": "string", "enum": values },
            { "type": "array", "items": { "type": "string" } }
        ] }),
        Ty::Table(fields) => table_schema(fields),
        Ty::Named(fields) => {
            json!({ "type": "object", "additionalProperties": table_schema(fields) })
        }
        Ty::TableArray(fields) => json!({ "type": "array", "items": table_schema(fields) }),
        Ty::CountOrPercent => json!({ "oneOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "pattern": "^(100|[1-9]?[0-9])%$" }
        ] }),
        Ty::Version => json!({ "oneOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "enum": ["previous"] }
        ] }),
        Ty::Vars => {
            json!({ "type": "object", "additionalProperties": { "type": ["string", "integer", "number", "boolean"] } })
        }
        Ty::StrOrTable(fields) => json!({ "oneOf": [{ "type": "string" }, table_schema(fields)] }),
        Ty::StrOrTableList(fields) => json!({ "type": "array", "items": {
            "oneOf": [{ "type": "string" }, table_schema(fields)]
        } }),
    }
}

fn table_schema(fields: &[Field]) -> Value {
    let mut props = Map::new();
    for field in fields {
        let mut s = ty_schema(field.ty);
        s["description"] = json!(field.doc);
        props.insert(field.name.to_string(), s);
    }
    json!({ "type": "object", "properties": props, "additionalProperties": false })
}

/// The JSON Schema of `kiln.toml` (and of `envs/<env>.toml`, which has the same shape).
pub fn json_schema() -> Value {
    let mut s = table_schema(TOP);
    s["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    s["$id"] = json!("https://kiln.dev/schema/kiln.schema.json");
    s["title"] = json!("kiln manifest");
    s
}
