"""The policy pack's entry point: constructs the PolicyPack (which starts the analyzer and blocks)."""

from pulumi_policy import EnforcementLevel, PolicyPack

from mediastack_policies import RESOURCE_POLICIES

PolicyPack(
    name="mediastack",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=RESOURCE_POLICIES,
)
