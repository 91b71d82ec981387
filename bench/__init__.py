"""walletflow benchmark (see bench/README.md); `bench/run.py` is the command."""
