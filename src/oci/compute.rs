//! Typed Compute operations: instances, images, work requests, and the read-only network calls.
//! Every mutating call takes [`MutationOptions`] (If-Match, opc-retry-token).

use futures::stream::{self, Stream};
use reqwest::Method;

use super::client::{Call, Client, MutationOptions, Response};
use super::error::OciError;
use super::models::*;

/// ListInstances filters.
#[derive(Clone, Debug, Default)]
pub struct ListInstances {
    pub compartment_id: String,
    pub availability_domain: Option<String>,
    pub display_name: Option<String>,
    pub lifecycle_state: Option<String>,
    /// `TIMECREATED` or `DISPLAYNAME`.
    pub sort_by: Option<String>,
    /// `ASC` or `DESC`.
    pub sort_order: Option<String>,
    /// Page size (1..1000).
    pub limit: Option<u32>,
}

/// ListImages filters.
#[derive(Clone, Debug, Default)]
pub struct ListImages {
    pub compartment_id: String,
    pub display_name: Option<String>,
    pub operating_system: Option<String>,
    pub operating_system_version: Option<String>,
    pub shape: Option<String>,
    pub lifecycle_state: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub limit: Option<u32>,
}

/// Follow `opc-next-page` to the end.
pub(super) async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, OciError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Vec<T>>, OciError>>,
{
    let mut out = Vec::new();
    let mut page = None;
    loop {
        let r = fetch(page).await?;
        out.extend(r.body);
        match r.opc_next_page {
            Some(p) => page = Some(p),
            None => return Ok(out),
        }
    }
}

pub(super) fn enc(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
}

/// One page of ListInstances, as a call (read typed or as bytes).
fn list_instances_call(req: &ListInstances, page: Option<&str>) -> Call {
    Call::new("ListInstances", Method::GET, "/instances")
        .query("compartmentId", Some(&req.compartment_id))
        .query("availabilityDomain", req.availability_domain.as_ref())
        .query("displayName", req.display_name.as_ref())
        .query("limit", req.limit)
        .query("page", page)
        .query("sortBy", req.sort_by.as_ref())
        .query("sortOrder", req.sort_order.as_ref())
        .query("lifecycleState", req.lifecycle_state.as_ref())
}

impl Client {
    // ---- instances ----

    /// One page of ListInstances.
    pub async fn list_instances_page(
        &self,
        req: &ListInstances,
        page: Option<&str>,
    ) -> Result<Response<Vec<Instance>>, OciError> {
        self.send_json(list_instances_call(req, page)).await
    }

    /// Every page of ListInstances (the largest page size unless `limit` is set).
    pub async fn list_instances(&self, req: &ListInstances) -> Result<Vec<Instance>, OciError> {
        let mut req = req.clone();
        req.limit.get_or_insert(1000);
        all_pages(|page| {
            let req = &req;
            async move { self.list_instances_page(req, page.as_deref()).await }
        })
        .await
    }

    /// One page of ListInstances as the answer's bytes (a JSON array), to be read one instance
    /// at a time: a large page held as typed instances costs several times its text.
    pub async fn list_instances_page_raw(
        &self,
        req: &ListInstances,
        page: Option<&str>,
    ) -> Result<Response<Vec<u8>>, OciError> {
        self.send(list_instances_call(req, page)).await
    }

