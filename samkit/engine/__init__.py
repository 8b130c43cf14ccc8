"""The data engine: folders of images -> annotation files (SA-1B JSON), resumably.

* :mod:`samkit.engine.annotate`: listing images, ``--shard I/N``, skipping finished images, the
  loop around one :class:`AnnotateWorker`, and the run's :class:`Summary` (masks-per-image histogram);
* :mod:`samkit.engine.writers`: the output formats, one class each (:class:`SA1BWriter`);
* :mod:`samkit.engine.exports`: a folder of SA-1B JSON as a COCO file, label PNGs, and the
  figures of the annotation work (:func:`annotation_stats`).

The commands ``samkit auto IMAGE --out DIR`` and ``samkit annotate IMAGES_DIR --out DIR`` run it;
``samkit export ANNOTATIONS_DIR`` exports.
"""

from samkit.engine.annotate import (SA1B_BINS, AnnotateWorker, ImageStatus, MaskGenerator, Summary, annotate_folder,
                                    annotate_image, describe_generator, histogram_png, in_shard, list_images,
                                    mask_count_histogram, parse_shard, scan_images)
from samkit.engine.exports import annotation_stats, label_map, read_annotations, to_coco, write_label_pngs
from samkit.engine.writers import SA1BWriter, Writer, overlay_records, sa1b_record

__all__ = ["SA1B_BINS", "AnnotateWorker", "ImageStatus", "MaskGenerator", "Summary", "annotate_folder",
           "annotate_image", "describe_generator", "histogram_png", "in_shard", "list_images", "mask_count_histogram",
           "parse_shard", "scan_images",
           "SA1BWriter", "Writer", "overlay_records", "sa1b_record",
           "annotation_stats", "label_map", "read_annotations", "to_coco", "write_label_pngs"]
