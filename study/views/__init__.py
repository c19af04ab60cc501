"""What a study holds, read back from MLflow: the tidy runs every view ranks (`runs`), the
terminal's `status`, `best`, `list` and summary (`status`), and `export` of the winners."""
