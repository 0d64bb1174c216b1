"""The Pulumi components for one Docker host: networks, containers, the whole stack."""
