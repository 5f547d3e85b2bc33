"""Training: the two update steps, the epoch loop, checkpoints and the run's figures."""
