"""Resolution and placement: catalog + config -> what runs where, as plain data (no Pulumi)."""
