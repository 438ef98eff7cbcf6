"""``python -m serverlink.dummy``: the dummy command alone."""

from serverlink.cli.dummy import dummy_command

if __name__ == "__main__":
    dummy_command()
