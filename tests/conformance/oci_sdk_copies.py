"""Conformance: Oracle's Python SDK (PyPI `oci`) against `kiln emulator` serving two regions, for
an image copied across regions (issue 24, copies): CreateBucket, ExportImage (by tuple and by
URI, formats), CopyObject to the other region and its Object Storage work request,
CreateImage from the copied export (and an export imported as what it is not, refused).

Driven by tests/it/judges/oci_sdk.rs: `python3 oci_sdk_copies.py URL_HOME URL_OTHER CONFIG_FILE`
(the emulator at time scale 0.01). Every response is parsed by the SDK's own models; every
field the emulator returns for these operations is read back. Prints one line per check and
`N passed, M failed`; exits 1 on any failure.
"""

import json
import sys
import urllib.request

import oci
from oci.core import models as m
from oci.object_storage import models as om

URL, URL2, CONFIG_FILE = sys.argv[1:4]
config = oci.config.from_file(CONFIG_FILE, "DEFAULT")
compute = oci.core.ComputeClient(config, service_endpoint=URL)
compute2 = oci.core.ComputeClient(config, service_endpoint=URL2)
objects = oci.object_storage.ObjectStorageClient(config, service_endpoint=URL)
objects2 = oci.object_storage.ObjectStorageClient(config, service_endpoint=URL2)
work = oci.work_requests.WorkRequestClient(config, service_endpoint=URL)
fx = json.load(urllib.request.urlopen(URL + "/_emulator/fixtures"))
fx2 = json.load(urllib.request.urlopen(URL2 + "/_emulator/fixtures"))
COMPARTMENT = fx["compartment_id"]
REGION2 = fx2["region"]

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)


def status_of(call):
    try:
        call()
        return 200
    except oci.exceptions.ServiceError as e:
        return e.status


def wait(client, response, attr, value):
    return oci.wait_until(client, response, attr, value, max_interval_seconds=1,
                          max_wait_seconds=120).data


NS = objects.get_namespace().data
check("GetNamespace is the same in both regions", objects2.get_namespace().data == NS)

# CreateBucket, in each region.
made = objects.create_bucket(NS, om.CreateBucketDetails(name="kiln-images", compartment_id=COMPARTMENT,
                                                        freeform_tags={"k": "v"}))
b = made.data
got = (b.name, b.namespace, b.compartment_id, b.storage_tier, b.public_access_type, b.versioning,
       b.approximate_count, bool(b.etag), bool(b.time_created), b.freeform_tags)
want = ("kiln-images", NS, COMPARTMENT, "Standard", "NoPublicAccess", "Disabled", 0, True, True, {"k": "v"})
check("CreateBucket returns the Bucket", got == want, f"{got!r} != {want!r}")
check("GetBucket reads it back", objects.get_bucket(NS, "kiln-images").data.name == "kiln-images")
check("CreateBucket of a taken name is 409",
      status_of(lambda: objects.create_bucket(NS, om.CreateBucketDetails(name="kiln-images", compartment_id=COMPARTMENT))) == 409)
check("CreateBucket of an unmodelled versioning is 400",
      status_of(lambda: objects.create_bucket(NS, om.CreateBucketDetails(name="v", compartment_id=COMPARTMENT, versioning="Enabled"))) == 400)
check("GetBucket in the other region is 404 before it is made there",
      status_of(lambda: objects2.get_bucket(NS, "kiln-images")) == 404)
objects2.create_bucket(NS, om.CreateBucketDetails(name="kiln-images", compartment_id=COMPARTMENT))

# A custom image to export: imported from an uploaded file.
objects.put_object(NS, fx["image_bucket"], "seed.qcow2", b"QFI\xfb seed")
seed = compute.create_image(m.CreateImageDetails(
    compartment_id=COMPARTMENT, display_name="golden", launch_mode="NATIVE",
    image_source_details=m.ImageSourceViaObjectStorageTupleDetails(
        namespace_name=NS, bucket_name=fx["image_bucket"], object_name="seed.qcow2",
        source_image_type="QCOW2", operating_system="Oracle Linux", operating_system_version="9")))
image = wait(compute, compute.get_image(seed.data.id), "lifecycle_state", "AVAILABLE")

# ExportImage by tuple, with If-Match.
check("ExportImage with another version's If-Match is 412",
      status_of(lambda: compute.export_image(image.id, m.ExportImageViaObjectStorageTupleDetails(
          namespace_name=NS, bucket_name="kiln-images", object_name="golden.oci"), if_match="nope")) == 412)
current = compute.get_image(image.id)
exp = compute.export_image(image.id, m.ExportImageViaObjectStorageTupleDetails(
    namespace_name=NS, bucket_name="kiln-images", object_name="golden.oci", export_format="OCI"),
    if_match=current.headers["etag"])
