"""Training: the papers' recipe (losses, optimiser, schedule), the loop, checkpoints and DDP."""