    /// ListInstances as a stream of pages.
    pub fn list_instances_pages<'a>(
        &'a self,
        req: &'a ListInstances,
    ) -> impl Stream<Item = Result<Vec<Instance>, OciError>> + 'a {
        stream::unfold(Some(None::<String>), move |state| async move {
            let page = state?;
            match self.list_instances_page(req, page.as_deref()).await {
                Ok(r) => Some((Ok(r.body), r.opc_next_page.map(Some))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    pub async fn get_instance(&self, id: &str) -> Result<Response<Instance>, OciError> {
        self.send_json(
            Call::new(
                "GetInstance",
                Method::GET,
                format!("/instances/{}", enc(id)),
            )
            .resource(id),
        )
        .await
    }

    pub async fn launch_instance(
        &self,
        details: &LaunchInstanceDetails,
        opts: &MutationOptions,
    ) -> Result<Response<Instance>, OciError> {
        self.send_json(
            Call::new("LaunchInstance", Method::POST, "/instances")
                .json(details)
                .mutation(opts, true),
        )
        .await
    }

    pub async fn update_instance(
        &self,
        id: &str,
        details: &UpdateInstanceDetails,
        opts: &MutationOptions,
    ) -> Result<Response<Instance>, OciError> {
        let call = Call::new(
            "UpdateInstance",
            Method::PUT,
            format!("/instances/{}", enc(id)),
        )
        .resource(id)
        .json(details)
        .mutation(opts, true);
        self.send_json(call).await
    }

    /// TerminateInstance; OCI keeps the record (TERMINATED) for a while.
    pub async fn terminate_instance(
        &self,
        id: &str,
        preserve_boot_volume: Option<bool>,
        preserve_data_volumes_created_at_launch: Option<bool>,
        opts: &MutationOptions,
    ) -> Result<Response<()>, OciError> {
        let call = Call::new(
            "TerminateInstance",
            Method::DELETE,
            format!("/instances/{}", enc(id)),
        )
        .resource(id)
        .query("preserveBootVolume", preserve_boot_volume)
        .query(
            "preserveDataVolumesCreatedAtLaunch",
            preserve_data_volumes_created_at_launch,
        )
        .mutation(opts, false);
        Ok(self.send(call).await?.map(|_| ()))
    }

    pub async fn instance_action(
        &self,
        id: &str,
        action: InstanceAction,
        details: Option<&InstancePowerActionDetails>,
        opts: &MutationOptions,
    ) -> Result<Response<Instance>, OciError> {
        let mut call = Call::new(
            "InstanceAction",
            Method::POST,
            format!("/instances/{}", enc(id)),
        )
        .resource(id)
        .query("action", Some(action.as_str()))
        .mutation(opts, true);
        if let Some(d) = details {
            call = call.json(d);
        }
        self.send_json(call).await
    }

    pub async fn change_instance_compartment(
        &self,
        id: &str,
        compartment_id: &str,
        opts: &MutationOptions,
    ) -> Result<Response<()>, OciError> {
        let call = Call::new(
            "ChangeInstanceCompartment",
            Method::POST,
            format!("/instances/{}/actions/changeCompartment", enc(id)),
        )
        .resource(id)
        .json(&ChangeCompartmentDetails {
            compartment_id: compartment_id.to_string(),
        })
        .mutation(opts, true);
        Ok(self.send(call).await?.map(|_| ()))
    }

    // ---- images ----

    pub async fn create_image(
        &self,
        details: &CreateImageDetails,
        opts: &MutationOptions,
    ) -> Result<Response<Image>, OciError> {
        self.send_json(
            Call::new("CreateImage", Method::POST, "/images")
                .json(details)
                .mutation(opts, true),
        )
        .await
    }

    pub async fn get_image(&self, id: &str) -> Result<Response<Image>, OciError> {
        self.send_json(
            Call::new("GetImage", Method::GET, format!("/images/{}", enc(id))).resource(id),
        )
        .await
    }

    pub async fn list_images_page(
        &self,
        req: &ListImages,
        page: Option<&str>,
    ) -> Result<Response<Vec<Image>>, OciError> {
        let call = Call::new("ListImages", Method::GET, "/images")
            .query("compartmentId", Some(&req.compartment_id))
            .query("displayName", req.display_name.as_ref())
            .query("operatingSystem", req.operating_system.as_ref())
            .query(
                "operatingSystemVersion",
                req.operating_system_version.as_ref(),
            )
            .query("shape", req.shape.as_ref())
            .query("limit", req.limit)
            .query("page", page)
            .query("sortBy", req.sort_by.as_ref())
            .query("sortOrder", req.sort_order.as_ref())
            .query("lifecycleState", req.lifecycle_state.as_ref());
        self.send_json(call).await
    }

    pub async fn list_images(&self, req: &ListImages) -> Result<Vec<Image>, OciError> {
        let mut req = req.clone();
        req.limit.get_or_insert(1000);
        all_pages(|page| {
            let req = &req;
            async move { self.list_images_page(req, page.as_deref()).await }
        })
        .await
    }

    pub async fn update_image(
        &self,
        id: &str,
        details: &UpdateImageDetails,
        opts: &MutationOptions,
    ) -> Result<Response<Image>, OciError> {
        let call = Call::new("UpdateImage", Method::PUT, format!("/images/{}", enc(id)))
            .resource(id)
            .json(details)
            .mutation(opts, true);
        self.send_json(call).await
    }

    pub async fn delete_image(
        &self,
        id: &str,
        opts: &MutationOptions,
    ) -> Result<Response<()>, OciError> {
        let call = Call::new(
            "DeleteImage",
            Method::DELETE,
            format!("/images/{}", enc(id)),
        )
        .resource(id)
        .mutation(opts, false);
        Ok(self.send(call).await?.map(|_| ()))
    }

    pub async fn change_image_compartment(
        &self,
        id: &str,
        compartment_id: &str,
        opts: &MutationOptions,
    ) -> Result<Response<()>, OciError> {
        let call = Call::new(
            "ChangeImageCompartment",
            Method::POST,
            format!("/images/{}/actions/changeCompartment", enc(id)),
        )
        .resource(id)
        .json(&ChangeCompartmentDetails {
            compartment_id: compartment_id.to_string(),
        })
        .mutation(opts, true);
        Ok(self.send(call).await?.map(|_| ()))
    }

    // ---- work requests ----

    pub async fn get_work_request(&self, id: &str) -> Result<Response<WorkRequest>, OciError> {
        self.send_json(
            Call::new(
                "GetWorkRequest",
                Method::GET,
                format!("/workRequests/{}", enc(id)),
            )
            .resource(id),
        )
        .await
    }

    pub async fn list_work_requests(
        &self,
        compartment_id: &str,
        resource_id: Option<&str>,
    ) -> Result<Vec<WorkRequest>, OciError> {
        all_pages(|page| async move {
            let call = Call::new("ListWorkRequests", Method::GET, "/workRequests")
                .query("compartmentId", Some(compartment_id))
                .query("resourceId", resource_id)
                .query("page", page);
            self.send_json(call).await
        })
        .await
    }

    pub async fn list_work_request_errors(
        &self,
        id: &str,
    ) -> Result<Vec<WorkRequestError>, OciError> {
        let call = Call::new(
            "ListWorkRequestErrors",
            Method::GET,
            format!("/workRequests/{}/errors", enc(id)),
        )
        .resource(id);
        Ok(self.send_json(call).await?.body)
    }

    // ---- network (read-only) ----

    /// One page of ListVnicAttachments: the compartment's attachments, or one instance's.
    pub async fn list_vnic_attachments_page(
        &self,
        compartment_id: &str,
        instance_id: Option<&str>,
        page: Option<&str>,
    ) -> Result<Response<Vec<VnicAttachment>>, OciError> {
        let mut call = Call::new("ListVnicAttachments", Method::GET, "/vnicAttachments")
            .query("compartmentId", Some(compartment_id))
            .query("instanceId", instance_id)
            .query("limit", Some(1000))
            .query("page", page);
        if let Some(id) = instance_id {
            call = call.resource(id);
        }
        self.send_json(call).await
    }

    /// Every VNIC attachment of a compartment (`instance_id: None`: one call per 1,000, for every
    /// instance at once) or of one instance, following every page.
    pub async fn list_vnic_attachments(
        &self,
        compartment_id: &str,
        instance_id: Option<&str>,
    ) -> Result<Vec<VnicAttachment>, OciError> {
        all_pages(|page| async move {
            self.list_vnic_attachments_page(compartment_id, instance_id, page.as_deref())
                .await
        })
        .await
    }

    pub async fn get_vnic(&self, id: &str) -> Result<Response<Vnic>, OciError> {
        self.send_json(
            Call::new("GetVnic", Method::GET, format!("/vnics/{}", enc(id))).resource(id),
        )
        .await
    }

    /// UpdateVnic (`PUT /vnics/{vnicId}`) with UpdateVnicDetails (oci-go-sdk v65
    /// `core.UpdateVnicDetails`: `nsgIds`, `hostnameLabel`, `skipSourceDestCheck`, names, tags),
    /// guarded by `opts.if_match`.
    pub async fn update_vnic(
        &self,
        id: &str,
        details: &serde_json::Value,
        opts: &MutationOptions,
    ) -> Result<Response<Vnic>, OciError> {
        let call = Call::new("UpdateVnic", Method::PUT, format!("/vnics/{}", enc(id)))
            .resource(id)
            .json(details)
            .mutation(opts, true);
        self.send_json(call).await
    }

    /// Every private IP of a subnet (ListPrivateIps by `subnetId`, 1,000 a page): the addresses
    /// and hostname labels of all its VNICs at once.
    pub async fn list_private_ips_in_subnet(
        &self,
        subnet_id: &str,
    ) -> Result<Vec<PrivateIp>, OciError> {
        all_pages(|page| async move {
            let call = Call::new("ListPrivateIps", Method::GET, "/privateIps")
                .query("subnetId", Some(subnet_id))
                .query("limit", Some(1000))
                .query("page", page);
            self.send_json(call).await
        })
        .await
    }

    /// Every ephemeral public IP assigned to a private IP of `compartment_id` in the availability
    /// domain `ad` (ListPublicIps, `scope=AVAILABILITY_DOMAIN`, `lifetime=EPHEMERAL`, 1,000 a
    /// page). An ephemeral public IP is in its private IP's compartment and AD.
    pub async fn list_ephemeral_public_ips(
        &self,
        compartment_id: &str,
        ad: &str,
    ) -> Result<Vec<PublicIp>, OciError> {
        all_pages(|page| async move {
            let call = Call::new("ListPublicIps", Method::GET, "/publicIps")
                .query("scope", Some("AVAILABILITY_DOMAIN"))
                .query("compartmentId", Some(compartment_id))
                .query("availabilityDomain", Some(ad))
                .query("lifetime", Some("EPHEMERAL"))
                .query("limit", Some(1000))
                .query("page", page);
            self.send_json(call).await
        })
        .await
    }

    pub async fn get_subnet(&self, id: &str) -> Result<Response<Subnet>, OciError> {
        self.send_json(
            Call::new("GetSubnet", Method::GET, format!("/subnets/{}", enc(id))).resource(id),
        )
        .await
    }

    pub async fn list_subnets(
        &self,
        compartment_id: &str,
        vcn_id: Option<&str>,
    ) -> Result<Vec<Subnet>, OciError> {
        let call = Call::new("ListSubnets", Method::GET, "/subnets")
            .query("compartmentId", Some(compartment_id))
            .query("vcnId", vcn_id);
        Ok(self.send_json(call).await?.body)
    }

    pub async fn list_vcns(&self, compartment_id: &str) -> Result<Vec<Vcn>, OciError> {
        let call = Call::new("ListVcns", Method::GET, "/vcns")
            .query("compartmentId", Some(compartment_id));
        Ok(self.send_json(call).await?.body)
    }
}
