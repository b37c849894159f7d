"""The HTTP API: app factory, routes, problem details and authentication."""
