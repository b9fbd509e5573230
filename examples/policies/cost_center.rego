# Everything created carries a `cost-center` tag (free-form, or the defined tag
# `Finance.cost-center`).
package main

import rego.v1

deny contains msg if {
	some rc in input.resource_changes
	"create" in rc.change.actions
	not tagged(rc.change.after)
	msg := sprintf("%s is created without a `cost-center` tag", [rc.address])
}

tagged(values) if values.freeform_tags["cost-center"]

tagged(values) if values.defined_tags["Finance.cost-center"]
