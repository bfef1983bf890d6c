from tars.cli.main import cli

cli()
