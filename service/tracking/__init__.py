"""The MLflow side of an experiment: its MLflow experiment, parent run, tags, names and the
comparison artifacts (the trial's own run lives in ``trainer.tracking``)."""
