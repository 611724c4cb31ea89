"""HTTP plumbing: the Quart app, auth, the error body, security headers, static files,
the OpenAPI document, rate limits."""
