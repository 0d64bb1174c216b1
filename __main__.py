"""mediastack: one typed stack config in, a tuned and monitored media stack out."""

import pulumi

from mediastack.plan.loading import ConfigError, load_from_pulumi
from mediastack.plan.resolve import resolve
from mediastack.single.stack import MediaStack, MediaStackArgs
from mediastack.swarm.stack import SwarmMediaStack

try:
    config = load_from_pulumi(pulumi.get_stack())
except ConfigError as error:
    # RunError ends the program with this message and no traceback.
    raise pulumi.RunError(str(error)) from None

# One host: containers; more than one: the same services on a Swarm.
Stack = SwarmMediaStack if config.cluster else MediaStack
media = Stack("media", MediaStackArgs(stack=resolve(config, pulumi.get_stack())))
pulumi.export("urls", media.urls)
pulumi.export("services", sorted(media.services))
pulumi.export("credentials", media.credentials)  # secret: generated passwords and API keys, by id
if media.backups is not None:  # keep it outside the host: without it the backups cannot be read
    pulumi.export("backup_password", media.backups.password)
