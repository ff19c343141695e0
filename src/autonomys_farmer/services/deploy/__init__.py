"""Deployment: a cluster layout rendered to supervisor and nats-server files, and run under supervisord."""
