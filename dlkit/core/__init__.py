"""What every model family shares: the training runner and its callbacks, schedules and
checkpoints, the model folder, serving and keras-hub presets, the runtime, errors and console
output, and the registry through which families offer the shared code what only they have.
Core imports no family (`tests/test_architecture.py`)."""
