"""Using a model: batch prediction on new files, the model registry (champions), promotion and rollback."""
