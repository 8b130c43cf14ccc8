"""``samkit export``: a folder of SA-1B JSON (``samkit annotate`` or ``samkit studio`` output) as a
COCO instances file, label PNGs, and the figures of the annotation work, and the studio's videos in
it (``<rel>/video.json``) as a YouTube-VIS file and per-object mask PNGs
(see :mod:`samkit.engine.exports`); ``samkit export onnx`` writes a model as ONNX graphs
(:mod:`samkit.onnx.export`).

    samkit export ANNOTATIONS_DIR [--coco FILE.json] [--coco-video FILE.json] [--png DIR] [--stats]
    samkit export onnx --out DIR [--model NAME | --checkpoint FILE] [--quantize-decoder] [--opset N]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from samkit.cli.common import add_model_args, model_from_args
from samkit.cli.outputs import check_out_dir
from samkit.engine.exports import (
    annotation_stats,
    read_annotations,
    read_video_annotations,
    to_coco,
    write_label_pngs,
    write_video_mask_pngs,
)
from samkit.errors import ConfigError, DatasetError, OutputPathError
from samkit.fileio import write_json
from samkit.onnx.export import DEFAULT_OPSET, export_onnx, verify_export

__all__ = ["register", "stats_table"]

# the first positional argument that selects the ONNX export instead of an annotations folder
ONNX = "onnx"
_ANNOTATION_OPTIONS = ("coco", "coco_video", "png", "stats")


def _cell(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stats_table(stats: dict[str, Any]) -> str:
    """:func:`~samkit.engine.exports.annotation_stats` as a short text table: a row per source, then all."""
    rows = [(source, s) for source, s in stats["by_source"].items()] + [("all", stats)]
    width = max(6, *(len(source) for source, _ in rows))
    lines = [f"{'source':{width}s}  {'masks':>7s}  {'prompts/mask':>12s}  {'seconds/mask':>12s}"]
    for source, s in rows:
        lines.append(f"{source:{width}s}  {s['masks']:7d}  {_cell(s['prompts_per_mask'], 2):>12s}  "
                     f"{_cell(s['seconds_per_mask'], 1):>12s}")
    lines.append(f"images: {stats['images']}, annotated: {stats['annotated_images']}")
    return "\n".join(lines)


def _check_coco_path(path: str, option: str = "--coco") -> Path:
    """``--coco FILE``: not a folder, in a folder this process can write (which may not exist yet)."""
    out = Path(path)
    if out.is_dir():
        raise OutputPathError(f"{option} '{out}' is a folder; give the path of the JSON file to write")
    check_out_dir(out.parent, option)
    return out


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """``samkit export onnx``: the model's graphs and config.json into ``--out``, checked."""
    if args.out is None:
        raise ConfigError("samkit export onnx needs --out DIR, the folder to write the graphs into")
    out = check_out_dir(args.out, "--out")
    model = model_from_args(args)
    result = export_onnx(model, out, opset=args.opset, quantize=args.quantize_decoder)
    diffs = verify_export(result, model)
    for name, path in result.files.items():
        check = f"; ONNX Runtime vs PyTorch max abs diff {diffs[name]:.1e}" if name in diffs else ""
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB{check})")
    print(f"wrote {out / 'config.json'}; graphs checked with onnx.checker (opset {args.opset}); run them with "
          f"samkit.onnx.OnnxImagePredictor({str(out)!r})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Read the folder once, then write each export asked for."""
    annotation_options = [name for name in _ANNOTATION_OPTIONS if getattr(args, name)]
    if args.annotations_dir == ONNX and not annotation_options:
        return cmd_export_onnx(args)
    if args.out is not None or args.quantize_decoder:
        raise ConfigError(f"--out and --quantize-decoder belong to samkit export onnx (the first argument 'onnx'), "
                          f"not to the export of the annotations in '{args.annotations_dir}'")
    if not annotation_options:
        raise ConfigError("samkit export needs at least one of --coco FILE.json, --coco-video FILE.json, --png DIR, "
                          "--stats")
    coco = _check_coco_path(args.coco) if args.coco else None
    coco_video = _check_coco_path(args.coco_video, "--coco-video") if args.coco_video else None
    png = check_out_dir(args.png, "--png") if args.png else None  # before reading, not after
    records = read_annotations(args.annotations_dir)
    videos = read_video_annotations(args.annotations_dir)
    if not records and not videos:
        raise DatasetError(f"no SA-1B JSON found below '{args.annotations_dir}' (and no video.json); give the folder "
                           "that samkit annotate --out or samkit studio --out wrote")
    if coco is not None:
        if not records:
            raise DatasetError(f"no SA-1B image JSON below '{args.annotations_dir}' for --coco; its videos go to "
                               "--coco-video FILE.json")
        data = to_coco(records, ())
        write_json(coco, data)
        print(f"wrote {coco}: {len(data['images'])} images, {len(data['annotations'])} annotations, "
              f"{len(data['categories'])} categories")
    if coco_video is not None:
        if not videos:
            raise DatasetError(f"no studio video (<video>/video.json) below '{args.annotations_dir}' for --coco-video")
        data = to_coco([], videos)
        write_json(coco_video, data)
        print(f"wrote {coco_video}: {len(data['videos'])} videos, {len(data['annotations'])} object tracks, "
              f"{len(data['categories'])} categories (YouTube-VIS layout)")
    elif videos and coco is not None:
        print(f"  ({len(videos)} videos left out of {coco}: write them with --coco-video FILE.json)")
    if png is not None:
        if records:
            written = write_label_pngs(records, png)
            print(f"wrote {len(written)} label PNGs to {png} (0 background, 1 + annotation index; largest drawn "
                  "first)")
        if videos:
            masks = write_video_mask_pngs(videos, png)
            print(f"wrote {len(masks)} mask PNGs of {len(videos)} videos to {png} (<video>/<object id>/<frame>.png, "
                  "255 on the object, for the frames where it has a mask)")
    if args.stats:
        print(stats_table(annotation_stats(record for _, record in records)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    p = sub.add_parser("export", help="a folder of SA-1B JSON (and studio videos) -> COCO JSON, label PNGs, "
                                       "annotation figures; `export onnx`: the model as ONNX graphs",
                       description="Exports the SA-1B JSON below ANNOTATIONS_DIR (what samkit annotate or samkit "
                                   "studio wrote; other JSON such as summary.json, and hidden folders such as "
                                   ".studio/, are skipped) and the studio's videos there (every <rel>/video.json). "
                                   "Give at least one of --coco, --png, --stats. `samkit export onnx --out DIR` "
                                   "instead writes the model (--model / --checkpoint, default samkit_nano) as ONNX "
                                   "graphs: image_encoder.onnx, mask_decoder.onnx, memory_attention.onnx, "
                                   "memory_encoder.onnx and config.json, for samkit.onnx.OnnxImagePredictor.")
    p.add_argument("annotations_dir", metavar="ANNOTATIONS_DIR", help="the folder of SA-1B JSON (searched "
                                                                      "recursively), or the word onnx for the ONNX "
                                                                      "export (a folder named onnx: give ./onnx)")
    p.add_argument("--coco", metavar="FILE.json",
                   help="write the images as one COCO instances file (loads with pycocotools): compressed RLE masks, "
                        "categories from the annotations' category names ('object' for none), score = predicted "
                        "IoU, source manual/auto")
    p.add_argument("--coco-video", metavar="FILE.json",
                   help="write the studio's videos as one COCO-video file (the YouTube-VIS layout): 'videos', and "
                        "one annotation per object with video_id and per-frame 'segmentations', 'areas', 'bboxes' "
                        "(null where it has no mask)")
    p.add_argument("--png", metavar="DIR",
                   help="write one label PNG per image to DIR (the JSON's relative path, .png): 0 background, "
                        "1 + the annotation's index in its JSON; 8-bit up to 255 annotations, else 16-bit; where "
                        "masks overlap the smaller wins (largest drawn first); a video gets DIR/<its folder>/<object "
                        "id>/00000.png ... (0/255) for the frames where the object has a mask")
    p.add_argument("--stats", action="store_true",
                   help="print images, masks, prompts per mask and seconds per mask, per source (manual, auto); "
                        "images only")
    g = p.add_argument_group("samkit export onnx")
    g.add_argument("--out", metavar="DIR", help="samkit export onnx: the folder to write the graphs and config.json "
                                                "into (created if needed)")
    g.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="samkit export onnx: the ONNX opset (>= 17)")
    g.add_argument("--quantize-decoder", action="store_true",
                   help="samkit export onnx: also write mask_decoder_int8.onnx, the decoder with int8 weights "
                        "(onnxruntime dynamic quantization): smaller and faster, its masks differ from float32 ones by "
                        "how much docs/onnx/NOTES.md measures")
    add_model_args(g)
    p.set_defaults(func=cmd_export)
