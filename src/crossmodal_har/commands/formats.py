"""``crossmodal-har formats``: print the data formats page shipped inside the package (the same text as
docs/data-formats.md of the source tree), so that an installed user has what error messages point at."""

from __future__ import annotations

import argparse

NAME = "formats"
HELP = "print the data formats page (datasets, recordings)"
DESCRIPTION = ("Print the page that describes every input format: the generic labelled dataset directory "
               "(dataset.json, recordings, labels), recording tables and device files, paired sessions.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", action="store_true", help="print where the page is installed instead of its text")


def run(args: argparse.Namespace) -> int:
    from importlib.resources import as_file, files

    page = files("crossmodal_har").joinpath("data-formats.md")
    if args.path:
        with as_file(page) as p:
            print(p)
    else:
        print(page.read_text(encoding="utf-8"))
    return 0
