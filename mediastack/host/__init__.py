"""What runs on hosts: scripts and units, and the Pulumi steps that install them."""
