"""Input-unit flags shared by ``predict`` and ``embed`` (``--acc-unit``, ``--gyro-unit``,
``--time-unit`` or ``--meta dataset.json``). Not a command (the leading underscore keeps the CLI's
discovery away); imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_unit_arguments(p: argparse.ArgumentParser) -> None:
    """The four unit flags, as one argument group."""
    g = p.add_argument_group("input units (default: g, rad/s, s)")
    g.add_argument("--acc-unit", choices=("g", "m/s^2"), default=None)
    g.add_argument("--gyro-unit", choices=("rad/s", "deg/s"), default=None)
    g.add_argument("--time-unit", choices=("s", "ms"), default=None)
    g.add_argument("--meta", default=None, metavar="dataset.json",
                   help="read the three units from a dataset.json instead")


def resolve_units(args: argparse.Namespace):
    """Units from --meta or the three flags (missing flags default to g, rad/s, s)."""
    from crossmodal_har.errors import UserError
    from crossmodal_har.io import read_json
    from crossmodal_har.signals.units import Units

    flags = {k: getattr(args, k) for k in ("acc_unit", "gyro_unit", "time_unit")}
    if args.meta:
        if any(v is not None for v in flags.values()):
            raise UserError("give either --meta or --acc-unit/--gyro-unit/--time-unit, not both")
        data = read_json(args.meta)
        if not isinstance(data, dict):
            raise UserError(f"{args.meta}: expected a JSON object with acc_unit, gyro_unit, time_unit")
        return Units.from_mapping(data, path=args.meta)
    if all(v is None for v in flags.values()):
        log.warning("no units given: assuming acc in g, gyro in rad/s, time in s "
                    "(pass --acc-unit/--gyro-unit/--time-unit or --meta)")
    return Units(**{k: v for k, v in flags.items() if v is not None})


def input_units(args: argparse.Namespace, fmt=None):
    """The declared units of ``args.input``: from the flags (:func:`resolve_units`), or canonical for a
    device file given none (it carries its own; the reader refuses others, the one units rule of
    :mod:`crossmodal_har.signals.recording`)."""
    from crossmodal_har.signals.devices import device_format
    from crossmodal_har.signals.units import Units

    given = args.meta is not None or any(getattr(args, k) is not None for k in ("acc_unit", "gyro_unit", "time_unit"))
    return resolve_units(args) if given or device_format(args.input, fmt) is None else Units()
