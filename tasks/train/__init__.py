"""Training: augmentation, the per-worker loop (runs without Ray), and the Ray Train driver that
trains an ensemble's members concurrently into a run folder."""
