"""Everything that runs a study: data, the trainer, sweeps, tracking, export and the command line."""
