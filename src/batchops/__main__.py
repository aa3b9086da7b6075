from batchops.cli.main import entry

entry()
