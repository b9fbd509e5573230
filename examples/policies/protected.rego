# No instance tagged `protected` is ever deleted: not by a destroy, not by a replacement
# (a replacement's actions are ["delete", "create"] or ["create", "delete"]).
package main

import rego.v1

deny contains msg if {
	some rc in input.resource_changes
	rc.type == "oci_core_instance"
	"delete" in rc.change.actions
	protected(rc.change.before)
	msg := sprintf("%s is tagged `protected` and would be deleted (%s)", [rc.address, concat("+", rc.change.actions)])
}

protected(values) if values.freeform_tags.protected != "false"
