"""What the host gives each container under /host: env file, time status, metrics."""
