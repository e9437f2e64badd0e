"""Training utilities: run logging, atomic checkpoints, learning-curve plots, seeding."""