check("ExportImage answers the Image, EXPORTING, with an etag and a work request",
      (exp.data.id, exp.data.lifecycle_state, bool(exp.headers.get("etag")), bool(exp.headers.get("opc-work-request-id")))
      == (image.id, "EXPORTING", True, True), (exp.data.lifecycle_state, exp.headers))
check("a second export while EXPORTING is 409",
      status_of(lambda: compute.export_image(image.id, m.ExportImageViaObjectStorageUriDetails(
          destination_uri=f"https://objectstorage.x.oraclecloud.com/n/{NS}/b/kiln-images/o/again.oci"),
          retry_strategy=oci.retry.NoneRetryStrategy())) == 409)
check("the object is not there before the export finishes",
      status_of(lambda: objects.head_object(NS, "kiln-images", "golden.oci")) == 404)
wr = wait(work, work.get_work_request(exp.headers["opc-work-request-id"]), "status", "SUCCEEDED")
check("the export's work request is ExportImage", wr.operation_type == "ExportImage", wr.operation_type)
check("the image is AVAILABLE again", compute.get_image(image.id).data.lifecycle_state == "AVAILABLE")
head = objects.head_object(NS, "kiln-images", "golden.oci")
check("HeadObject marks the object as an exported image in the OCI format",
      (head.headers.get("opc-meta-oci-export-format"), head.headers.get("opc-meta-oci-exported-image-id"))
      == ("OCI", image.id), dict(head.headers))
listed = objects.list_objects(NS, "kiln-images", fields="name,size,etag,md5,timeCreated").data.objects
check("ListObjects lists the export with a plausible size (GiB)",
      [o.name for o in listed] == ["golden.oci"] and listed[0].size >= 1 << 30 and bool(listed[0].etag), listed)

# ExportImage by URI, another format; refusals.
uri = f"https://objectstorage.{fx['region']}.oraclecloud.com/n/{NS}/b/kiln-images/o/golden.qcow2"
exp2 = compute.export_image(image.id, m.ExportImageViaObjectStorageUriDetails(destination_uri=uri, export_format="QCOW2"))
wait(work, work.get_work_request(exp2.headers["opc-work-request-id"]), "status", "SUCCEEDED")
check("ExportImage by URI writes the object named in it, in its format",
      objects.head_object(NS, "kiln-images", "golden.qcow2").headers.get("opc-meta-oci-export-format") == "QCOW2")
check("ExportImage of a platform image is 404",
      status_of(lambda: compute.export_image(fx["platform_images"][0]["id"], m.ExportImageViaObjectStorageUriDetails(destination_uri=uri))) == 404)
check("ExportImage to a URI that is not Object Storage's is 400",
      status_of(lambda: compute.export_image(image.id, m.ExportImageViaObjectStorageUriDetails(destination_uri="https://example.com/x"))) == 400)
missing = compute.export_image(image.id, m.ExportImageViaObjectStorageTupleDetails(
    namespace_name=NS, bucket_name="no-such-bucket", object_name="x.oci"))
wr = wait(work, work.get_work_request(missing.headers["opc-work-request-id"]), "status", "FAILED")
check("ExportImage to a bucket that does not exist fails its work request", wr.status == "FAILED")
wait(compute, compute.get_image(image.id), "lifecycle_state", "AVAILABLE")

# CopyObject to the other region, and its work request.
copy = objects.copy_object(NS, "kiln-images", om.CopyObjectDetails(
    source_object_name="golden.oci", destination_region=REGION2, destination_namespace=NS,
    destination_bucket="kiln-images", destination_object_name="golden.oci",
    destination_object_if_none_match_e_tag="*"))
check("CopyObject is 202 with a work request", (copy.status, bool(copy.headers.get("opc-work-request-id"))) == (202, True),
      (copy.status, dict(copy.headers)))
first = objects.get_work_request(copy.headers["opc-work-request-id"]).data
check("the copy's work request is COPY_OBJECT, not finished at once",
      (first.operation_type, first.status in ("ACCEPTED", "IN_PROGRESS"), first.time_finished) == ("COPY_OBJECT", True, None), first)
done = wait(objects, objects.get_work_request(copy.headers["opc-work-request-id"]), "status", "COMPLETED")
got = (done.id, done.compartment_id, done.percent_complete, bool(done.time_accepted), bool(done.time_started),
       bool(done.time_finished), [(r.action_type, r.entity_type, r.identifier, r.metadata.get("REGION")) for r in done.resources])
want = (copy.headers["opc-work-request-id"], COMPARTMENT, 100.0, True, True, True,
        [("READ", "object", "golden.oci", fx["region"]), ("WRITTEN", "object", "golden.oci", REGION2)])
check("GetWorkRequest (Object Storage) returns the finished copy", got == want, f"{got!r} != {want!r}")
check("ListWorkRequestErrors of a copy that worked is empty",
      objects.list_work_request_errors(copy.headers["opc-work-request-id"]).data == [])
