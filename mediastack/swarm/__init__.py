"""The Pulumi components for a Docker Swarm: services, configs, secrets, the whole stack."""
