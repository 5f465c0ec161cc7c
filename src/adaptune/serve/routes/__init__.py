"""The HTTP routes, one module per area: tickets, admin (adapters, jobs, stats), webhooks, ops."""
