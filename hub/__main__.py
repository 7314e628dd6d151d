"""`python -m hub` is the `iothub` command."""

from hub.cli import main

main()
