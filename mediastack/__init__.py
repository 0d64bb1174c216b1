"""mediastack: the Pulumi program's components and its typed config model."""
