"""The OCI runtime-spec surface: config.json validation, defaults, features, the CLI."""
