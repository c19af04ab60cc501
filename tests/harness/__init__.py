"""What the tests share besides fixtures and hooks (those live in tests/conftest.py): `tool` runs
the tool as a user does, `servers` starts MLflow servers, `studies` writes space files and reads
what a study left, `files` makes the files a test feeds the tool and loads what it exports."""
