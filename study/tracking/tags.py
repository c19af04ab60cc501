"""The tags that lay a study out in MLflow (see `study.tracking`)."""

ROLE, TRIAL_ID, STATE, ERROR = "aestudy.role", "aestudy.trial_id", "aestudy.state", "aestudy.error"
GIVEN = "aestudy.given"
PICTURES = "aestudy.pictures"  # the epoch a trial's pictures show (study.sweep.pictures)
THREADS = "aestudy.threads"  # torch's threads in the trial: its numbers depend on them (CAE)
# Metrics kept as a run's tag rather than a metric: the UI would chart the epoch count as if it
# were a result (its steps already are the epochs); the runs table shows the tag.
AS_TAGS = {"epoch": "aestudy.epochs"}
