"""The command line: argument parsing, exit codes, `generate`, `serve`, `status`, `bench`."""