there = objects2.head_object(NS, "kiln-images", "golden.oci")
check("the object is in the other region, still an exported image",
      there.headers.get("opc-meta-oci-exported-image-id") == image.id, dict(there.headers))
check("CopyObject to a region id that does not exist is 400",
      status_of(lambda: objects.copy_object(NS, "kiln-images", om.CopyObjectDetails(
          source_object_name="golden.oci", destination_region="xx-nowhere-1", destination_namespace=NS,
          destination_bucket="kiln-images", destination_object_name="golden.oci"))) == 400)
check("CopyObject to a region that is not served is 400",
      status_of(lambda: objects.copy_object(NS, "kiln-images", om.CopyObjectDetails(
          source_object_name="golden.oci", destination_region="ap-tokyo-1", destination_namespace=NS,
          destination_bucket="kiln-images", destination_object_name="golden.oci"))) == 400)
check("CopyObject of an object that does not exist is 404",
      status_of(lambda: objects.copy_object(NS, "kiln-images", om.CopyObjectDetails(
          source_object_name="nothing", destination_region=REGION2, destination_namespace=NS,
          destination_bucket="kiln-images", destination_object_name="nothing"))) == 404)
again = objects.copy_object(NS, "kiln-images", om.CopyObjectDetails(
    source_object_name="golden.oci", destination_region=REGION2, destination_namespace=NS,
    destination_bucket="kiln-images", destination_object_name="golden.oci",
    destination_object_if_none_match_e_tag="*"))
failed = wait(objects, objects.get_work_request(again.headers["opc-work-request-id"]), "status", "FAILED")
errors = objects.list_work_request_errors(again.headers["opc-work-request-id"]).data
check("a copy onto an existing object with destinationObjectIfNoneMatchETag * fails, and says why",
      failed.status == "FAILED" and len(errors) == 1 and bool(errors[0].message), errors)
nobucket = objects.copy_object(NS, "kiln-images", om.CopyObjectDetails(
    source_object_name="golden.oci", destination_region=REGION2, destination_namespace=NS,
    destination_bucket="absent", destination_object_name="golden.oci"))
check("a copy to a bucket that does not exist fails its work request",
      wait(objects, objects.get_work_request(nobucket.headers["opc-work-request-id"]), "status", "FAILED").status == "FAILED")
check("GetWorkRequest of an unknown id is 404",
      status_of(lambda: objects.get_work_request("ocid1.objectstorageworkrequest.oc1.iad.nothing")) == 404)

# CreateImage from the copied export, in the other region.
imp = compute2.create_image(m.CreateImageDetails(
    compartment_id=COMPARTMENT, display_name="golden",
    image_source_details=m.ImageSourceViaObjectStorageTupleDetails(
        namespace_name=NS, bucket_name="kiln-images", object_name="golden.oci")))
check("CreateImage from the copy is IMPORTING with a work request",
      (imp.data.lifecycle_state, bool(imp.headers.get("opc-work-request-id"))) == ("IMPORTING", True), imp.data)
copied = wait(compute2, compute2.get_image(imp.data.id), "lifecycle_state", "AVAILABLE")
got = (copied.display_name, copied.operating_system, copied.operating_system_version, copied.launch_mode,
       f".{fx2['region_code']}." in copied.id)
want = ("golden", "Oracle Linux", "9", "NATIVE", True)
check("the imported copy has the exported image's operating system and launch mode", got == want, f"{got!r} != {want!r}")
by_uri = compute2.create_image(m.CreateImageDetails(
    compartment_id=COMPARTMENT,
    image_source_details=m.ImageSourceViaObjectStorageUriDetails(
        source_uri=f"https://objectstorage.{REGION2}.oraclecloud.com/n/{NS}/b/kiln-images/o/golden.oci")))
check("CreateImage from the copy by URI becomes AVAILABLE",
      wait(compute2, compute2.get_image(by_uri.data.id), "lifecycle_state", "AVAILABLE").operating_system == "Oracle Linux")
wrong = compute2.create_image(m.CreateImageDetails(
    compartment_id=COMPARTMENT,
    image_source_details=m.ImageSourceViaObjectStorageTupleDetails(
        namespace_name=NS, bucket_name="kiln-images", object_name="golden.oci", source_image_type="QCOW2")))
work2 = oci.work_requests.WorkRequestClient(config, service_endpoint=URL2)
wr = wait(work2, work2.get_work_request(wrong.headers["opc-work-request-id"]), "status", "FAILED")
check("an OCI-format export imported as QCOW2 fails its work request, the image DELETED",
      compute2.get_image(wrong.data.id).data.lifecycle_state == "DELETED")
check("DeleteImage of an exported image leaves its export", (compute.delete_image(image.id).status,
      objects.head_object(NS, "kiln-images", "golden.oci").status) == (204, 200))

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
