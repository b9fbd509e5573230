//! An OCI Compute API emulator (`kiln emulator`, and embedded for `endpoint = "emulator"`).
//!
//! It speaks the real wire protocol (API version 20160918: paths, camelCase JSON, headers, error
//! bodies) strictly enough that Oracle's own `oci` CLI works against it with `--endpoint`, and it is
//! the stand-in for OCI in every kiln test and benchmark. It is independent of the client in
//! [`crate::oci`]: its own signature verifier ([`auth`]) and its own JSON shapes ([`api`]), so a
//! mistake on one side cannot be mirrored on the other (it shares only the OCI config-file parser,
//! to load trusted keys).
//!
//! It is served with hyper directly rather than axum: one handler routes every path (the raw
//! request target is needed for signature checks anyway), and the `--fault-reset` fault needs to
//! drop the connection itself, which a router cannot.
//!
//! ## Where things are
//! - [`config`](EmulatorConfig): how it is run, its lifecycle [`Timings`], its startup errors.
//! - `server` ([`start`], [`RunningEmulator`]): the listener, the accept loop, the handle, and
//!   what wraps every reply (`opc-request-id`, stats, the request log).
//! - `pipeline`: one request from arrival to reply (authentication, body cap, limits, faults,
//!   retry tokens, the handler, persistence), in that order.
//! - [`routes`]: the one route table — every operation, its method and path, its handler.
//! - The handlers, by resource family: [`instances`] (and [`instance_changes`]), [`images`] (and
//!   [`image_export`]), [`volumes`] (and [`volume_changes`]), [`network`],
//!   [`identity`], [`shapes`], [`work_requests`], [`object_storage`] (and [`object_copy`]); their shared helpers and
//!   context in [`api`]; the records in [`store`]; the regions served together, which a
//!   cross-region CopyObject reaches, in [`peers`].
//!
//! ## What it models
//! - **Compute** ([`instances`], [`instance_changes`], [`images`], [`shapes`]): LaunchInstance, Get/List/Update/
//!   TerminateInstance, InstanceAction, ChangeInstanceCompartment; Create/Get/List/Update/
//!   DeleteImage, ChangeImageCompartment, ExportImage ([`image_export`]); ListShapes; an image's
//!   shape compatibility entries ([`image_shapes`], which LaunchInstance and a boot volume
//!   replacement enforce); the global image capability schema and its versions, and images'
//!   capability schemas ([`capabilities`]). Every field of Oracle's SDK `Instance` and
//!   `Image` models is in every response (null or empty where OCI would say so).
//! - **Block Volume** ([`volumes`]): a launch from an image makes a boot volume and attaches it;
//!   Get/List/DeleteBootVolume, Get/ListBootVolumeAttachments; UpdateBootVolume and
//!   UpdateBootVolumeKmsKey ([`volume_changes`]: PROVISIONING a while, If-Match).
//! - **Networking** ([`network`]): one VCN with a public and a private /18 subnet and three network
//!   security groups per region (`web`, and two named `app`: Get/ListNetworkSecurityGroups,
//!   [`nsgs`]); the primary VNIC of every launch, its attachment and its primary
//!   private IP; ListPrivateIps (by VNIC or subnet), ListIpv6s (none: the subnets have no IPv6
//!   prefix); the ephemeral public IP of each VNIC that has one: ListPublicIps (AD scope; REGION
//!   scope lists reserved IPs and those of NAT gateways, none here), GetPublicIp,
//!   GetPublicIpByPrivateIpId.
//! - **Identity** ([`identity`], Identity API paths under the same `/20160918`):
//!   ListAvailabilityDomains, ListFaultDomains, Get/ListCompartments (the tenancy root, `kiln-emulator`,
//!   `dev`, `prod` and `prod/app` below it), tag namespaces and tags.
//! - **Work requests** ([`work_requests`]): Get, List, errors and logs, for every mutation.
//! - **Object Storage** ([`object_storage`]), for remote state and image files to import;
//!   CreateBucket, CopyObject to another region served with this one and its work request
//!   (`/workRequests/{id}` at the endpoint's root), for image copies ([`object_copy`], [`peers`]).
//! - **The embedded emulator** ([`embedded`]): `endpoint = "emulator"`, one emulated cloud per
//!   state directory however many kiln runs use it at once (one serves, the others attach).
//! - Fixtures ([`fixtures`]) are per region (`Fixtures::new(region)`); compartments and tag
//!   namespaces are the same in every region, as OCI's identity is global.
//!
//! ## Behaviour, and the choices made where OCI's documentation is silent
//! - Principals ([`tokens`], [`federation`]): a `keyId` of `ST$<token>` is accepted for a token the
//!   emulator issued (RS256 with its own key) that has not expired on its token clock, when the
//!   request is signed with the token's `jwk` key; the auth service's `POST /v1/x509` (instance
//!   certificates chained to a trusted CA, the chain path-validated by [`cert_chain`]) and
//!   `POST /v1/authentication/refresh` are served on the emulator's own URL, and tests mint
//!   session tokens and RPSTs with [`RunningEmulator::issue_token`].
//! - Every request except `/_emulator/*` must carry a valid signature (see [`auth`]); failures are
//!   401 `NotAuthenticated` with the reason in the message (no secret is ever echoed). The
//!   signature over the headers is checked before any of the body is read; the body is then read
//!   up to a cap per service (1 MiB for Compute, 64 MiB for Object Storage: 413
//!   `RequestEntityTooLarge` beyond it, see [`body`]) and checked against the signed hash.
//! - Every response has an `opc-request-id`: the client's own id followed by two server parts when
//!   the client sent one (as OCI composes it), else three `/`-separated 32-hex parts.
//! - **No silent drops** ([`details`]): a request body is checked field by field against the
//!   SDK's details type. A modelled field is type-checked, kept and returned (LaunchInstance's
//!   `agentConfig`, `instanceOptions`, `availabilityConfig`, `launchOptions`, `platformConfig`,
//!   `preemptibleInstanceConfig`, `securityAttributes`, `ipxeScript`, `extendedMetadata`; the VNIC
//!   details `privateIp`, `hostnameLabel`, `displayName`, `skipSourceDestCheck`, `nsgIds`, tags —
//!   GetVnic returns them; `capacityReservationId` and `sourceDetails.kmsKeyId`, checked against
//!   the fixtures' reservation and Vault keys, [`related`]). A field of the type that is not
//!   modelled (dedicated hosts, VLANs, launch volume attachments, dense-I/O shape options, …) or
//!   no field of it at all is 400 `InvalidParameter` naming it.
//! - Etags change on every mutation of a resource, lifecycle transitions included (a resource's
//!   version counter is hashed); If-Match mismatches on Update/Terminate/Action/ChangeCompartment/
//!   UpdateImage/DeleteImage/DeleteBootVolume/UpdateBootVolume/UpdateBootVolumeKmsKey are 412 `NoEtagMatch`. `If-Match: *` matches
//!   anything. A VNIC's etag is a digest of the VNIC, guarding UpdateVnic ([`vnics`]: NSGs,
//!   hostname label, source/destination check, names and tags; the label unique in the subnet,
//!   the NSGs the VCN's).
//! - `opc-retry-token` on POST/PUT: the same token with the same operation, target and body within
//!   24 h replays the first response (status, body, etag; a new opc-request-id); the same token with
//!   a different operation or body is 409 `InvalidatedRetryToken` (no documented code exists).
//!   Only successful (2xx) responses are remembered, as OCI does not hold failures against a token.
//! - Status codes: TerminateInstance, DeleteImage and DeleteBootVolume answer 204;
//!   ChangeInstanceCompartment and ChangeImageCompartment 202 with no body.
//! - Lifecycles run on the wall clock × `--time-scale` and are evaluated lazily on every request
//!   (so they survive `--data` restarts), for the records that have a step due ([`store::Index`]:
//!   a request costs what it touches, not the size of the world). At time-scale 1.0: launch → RUNNING 60 s (its boot
//!   volume AVAILABLE after 30 s), stop 30 s, start 30 s, terminate 45 s, image capture 8 min (a
//!   RUNNING source is CREATING_IMAGE and comes back RUNNING, a STOPPED one comes back STOPPED),
//!   image import 10 min, a compartment move 5 s, one capture per instance at a time plus a 20 min
//!   cooldown after each capture (409 `IncorrectState`). STOP on a STOPPED instance and START on a
//!   RUNNING one are accepted as no-ops (200).
//! - A move puts the record in the target compartment at once; an instance is MOVING until the
//!   move's work request succeeds, then back in the state it had (an image has no MOVING state and
//!   stays AVAILABLE). Only RUNNING/STOPPED instances and AVAILABLE images move (409 otherwise).
//!   The instance's VNIC and boot volume attachments move with it; the VNIC and the volume stay.
//! - UpdateInstance: a new shape, or new OCPUs or memory, on a RUNNING instance reboots it
//!   (STOPPING → STARTING → RUNNING over stop + start time; the work request finishes then);
//!   `updateOperationConstraint: AVOID_DOWNTIME` then is 400. `shapeConfig` takes only
//!   UpdateInstanceShapeConfigDetails fields: a server-set field of InstanceShapeConfig
//!   (`processorDescription`, `gpus`, …) is 400. Left-out shape config values keep their current
//!   values. `ssh_authorized_keys` and `user_data` in metadata cannot change (400).
//! - Launch validation: unknown AD or shape → 400 `InvalidParameter`; flexible shapes take OCPUs
//!   and memory within the shape's ranges (ListShapes shows them) and the shape's defaults for
//!   what is left out (1 OCPU, the default GB per OCPU); a fixed shape refuses a `shapeConfig`; an
//!   image of the other architecture (x86 on `VM.Standard.A1.Flex`, Arm elsewhere) → 400; an
//!   unknown subnet, image, boot volume or NSG → 400 `RelatedResourceNotAuthorizedOrNotFound`; an
//!   image that is not AVAILABLE → 409 `IncorrectState`; a public IP in the private subnet → 400;
//!   a private IP or hostname label already used in the subnet → 409 `Conflict`.
//! - Boot volumes: a boot volume that is attached (or not AVAILABLE) cannot boot a new instance
//!   (409), nor one in another availability domain (400). Terminating detaches the volume and,
//!   unless `preserveBootVolume=true`, deletes it (TERMINATING → TERMINATED). The instance's
//!   `sourceDetails` names the boot volume size (47 GB by default).
//! - Compartments are fixtures: the tenancy root of every trusted key, `kiln-emulator`, `dev`,
//!   `prod`, and any given with `--compartment`. A well-formed OCID of any other is 404
//!   `NotAuthorizedOrNotFound` wherever a compartment is named; a malformed one is 400.
//! - Defined tags: namespaces `Oracle-Tags` (CreatedBy, CreatedOn) and `Operations` (CostCenter,
//!   Environment, Owner, Project); a namespace or key that does not exist is 400 (names match
//!   case-insensitively). OCI adds `Oracle-Tags` on create.
//! - Terminated instances stay listable as TERMINATED (their attachments read DETACHED, their
//!   private IPs are released); deleted images are DELETED on Get and leave ListImages. ListImages
//!   lists platform images first (for any compartment), then the compartment's custom images;
//!   `shape` keeps the images that shape can boot. `limit` is 1..1000 (default 100).
//! - Page tokens are keysets, not offsets ([`list`]): a list walked while resources are created or
//!   deleted never repeats an item and never skips one that existed throughout.
//! - CreateImage from Object Storage imports only an object that exists in the emulator's own
//!   namespace (the seeded `images` bucket, or one made with CreateBucket): any other is accepted
//!   (200, IMPORTING) and then fails — the work request ends FAILED with an error, and the image
//!   is DELETED; so does an exported image imported as what it is not ([`image_export`]).
//! - Work request statuses are the SDK model's: ACCEPTED (at the instant it is made), IN_PROGRESS,
//!   SUCCEEDED, FAILED; never CANCELING or CANCELED (there is no CancelWorkRequest).
//! - The seeded network is visible from every compartment.
//! - Limits ([`limits`]): `--rate-limit OPERATION=RATE[:BURST]` answers 429 `TooManyRequests`
//!   beyond a token bucket per tenancy and operation; `--capacity SHAPE@AD[/FD]=N` makes a launch
//!   beyond the room of a shape in a place fail as OCI does (500 `InternalError`, "Out of host
//!   capacity."), creating nothing.
//! - Faults: per request, after authentication and before any change, a seeded RNG draws a dropped
//!   connection (`--fault-reset`), a 429 `TooManyRequests` (`--fault-429`) or a 500
//!   `InternalServerError` / 503 `ServiceUnavailable` (`--fault-5xx`). Faulted requests change
//!   nothing and are counted in the stats like any other. `--fault-reset-after` drops the
//!   connection *after* a mutating request (POST/PUT/DELETE) took effect, so the client cannot
//!   tell whether it did: the case retry tokens and read-back checks exist for.
//! - Object Storage (for remote state) is served by the same server under `/n/…`: see
//!   [`object_storage`] for its subset and choices. PutObject is verified as Oracle's SDK signs it:
//!   without the body headers.
//! - `GET /_emulator/stats`: request counts per OCI operation name and `total`; `errors.<Op>` for
//!   answers of 400 and above; `unknown_route` and `unknown_route.<METHOD> <path>` (OCIDs elided)
//!   for requests to paths the emulator does not serve, so a client's unserved calls show; injected
//!   faults as `fault.reset`, `fault.429`, `fault.5xx`, `fault.reset_after`; answers of the rate
//!   limits ([`limits`]) as `throttled` and `throttled.<Op>`. `GET
//!   /_emulator/fixtures`: the seeded ids. Neither needs a signature.
//! - `kiln emulator -v` logs every request at info level (method, path, status, duration,
//!   operation, opc-request-id) — never a header's value, so never the Authorization header.
//!
//! ## Where it knowingly differs from OCI
//! - One region per server (`kiln emulator --region a --region b` runs one server per region,
//!   each a world of its own on its own port, as OCI's regions share nothing but identity); a
//!   taken hostname label is refused at once with 409 `Conflict`, where OCI accepts the launch
//!   and fails its work request (`vcn-error`: "Hostname … is already used in subnet"). One VCN, two subnets, no IPv6, no secondary VNICs, no block volumes
//!   besides boot volumes, no dedicated hosts, capacity reservations, cluster placement groups,
//!   instance configurations or pools (their fields are refused, see above).
//! - Security attributes (ZPR) are kept and returned as given; their namespaces are not checked.
//! - Auto-assigned public IPs come from 203.0.113.0/21 (documentation space). An ephemeral public
//!   IP is derived from its VNIC when read (its OCID is the VNIC's with `publicip`), not a record
//!   of its own: no reserved public IPs, no public IP pools, no Create/Update/DeletePublicIp.
//! - Error messages are the emulator's own; codes and statuses follow OCI's documented ones.
//! - Images captured from an instance are of its architecture; imported ones are x86, except an
//!   exported image, which keeps its own.
//! - An exported image's object holds only a header (its metadata, as JSON): GetObject returns
//!   that (and HeadObject its length), while ListObjects and GetBucket count its billable size
//!   ([`image_export`]). Objects are written whole when the work request that writes them ends.
//! - Lifecycle durations are fixed (× the time scale), never random.

