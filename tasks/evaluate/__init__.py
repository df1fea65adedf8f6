"""Evaluation: the ensemble fitted on validation, every model scored with bootstrap CIs, the report."""
