"""`python -m crewctl` is `crewctl`."""

from .cli import main

main()
