"""``assonant-ioc [serve]``: the IOC's command line (caproto's options and ours), its config
and start. The PVs themselves are ``server.AssonantIOC``'s (its docstring is the help)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

from caproto.server import template_arg_parser

from assonant_ioc.arguments import Parser, repeated
from assonant_ioc.config import BeamlineConfig, load_config
from assonant_ioc.errors import ConfigError
from assonant_ioc.ioc import server
from assonant_ioc.ioc.access import load_acf
from assonant_ioc.ioc.autosave import Autosave, default_path
from assonant_ioc.ioc.ca_server import one_log, serve, server_port_from_cas
from assonant_ioc.ioc.server import AssonantIOC
from assonant_ioc.lifecycle.delivery import sender_for

log = logging.getLogger(__name__)


def _parse_args(
    argv: list[str] | None,
) -> tuple[argparse.Namespace, dict[str, Any], dict[str, Any]]:
    parser, split_args = template_arg_parser(
        default_prefix="",
        desc=textwrap.dedent(server.__doc__ or ""),
        supported_async_libs=("asyncio",),
        argv=argv,
    )
    # a mistake in one line, as every command says it (caproto's parser is argparse's own)
    parser.error = types.MethodType(Parser.error, parser)
    for action in parser._actions:  # caproto's own option, without a word of help
        if "--prefix" in action.option_strings:
            action.help = "PV prefix of the IOC's PVs (default: the config's prefix)"
    parser.add_argument("--config", required=True, help="beamline config (.yaml, or a .csv PV map)")
    parser.add_argument("--data-dir", help="directory for the files (overrides the config)")
    kafka = parser.add_mutually_exclusive_group()
    kafka.add_argument(
        "--kafka-bootstrap", help="HOST:PORT of a Kafka broker (overrides the config)"
    )
    kafka.add_argument("--no-kafka", action="store_true", help="write files, send no events")
    parser.add_argument(
        "--kafka-idempotent",
        choices=("on", "off"),
        help="an idempotent producer (overrides the config's kafka: idempotent; off only for "
        "a broker that grants no producer id)",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="do not run the NeXus validators after a write"
    )
    parser.add_argument(
        "--autosave",
        metavar="FILE",
        help="where settings are kept across restarts (default: "
        "$XDG_STATE_HOME/assonant-ioc/<prefix>.json)",
    )
    parser.add_argument(
        "--acf",
        metavar="FILE",
        help="EPICS access security file (UAG, HAG, ASG with RULEs): groups ASSONANT_COMMANDS "
        "and ASSONANT_SETTINGS; SIGHUP reloads it (default: the config's access_security, "
        "else everyone may write)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where the experiment in progress and undelivered events are kept across "
        "crashes and restarts (default: the config's state_dir, else beside the autosave file)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics (Prometheus) and /health (503 while the broker or the state "
        "directory fails) on this port (default: none)",
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of --metrics-port (127.0.0.1)"
    )
    parser.add_argument("--no-pva", action="store_true", help="serve no PV over PVAccess (only CA)")
    repeated(
        parser,
        "--macro",
        "set a $(NAME) macro used in the config's PV names (repeatable)",
        metavar="NAME=VALUE",
    )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    return args, ioc_options, run_options


def build_config(args: argparse.Namespace) -> BeamlineConfig:
    macros = {}
    for item in args.macro:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--macro", [(0, f"--macro {item!r}: expected NAME=VALUE")])
        macros[name] = value
    config = load_config(args.config, macros=macros)
    if args.data_dir:
        absolute = os.path.abspath(args.data_dir)
        if absolute != args.data_dir:  # one rule with a CA write: say what it became
            log.warning("--data-dir %r is relative: the files go to %s", args.data_dir, absolute)
        config = replace(config, data_dir=absolute)
    if args.no_validate:
        config = replace(config, validate=False)
    kafka = config.kafka
    if args.no_kafka:
        kafka = replace(kafka, enabled=False)
    elif args.kafka_bootstrap:
        kafka = replace(kafka, bootstrap=args.kafka_bootstrap, enabled=True)
    if args.kafka_idempotent:
        kafka = replace(kafka, idempotent=args.kafka_idempotent == "on")
    return replace(config, kafka=kafka)


def _user_mistake(message: str) -> None:
    """A bad config or access security file: every problem it has, exit status 2."""
    sys.stderr.write(message.rstrip() + "\n")
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args, ioc_options, run_options = _parse_args(argv)
    one_log()
    try:
        config = build_config(args)
    except ConfigError as err:
        _user_mistake(str(err))
    ioc_options["prefix"] = ioc_options["prefix"] or config.prefix
    sender = None
    if config.kafka.enabled and config.kafka.bootstrap:
        from assonant_ioc.events.security import security

        try:
            secure = security(config.kafka.security)
            sender = sender_for(config, secure=secure)
        except ValueError as err:
            _user_mistake(str(err))
        log.info("Kafka %s: %s", config.kafka.bootstrap, secure.shown())
    elif config.kafka.enabled:
        log.warning("no Kafka bootstrap configured: files are written, no events are sent")
    autosave = Autosave(
        Path(args.autosave) if args.autosave else default_path(ioc_options["prefix"])
    )
    state_dir = args.state_dir or config.state_dir
    acf = args.acf or config.access_security
    try:
        if acf:
            load_acf(acf)  # a bad file stops the start with every problem and its line
    except ConfigError as err:
        _user_mistake(str(err))
    ioc = AssonantIOC(
        config=config,
        sender=sender,
        autosave=autosave,
        state_dir=Path(state_dir).resolve() if state_dir else None,
        acf=Path(acf).resolve() if acf else None,
        metrics=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
        pva=not args.no_pva,
        **ioc_options,
    )
    server_port_from_cas()
    # our own read-only opens (checksums, validation) never lock a reader out of a new file
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    serve(ioc.pvdb, run_options["interfaces"], run_options["log_pv_names"])


if __name__ == "__main__":
    main()
