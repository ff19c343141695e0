"""How processes talk: the typed NATS bus, bulk TCP frames, JSON-RPC over WebSocket and the node client."""
