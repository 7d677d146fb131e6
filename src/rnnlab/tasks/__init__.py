"""LightningModules, one per task family."""
