"""The engine orchestrates: optimizer, schedules, checkpoints, metrics, the training loop."""
