"""The farming cluster's own protocol: pure messages and shard placement shared by every service."""
