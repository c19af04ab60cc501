"""One trial, with neither Ray nor MLflow: its config, data, trainer, held-out metrics, pictures,
states, and the one rule that ranks finished trials. `python -m study train` runs it alone; Ray
Tune runs it through `study.sweep.trainable`."""
