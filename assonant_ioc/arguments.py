"""The commands' argument parser: a mistake is one line (what is wrong, where the help is),
not argparse's whole usage block before it."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def repeated(parser: argparse.ArgumentParser, name: str, help: str, **more: Any) -> None:
    """An option given once per value (``--read A --read B``): the list, empty if none."""
    parser.add_argument(name, action="append", default=[], help=help, **more)
