"""``python -m serverlink.dummy``: the dummy command alone."""

from serverlink.dummy.cli import dummy_command

if __name__ == "__main__":
    dummy_command()
