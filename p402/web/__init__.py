"""The ASGI edge: client routes, admin routes, dashboard, metrics, HTTP error mapping."""
