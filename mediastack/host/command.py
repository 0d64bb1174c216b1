"""The one way the program changes a host: a create/delete script pair, locally or over SSH."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_command as command

from mediastack.model.config import Host


def host_connection(host: Host) -> command.remote.ConnectionArgs | None:
    """None for the machine running Pulumi; SSH (agent authentication) for any other."""
    if host.address in ("localhost", "127.0.0.1", "::1"):
        return None
    return command.remote.ConnectionArgs(host=host.address, user=host.ssh_user, port=22)


def host_command(
    name: str,
    host: Host,
    create: pulumi.Input[str],
    delete: str,
    opts: pulumi.ResourceOptions,
    triggers: Sequence[pulumi.Input[str]] = (),
    stdin: pulumi.Input[str] | None = None,
    stdout_is_secret: bool = False,
    environment: Mapping[str, str] | None = None,
) -> command.local.Command | command.remote.Command:
    """A script pair that changes a host: local on the machine running Pulumi, over SSH elsewhere.

    The scripts are also the triggers (with any extra ones), so a changed script runs delete then create again:
    in that order, because the old delete restores what was there before the old create, and run after the new
    create it would undo it (Pulumi's default is to create the replacement first).
    `stdin` feeds the create script (a secret such as a join token stays out of the script and the triggers).
    `stdout_is_secret`: the output is a secret (a join token): kept out of `pulumi up`'s log, stderr only.
    """
    opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))
    connection = host_connection(host)
    all_triggers = [create, delete, *triggers]
    if connection is None:
        return command.local.Command(
            name,
            create=create,
            delete=delete,
            triggers=all_triggers,
            interpreter=["/bin/sh", "-c"],
            stdin=stdin,
            logging=command.local.Logging.STDERR if stdout_is_secret else None,
            environment=dict(environment) if environment else None,
            opts=opts,
        )
    return command.remote.Command(
        name,
        connection=connection,
        create=create,
        delete=delete,
        triggers=all_triggers,
        stdin=stdin,
        logging=command.remote.Logging.STDERR if stdout_is_secret else None,
        environment=dict(environment) if environment else None,
        opts=opts,
    )
