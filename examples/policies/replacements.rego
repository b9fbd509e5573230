# At most 5 replacements per apply: a larger blast radius needs a plan of its own.
package main

import rego.v1

max_replacements := 5

replacements contains rc.address if {
	some rc in input.resource_changes
	"delete" in rc.change.actions
	"create" in rc.change.actions
}

deny contains msg if {
	count(replacements) > max_replacements
	msg := sprintf("%d resources would be replaced (at most %d per apply): %s", [count(replacements), max_replacements, concat(", ", sort(replacements))])
}
