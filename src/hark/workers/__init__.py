"""The worker pool of embedded mode: job-running processes beside the API server."""
