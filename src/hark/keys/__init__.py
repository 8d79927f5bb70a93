"""API keys: who is calling, and which tenant's data they may see."""
