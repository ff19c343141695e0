"""The plot client (`client.PlotClient`) and its parts: `jobs` (plotting, replotting, collection),
`farming` (audit, proving, submission each slot), `upkeep` (expiry, reward signing)."""

from autonomys_farmer.services.components.plot_client.client import PlotClient

__all__ = ["PlotClient"]