pub mod api;
pub mod auth;
pub mod body;
pub mod boot_replace;
pub mod capabilities;
pub mod cert_chain;
mod config;
pub mod details;
pub mod embedded;
pub mod federation;
pub mod fixtures;
pub mod identity;
pub mod image_export;
pub mod image_shapes;
pub mod images;
pub mod instance_changes;
pub mod instances;
pub mod limits;
pub mod list;
pub mod network;
pub mod nsgs;
pub mod object_copy;
pub mod object_storage;
pub mod peers;
mod pipeline;
pub mod related;
pub mod routes;
mod server;
pub mod shapes;
pub mod store;
pub mod tokens;
pub mod vnics;
pub mod volume_changes;
pub mod volumes;
pub mod work_requests;

use chrono::{DateTime, Utc};

pub use auth::{TrustedKey, Verifier};
pub use body::BodyLimits;
pub use config::{EmulatorConfig, EmulatorError, Timings};
pub use fixtures::{Compartment, Fixtures, PlatformImage, TagNamespace};
pub use server::{start, InstanceState, RunningEmulator};
pub use store::World;
pub use tokens::Principal;

/// Verify one request with a pinned clock (for tests of the verifier against fixed vectors).
pub fn verify_request_at(
    keys: &[TrustedKey],
    req: &auth::SignedRequest<'_>,
    now: DateTime<Utc>,
) -> Result<String, String> {
    Verifier::new(keys).verify_at(req, now)
}
