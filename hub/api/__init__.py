"""HTTP API: one router per resource, errors as application/problem+json."""
