"""``samkit download``: Meta's official checkpoints by name, into samkit's cache (see
:mod:`samkit.weights.cache`)."""

from __future__ import annotations

import argparse

from samkit.weights import OFFICIAL, bundled_checkpoint, cache_dir, download_checkpoint, resolve_name

__all__ = ["register"]


def cmd_download(args: argparse.Namespace) -> int:
    """Download (or find in the cache) each named checkpoint; print where each file is."""
    for name in args.names:
        key = resolve_name(name)
        shipped = bundled_checkpoint(key)
        if shipped is not None and key not in OFFICIAL:
            print(f"{key}: {shipped} (ships with samkit, nothing to download)")
            continue
        path = download_checkpoint(name, force=args.force, progress=not args.no_progress)
        print(f"{key}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"cache: {cache_dir()} (set SAMKIT_HOME to move it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``download``."""
    p = sub.add_parser("download", help="download official SAM 2 / 2.1 checkpoints into the cache",
                       description="Download Meta's official checkpoints once into samkit's cache "
                                   "($SAMKIT_HOME, default ~/.cache/samkit), verify them (complete transfer, "
                                   "strict load as the variant) and print where each file is; a mirror can be "
                                   "set with SAMKIT_WEIGHTS_URL. Then `--model NAME --pretrained` uses them.")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="variant names or aliases (sam2.1_hiera_tiny, sam2.1_hiera_t) or Hugging Face ids "
                        "(facebook/sam2.1-hiera-tiny)")
    p.add_argument("--force", action="store_true", help="download again even when cached (e.g. a corrupt file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)
