"""``vaekit explore``: the interactive latent-space explorer in the browser (``pip install vaekit[explore]``)."""

from __future__ import annotations

import argparse
import secrets
import sys

from vaekit.cli.common import add_class_argument, add_data_dir_argument, add_layer_argument, add_run_argument, load_run, view_context
from vaekit.errors import ConfigError

EXTRA_HINT = "vaekit explore needs the web packages: pip install vaekit[explore]"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "explore",
        help="interactive latent-space explorer in the browser (local web app)",
        description="Start a local web app to explore a trained model's latent space: the map of the test codes, "
        "a slider per latent dimension, examples, interpolations, your own inputs and prior samples. "
        "Prints its address; Ctrl-C stops it. Needs: pip install vaekit[explore].",
    )
    add_run_argument(p)
    p.add_argument(
        "--data",
        metavar="SOURCE",
        help="dataset name or path for the map (default: the run's dataset), preprocessed like the training data",
    )
    add_data_dir_argument(p)
    p.add_argument("--port", type=_port, default=8765, help="port to listen on (default 8765; 0 picks a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only); any other address requires the printed token on every request",
    )
    add_class_argument(p, "a conditional model: the class the page starts with (default 0; the page has a class selector)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    add_layer_argument(p)
    p.set_defaults(handler=run_explore)


def run_explore(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA_HINT) from None
    from vaekit.explore.app import LOOPBACK_HOSTS, bind, create_app, is_loopback, make_server
    from vaekit.explore.explorer import Explorer

    run = load_run(args)
    Explorer.check(run)
    loopback = is_loopback(args.host)
    sock = bind(args.host, args.port)  # before the slow part: a busy port fails at once
    try:
        print(f"vaekit explore: encoding the data of {run.path} ...", file=sys.stderr, flush=True)
        explorer = Explorer(run, run.load_data(args.data), context=view_context(run, args), layer=args.layer)
        token = None if loopback else secrets.token_urlsafe(24)
        app = create_app(explorer, token=token, allowed_hosts=LOOPBACK_HOSTS + (args.host,) if loopback else None)
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
        if token:
            print(
                f"vaekit explore: WARNING: serving beyond this machine on {args.host}; anyone who can reach it and has the "
                "token can use the model. Every request needs the token in the address below.",
                file=sys.stderr,
            )
        print(f"vaekit explore: serving {run.path} at {url}  (Ctrl-C stops)", flush=True)
        if args.open:
            import threading
            import webbrowser

            threading.Timer(0.5, webbrowser.open, [url]).start()
        try:
            make_server(app, sock).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: stopping is the normal end here
            pass
    finally:
        sock.close()
    print("vaekit explore: stopped", file=sys.stderr)
    return 0
