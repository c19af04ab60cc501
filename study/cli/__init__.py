"""The command line, `python -m study COMMAND`: the parser and handlers (`commands`), `train`
(`train`) and the commands that serve a study to a browser (`servers`)."""
