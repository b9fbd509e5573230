//! The emulator's one route table ([`ROUTES`]): every operation of Compute (and the other
//! services under `/20160918`) and of Object Storage (under `/n`), with the method and path that
//! reach it and the handler that answers it. Both uses are derived from it — naming a request's
//! operation ([`find`], for stats, rate limits and the signing rules) and answering it
//! ([`Handler`]) — so a route cannot be served without a name or named without being served.
//!
//! A path is written as OCI's API reference writes it: `{name}` takes one segment, `{name*}` one
//! or more (an object name with `/`s in it). The first segment names the service
//! ([`Service`]); the pipeline strips it (`/20160918`, `/n`) before matching the rest, and hands
//! the handlers the decoded segments after it. The auth service's two routes (`/v1/x509`,
//! `/v1/authentication/refresh`) are not here: they authenticate themselves and are served before
//! the pipeline reads anything ([`super::federation`]).

use serde_json::Value;

use super::api::{self, Ctx, Reply};
use super::object_storage::{self, Request};
use super::store::World;
use super::Fixtures;
use super::{
    capabilities, identity, image_export, image_shapes, images, instance_changes, instances,
    network, nsgs, object_copy, shapes, vnics, volume_changes, volumes, work_requests,
};

/// A request as a Compute-side handler sees it: the decoded segments after `/20160918`, the query
/// and the body (already authenticated and capped).
pub struct Args<'r> {
    pub segs: &'r [&'r str],
    pub query: &'r [(String, String)],
    pub body: &'r [u8],
}

impl Args<'_> {
    /// The segment at `i` (`""` when the path is shorter).
    pub fn seg(&self, i: usize) -> &str {
        self.segs.get(i).copied().unwrap_or("")
    }

    /// The resource id of `/<collection>/<id>…`.
    pub fn id(&self) -> &str {
        self.seg(1)
    }
}

/// Answers a Compute-side request (the caller settles the world, keeps retry tokens and saves).
pub type ComputeHandler = fn(&mut Ctx<'_>, &Args<'_>) -> api::Result<Reply>;

/// Answers an Object Storage request: the reply and whether the world changed.
pub type ObjectHandler = fn(&mut World, &Fixtures, &Request<'_>) -> api::Result<(Reply, bool)>;

/// What answers a route; its variant is the route's service.
#[derive(Clone, Copy)]
pub enum Handler {
    Compute(ComputeHandler),
    Objects(ObjectHandler),
}

/// The services of the route table, each under its own first path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Compute, Block Volume, Networking, Identity and Work Requests, under `/20160918`.
    Compute,
    /// Object Storage, under `/n` (no API version).
    Objects,
    /// Object Storage's work requests, under `/workRequests` at the root of its endpoint.
    ObjectWorkRequests,
}

/// One operation: how it is reached and what answers it.
pub struct Route {
    pub method: &'static str,
    /// The full path pattern (`/20160918/instances/{instanceId}`).
    pub path: &'static str,
    /// A query parameter the request must carry to be this operation (InstanceAction's `action`).
    pub query: Option<&'static str>,
    /// The OCI operation name (`LaunchInstance`), as the stats and `--rate-limit` name it.
    pub operation: &'static str,
    pub handler: Handler,
}

impl Route {
    pub fn service(&self) -> Service {
        match self.handler {
            Handler::Compute(_) => Service::Compute,
            Handler::Objects(_) if self.path.starts_with("/workRequests") => {
                Service::ObjectWorkRequests
            }
            Handler::Objects(_) => Service::Objects,
        }
    }

