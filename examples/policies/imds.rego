# Instances keep the legacy IMDS v1 endpoints off (`instance_options = {
# are_legacy_imds_endpoints_disabled = true }` in kiln.toml), as CIS and Checkov's CKV_OCI_5 ask.
package main

import rego.v1

deny contains msg if {
	some rc in input.resource_changes
	rc.type == "oci_core_instance"
	some action in rc.change.actions
	action in {"create", "update"}
	not imds_v2_only(rc.change.after)
	msg := sprintf("%s leaves the legacy IMDS v1 endpoints enabled: set `instance_options = { are_legacy_imds_endpoints_disabled = true }`", [rc.address])
}

imds_v2_only(values) if values.instance_options[0].are_legacy_imds_endpoints_disabled == true
