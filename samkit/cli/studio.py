"""``samkit studio``: annotate a folder of images in the browser, with the model's help (see
:mod:`samkit.studio`)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import secrets
import socket
from pathlib import Path

from samkit.builder import load_model
from samkit.cli.common import add_model_args
from samkit.cli.outputs import check_out_dir
from samkit.errors import ConfigError, DatasetError, MissingDependencyError
from samkit.video.frames import VIDEO_EXTENSIONS

__all__ = ["register", "is_loopback", "open_socket"]

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one), or a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use (another studio?): pass --port N, or --port 0 "
                              "for a free one") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port") from None
    sock.listen(128)
    return sock


def cmd_studio(args: argparse.Namespace) -> int:
    """Serve the studio until Ctrl+C."""
    try:
        import uvicorn
        from samkit.studio import StudioConfig, create_app
    except ImportError as exc:
        raise MissingDependencyError(f"samkit studio needs {exc.name or 'starlette and uvicorn'}, which is not "
                                     "installed: pip install 'samkit[studio]'") from None
    images, only = Path(args.images), None
    if images.is_file() and images.suffix.lower() in VIDEO_EXTENSIONS:
        images, only = images.parent, [Path(images.name)]  # one video
    elif args.video:
        if not images.is_dir():
            raise DatasetError(f"--video needs a folder of frames, and '{images}' is not a folder")
        images, only = images.resolve().parent, [Path(images.resolve().name)]  # a folder of frames as one clip
    elif not images.is_dir():
        raise DatasetError(f"images folder '{images}' " + (
            f"is a file, not a folder (videos: {' '.join(VIDEO_EXTENSIONS)})" if images.exists() else "does not exist"))
    out = check_out_dir(args.out)
    token = args.token
    if not is_loopback(args.host) and token is None:
        token = secrets.token_urlsafe(18)
    if args.port < 0 or args.port > 65535:
        raise ConfigError(f"--port is 0 to 65535, got {args.port}")
    sock = open_socket(args.host, args.port)
    try:
        model, description = load_model(args.model, args.checkpoint, args.device, pretrained=args.pretrained or None,
                                        compile=args.compile, compute_dtype=args.dtype)
        print(f"model: {description}")
        out.mkdir(parents=True, exist_ok=True)
        config = StudioConfig(images, out, propose=args.propose, token=token, only=only,
                              automask={"points_per_side": args.points_per_side})
        app = create_app(config, model=model, model_description=description)
        state = app.state.studio
        annotated = sum(state.store.summary(i)[0] != "untouched" for i in range(len(state.catalog)))
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{shown}:{port}" + (f"/?token={token}" if token else "")
        videos = sum(state.catalog.kind(i) == "video" for i in range(len(state.catalog)))
        listed = f"{len(state.catalog) - videos} images" + (f", {videos} videos" if videos else "")
        print(f"samkit studio: {url} ({listed}, {annotated} annotated); Ctrl+C stops it", flush=True)
        if not len(state.catalog):
            print(f"note: no images found in '{images}' (extensions: .jpg .jpeg .png .bmp .tif .tiff .webp)")
        server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, lifespan="on"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl+C is how a studio ends: a clean stop, whatever the uvicorn version
            pass
        print("samkit studio: stopped; every accept was already saved")
    finally:
        sock.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``studio``."""
    p = sub.add_parser(
        "studio", help="annotate a folder of images in the browser with the model's help (clicks, boxes, "
                       "automatic proposals) -> SA-1B JSON",
        description="Serve the annotation studio for IMAGES_DIR: click and box prompts, the automatic mask "
                    "generator's proposals (--propose), one SA-1B JSON per image in --out, saved on every "
                    "accept. Stopping and starting again restores everything.")
    p.add_argument("images", metavar="IMAGES_DIR",
                   help="folder of images and videos (searched recursively), or one video file")
    p.add_argument("--video", action="store_true", help="IMAGES_DIR is a folder of frames: serve it as one clip")
    p.add_argument("--out", required=True, metavar="ANNOTATIONS_DIR",
                   help="folder of the SA-1B JSON (the names `samkit annotate` uses, so its output opens here)")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; any other address "
                        "needs a token: --token, or one is generated and printed)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", help="require this token on every API call (the printed URL carries it)")
    p.add_argument("--propose", action="store_true",
                   help="start the automatic mask generator's proposals for each image when it is opened "
                        "(the page also has a Propose button)")
    p.add_argument("--points-per-side", type=int, default=32,
                   help="point grid of the proposals (default 32, as the automatic generator)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="the web server's log level")
    p.set_defaults(func=cmd_studio)