    /// Whether a request to `service` with these segments (after the service's prefix) and query
    /// is this route.
    fn matches(
        &self,
        service: Service,
        method: &str,
        segs: &[&str],
        query: &[(String, String)],
    ) -> bool {
        if self.service() != service || self.method != method {
            return false;
        }
        if let Some(key) = self.query {
            if !query.iter().any(|(k, _)| k == key) {
                return false;
            }
        }
        // The first segment is the service's prefix, stripped from `segs` by the caller.
        let pattern: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let pattern = &pattern[1..];
        let mut i = 0;
        for (n, p) in pattern.iter().enumerate() {
            if p.starts_with('{') && p.ends_with("*}") {
                return n == pattern.len() - 1 && segs.len() > i;
            }
            match segs.get(i) {
                Some(s) if p.starts_with('{') || s == p => i += 1,
                _ => return false,
            }
        }
        i == segs.len()
    }
}

/// The route a request is (`None`: no such route); the first that matches, in table order.
pub fn find(
    service: Service,
    method: &str,
    segs: &[&str],
    query: &[(String, String)],
) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.matches(service, method, segs, query))
}

const fn compute(
    method: &'static str,
    path: &'static str,
    operation: &'static str,
    handler: ComputeHandler,
) -> Route {
    Route {
        method,
        path,
        query: None,
        operation,
        handler: Handler::Compute(handler),
    }
}

const fn objects(
    method: &'static str,
    path: &'static str,
    operation: &'static str,
    handler: ObjectHandler,
) -> Route {
    Route {
        method,
        path,
        query: None,
        operation,
        handler: Handler::Objects(handler),
    }
}

/// `POST /20160918/instances/{id}?action=…`: a route that needs a query parameter.
const fn with_query(mut route: Route, key: &'static str) -> Route {
    route.query = Some(key);
    route
}

fn get_instance(c: &mut Ctx<'_>, a: &Args<'_>) -> api::Result<Reply> {
    c.instance(a.id()).map(|r| Ctx::reply_record(r, 200))
}

fn get_image(c: &mut Ctx<'_>, a: &Args<'_>) -> api::Result<Reply> {
    c.image_any(a.id())
        .map(|r| Ctx::reply_record(r, 200))
        .ok_or_else(|| api::not_found("image", a.id()))
}

fn get_namespace(_: &mut World, f: &Fixtures, _: &Request<'_>) -> api::Result<(Reply, bool)> {
    Ok((Reply::json(200, &Value::from(f.namespace.clone())), false))
}

