"""The policy pack's entry point: constructs the PolicyPack (which starts the analyzer and blocks).

`pulumi preview --policy-pack policies` starts this file; so does `mediastack plan`. Everything else
imports the policies from `mediastack_policies` without starting a server.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from mediastack_policies import INITIAL_CONFIG, POLICIES, secrets

secrets.install()

PolicyPack(
    name="mediastack",
    description="No deployment goes out unbounded, unhealthy or unsafe.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
    initial_config=INITIAL_CONFIG,
)
