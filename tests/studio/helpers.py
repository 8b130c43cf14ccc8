"""Generated scenes for the studio tests, and the shipped model built once."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from samkit.builder import load_model
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.masks.rle import rle_to_mask
from samkit.model.sam2 import SAM2Model
from samkit.prompts import sample_center_error_click


@dataclass
class Scene:
    name: str  # file name in the images folder
    image: np.ndarray  # H x W x 3
    target: np.ndarray  # H x W bool: one well-sized object
    click: tuple[float, float]  # its most interior pixel (x, y)


@functools.lru_cache(maxsize=1)
def default_model() -> tuple[SAM2Model, str]:
    torch.manual_seed(0)
    return load_model()


def write_scenes(folder: Path, count: int = 3, size: int = 256, seed: int = 5) -> list[Scene]:
    """``count`` generated scenes as PNGs in ``folder``, each with its largest object whose
    area is 3-40% of the image as the target."""
    folder.mkdir(parents=True, exist_ok=True)
    data = SyntheticSceneDataset(count, size=(size, size), seed=seed)
    scenes = []
    for i in range(count):
        sample = data[i]
        areas = sample.masks.reshape(len(sample.masks), -1).mean(1)
        fits = [j for j in np.argsort(-areas) if 0.03 <= areas[j] <= 0.4]
        target = sample.masks[fits[0]]
        pts, _ = sample_center_error_click(torch.from_numpy(target)[None])
        name = f"scene_{i}.png"
        Image.fromarray(sample.image).save(folder / name)
        scenes.append(Scene(name, sample.image, target, (float(pts[0, 0, 0]), float(pts[0, 0, 1]))))
    return scenes


def depth_map(mask: np.ndarray) -> np.ndarray:
    """How many 4-neighbour erosions each pixel of ``mask`` survives (0 outside)."""
    depth = np.zeros(mask.shape, dtype=np.int32)
    cur = mask.copy()
    while cur.any():
        depth += cur
        p = np.pad(cur, 1)
        cur = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return depth


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the deepest pixel of ``mask`` (the one nearest the centroid of the deepest)."""
    depth = depth_map(mask)
    ys, xs = np.nonzero(depth == depth.max())
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return int(xs[k]), int(ys[k])


def mask_of(rle: dict) -> np.ndarray:
    """The page's uncompressed column-major RLE -> H x W bool."""
    return rle_to_mask(rle)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the studio's test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