/// Every route the emulator serves (the `/_emulator/*` test routes and the auth service aside).
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    compute("POST", "/20160918/instances", "LaunchInstance", |c, a| instances::launch(c, a.body)),
    compute("GET", "/20160918/instances", "ListInstances", |c, a| instances::list(c, a.query)),
    compute("GET", "/20160918/instances/{instanceId}", "GetInstance", get_instance),
    compute("PUT", "/20160918/instances/{instanceId}", "UpdateInstance", |c, a| instance_changes::update(c, a.id(), a.body)),
    compute("DELETE", "/20160918/instances/{instanceId}", "TerminateInstance", |c, a| instance_changes::terminate(c, a.id(), a.query)),
    with_query(compute("POST", "/20160918/instances/{instanceId}", "InstanceAction", |c, a| instance_changes::action(c, a.id(), a.query, a.body)), "action"),
    compute("POST", "/20160918/instances/{instanceId}/actions/changeCompartment", "ChangeInstanceCompartment", |c, a| instance_changes::change_compartment(c, "instance", a.id(), a.body)),
    compute("POST", "/20160918/images", "CreateImage", |c, a| images::create(c, a.body)),
    compute("GET", "/20160918/images", "ListImages", |c, a| images::list(c, a.query)),
    compute("GET", "/20160918/images/{imageId}", "GetImage", get_image),
    compute("PUT", "/20160918/images/{imageId}", "UpdateImage", |c, a| images::update(c, a.id(), a.body)),
    compute("DELETE", "/20160918/images/{imageId}", "DeleteImage", |c, a| images::delete(c, a.id())),
    compute("POST", "/20160918/images/{imageId}/actions/export", "ExportImage", |c, a| image_export::export(c, a.id(), a.body)),
    compute("POST", "/20160918/images/{imageId}/actions/changeCompartment", "ChangeImageCompartment", |c, a| instance_changes::change_compartment(c, "image", a.id(), a.body)),
    compute("PUT", "/20160918/images/{imageId}/shapes/{shapeName}", "AddImageShapeCompatibilityEntry", |c, a| image_shapes::add(c, a.id(), a.seg(3), a.body)),
    compute("GET", "/20160918/images/{imageId}/shapes/{shapeName}", "GetImageShapeCompatibilityEntry", |c, a| image_shapes::get(c, a.id(), a.seg(3))),
    compute("GET", "/20160918/images/{imageId}/shapes", "ListImageShapeCompatibilityEntries", |c, a| image_shapes::list(c, a.id(), a.query)),
    compute("DELETE", "/20160918/images/{imageId}/shapes/{shapeName}", "RemoveImageShapeCompatibilityEntry", |c, a| image_shapes::remove(c, a.id(), a.seg(3))),
    compute("GET", "/20160918/computeGlobalImageCapabilitySchemas", "ListComputeGlobalImageCapabilitySchemas", |c, a| capabilities::list_global(c, a.query)),
    compute("GET", "/20160918/computeGlobalImageCapabilitySchemas/{computeGlobalImageCapabilitySchemaId}", "GetComputeGlobalImageCapabilitySchema", |_, a| capabilities::get_global(a.id())),
    compute("GET", "/20160918/computeGlobalImageCapabilitySchemas/{computeGlobalImageCapabilitySchemaId}/versions", "ListComputeGlobalImageCapabilitySchemaVersions", |_, a| capabilities::list_versions(a.id(), a.query)),
    compute("GET", "/20160918/computeGlobalImageCapabilitySchemas/{computeGlobalImageCapabilitySchemaId}/versions/{computeGlobalImageCapabilitySchemaVersionName}", "GetComputeGlobalImageCapabilitySchemaVersion", |_, a| capabilities::get_version(a.id(), a.seg(3))),
    compute("POST", "/20160918/computeImageCapabilitySchemas", "CreateComputeImageCapabilitySchema", |c, a| capabilities::create(c, a.body)),
    compute("GET", "/20160918/computeImageCapabilitySchemas", "ListComputeImageCapabilitySchemas", |c, a| capabilities::list(c, a.query)),
    compute("GET", "/20160918/computeImageCapabilitySchemas/{computeImageCapabilitySchemaId}", "GetComputeImageCapabilitySchema", |c, a| capabilities::get(c, a.id(), a.query)),
    compute("PUT", "/20160918/computeImageCapabilitySchemas/{computeImageCapabilitySchemaId}", "UpdateComputeImageCapabilitySchema", |c, a| capabilities::update(c, a.id(), a.body)),
    compute("DELETE", "/20160918/computeImageCapabilitySchemas/{computeImageCapabilitySchemaId}", "DeleteComputeImageCapabilitySchema", |c, a| capabilities::delete(c, a.id())),
    compute("GET", "/20160918/shapes", "ListShapes", |c, a| shapes::list(c, a.query)),
    compute("GET", "/20160918/bootVolumes", "ListBootVolumes", |c, a| volumes::list(c, a.query)),
    compute("GET", "/20160918/bootVolumes/{bootVolumeId}", "GetBootVolume", |c, a| volumes::get(c, a.id())),
    compute("DELETE", "/20160918/bootVolumes/{bootVolumeId}", "DeleteBootVolume", |c, a| volumes::delete(c, a.id())),
    compute("PUT", "/20160918/bootVolumes/{bootVolumeId}", "UpdateBootVolume", |c, a| volume_changes::update(c, a.id(), a.body)),
    compute("PUT", "/20160918/bootVolumes/{bootVolumeId}/kmsKey", "UpdateBootVolumeKmsKey", |c, a| volume_changes::update_kms_key(c, a.id(), a.body)),
    compute("GET", "/20160918/bootVolumeAttachments", "ListBootVolumeAttachments", |c, a| volumes::list_attachments(c, a.query)),
    compute("GET", "/20160918/bootVolumeAttachments/{bootVolumeAttachmentId}", "GetBootVolumeAttachment", |c, a| volumes::get_attachment(c, a.id())),
    compute("GET", "/20160918/subnets", "ListSubnets", |c, a| network::list_subnets(c, a.query)),
    compute("GET", "/20160918/subnets/{subnetId}", "GetSubnet", |c, a| network::get_subnet(c, a.id())),
    compute("GET", "/20160918/vcns", "ListVcns", |c, a| network::list_vcns(c, a.query)),
    compute("GET", "/20160918/vcns/{vcnId}", "GetVcn", |c, a| network::get_vcn(c, a.id())),
    compute("GET", "/20160918/networkSecurityGroups", "ListNetworkSecurityGroups", |c, a| nsgs::list(c, a.query)),
    compute("GET", "/20160918/networkSecurityGroups/{networkSecurityGroupId}", "GetNetworkSecurityGroup", |c, a| nsgs::get(c, a.id())),
    compute("GET", "/20160918/vnicAttachments", "ListVnicAttachments", |c, a| network::list_vnic_attachments(c, a.query)),
    compute("GET", "/20160918/vnicAttachments/{vnicAttachmentId}", "GetVnicAttachment", |c, a| network::get_vnic_attachment(c, a.id())),
    compute("GET", "/20160918/vnics/{vnicId}", "GetVnic", |c, a| vnics::get_vnic(c, a.id())),
    compute("PUT", "/20160918/vnics/{vnicId}", "UpdateVnic", |c, a| vnics::update_vnic(c, a.id(), a.body)),
    compute("GET", "/20160918/privateIps", "ListPrivateIps", |c, a| network::list_private_ips(c, a.query)),
    compute("GET", "/20160918/privateIps/{privateIpId}", "GetPrivateIp", |c, a| network::get_private_ip(c, a.id())),
    compute("GET", "/20160918/ipv6", "ListIpv6s", |c, a| network::list_ipv6s(c, a.query)),
    compute("GET", "/20160918/publicIps", "ListPublicIps", |c, a| network::list_public_ips(c, a.query)),
    compute("GET", "/20160918/publicIps/{publicIpId}", "GetPublicIp", |c, a| network::get_public_ip(c, a.id())),
    compute("POST", "/20160918/publicIps/actions/getByPrivateIpId", "GetPublicIpByPrivateIpId", |c, a| network::get_public_ip_by_private_ip_id(c, a.body)),
    compute("GET", "/20160918/availabilityDomains", "ListAvailabilityDomains", |c, a| identity::list_availability_domains(c, a.query)),
    compute("GET", "/20160918/faultDomains", "ListFaultDomains", |c, a| identity::list_fault_domains(c, a.query)),
    compute("GET", "/20160918/compartments", "ListCompartments", |c, a| identity::list_compartments(c, a.query)),
    compute("GET", "/20160918/compartments/{compartmentId}", "GetCompartment", |c, a| identity::get_compartment(c, a.id())),
    compute("GET", "/20160918/tagNamespaces", "ListTagNamespaces", |c, a| identity::list_tag_namespaces(c, a.query)),
    compute("GET", "/20160918/tagNamespaces/{tagNamespaceId}", "GetTagNamespace", |c, a| identity::get_tag_namespace(c, a.id())),
    compute("GET", "/20160918/tagNamespaces/{tagNamespaceId}/tags", "ListTags", |c, a| identity::list_tags(c, a.id(), a.query)),
    compute("GET", "/20160918/tagNamespaces/{tagNamespaceId}/tags/{tagName}", "GetTag", |c, a| identity::get_tag(c, a.id(), a.seg(3))),
    compute("GET", "/20160918/workRequests", "ListWorkRequests", |c, a| work_requests::list(c, a.query)),
    compute("GET", "/20160918/workRequests/{workRequestId}", "GetWorkRequest", |c, a| work_requests::get(c, a.id())),
    compute("GET", "/20160918/workRequests/{workRequestId}/errors", "ListWorkRequestErrors", |c, a| work_requests::errors(c, a.id(), a.query)),
    compute("GET", "/20160918/workRequests/{workRequestId}/logs", "ListWorkRequestLogs", |c, a| work_requests::logs(c, a.id(), a.query)),
    objects("GET", "/n", "GetNamespace", get_namespace),
    objects("POST", "/n/{namespaceName}/b", "CreateBucket", object_copy::create_bucket),
    objects("POST", "/n/{namespaceName}/b/{bucketName}/actions/copyObject", "CopyObject", object_copy::copy_object),
    objects("GET", "/workRequests/{workRequestId}", "GetObjectStorageWorkRequest", object_copy::get_work_request),
    objects("GET", "/workRequests/{workRequestId}/errors", "ListObjectStorageWorkRequestErrors", object_copy::work_request_errors),
    objects("GET", "/n/{namespaceName}/b/{bucketName}", "GetBucket", |w, f, r| object_storage::get_bucket(w, f, r).map(|r| (r, false))),
    objects("GET", "/n/{namespaceName}/b/{bucketName}/o", "ListObjects", |w, f, r| object_storage::list(w, f, r).map(|r| (r, false))),
    objects("GET", "/n/{namespaceName}/b/{bucketName}/o/{objectName*}", "GetObject", |w, f, r| object_storage::read(w, f, r, false).map(|r| (r, false))),
    objects("HEAD", "/n/{namespaceName}/b/{bucketName}/o/{objectName*}", "HeadObject", |w, f, r| object_storage::read(w, f, r, true).map(|r| (r, false))),
    objects("PUT", "/n/{namespaceName}/b/{bucketName}/o/{objectName*}", "PutObject", |w, f, r| object_storage::put(w, f, r).map(|r| (r, true))),
    objects("DELETE", "/n/{namespaceName}/b/{bucketName}/o/{objectName*}", "DeleteObject", |w, f, r| object_storage::delete(w, f, r).map(|r| (r, true))),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        service: Service,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Option<&'static str> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        find(service, method, &segs, &query).map(|r| r.operation)
    }

    #[test]
    fn every_route_is_found_by_its_own_path() {
        for r in ROUTES {
            let segs: Vec<&str> = r
                .path
                .split('/')
                .filter(|s| !s.is_empty())
                .skip(1)
                .collect();
            let query: Vec<(String, String)> = r
                .query
                .iter()
                .map(|k| (k.to_string(), "X".to_string()))
                .collect();
            let found = find(r.service(), r.method, &segs, &query).map(|f| f.operation);
            assert_eq!(found, Some(r.operation), "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn operation_names_are_unique() {
        let mut names: Vec<&str> = ROUTES.iter().map(|r| r.operation).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn actions_need_their_query_and_objects_take_slashes() {
        use Service::*;
        assert_eq!(
            op(Compute, "POST", "instances/ocid1.x", &[("action", "STOP")]),
            Some("InstanceAction")
        );
        assert_eq!(op(Compute, "POST", "instances/ocid1.x", &[]), None);
        assert_eq!(op(Compute, "GET", "", &[]), None);
        assert_eq!(op(Objects, "GET", "", &[]), Some("GetNamespace"));
        assert_eq!(
            op(Objects, "GET", "ns/b/state/o/a/b/c.json", &[]),
            Some("GetObject")
        );
        assert_eq!(op(Objects, "GET", "ns/b/state/o", &[]), Some("ListObjects"));
        assert_eq!(op(Objects, "PUT", "ns/b/state", &[]), None);
        assert_eq!(op(Compute, "GET", "instances", &[]), Some("ListInstances"));
        assert_eq!(op(Objects, "GET", "instances", &[]), None);
    }
}
