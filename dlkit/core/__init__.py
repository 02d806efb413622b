"""What every model family shares: the training runner and its callbacks, schedules and
checkpoints, the model folder, the runtime, errors and console output."""
