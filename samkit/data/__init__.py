"""Datasets: the sample types, the readers (LabPics, COCO, mask folders, SA-1B JSON folders),
generated data, and the format registry :func:`open_dataset`.

Every dataset is a ``Sequence[Sample]`` (clips: ``Sequence[ClipSample]``): its length and file
list are known at construction, and each sample is read from disk only when indexed.
"""

from samkit.data.coco import CocoDataset, decode_coco_segmentation, rasterize_polygons
from samkit.data.folder import MaskFolderDataset
from samkit.data.labpics import LABPICS_IGNORE, LabPicsDataset, labpics_simple_masks
from samkit.data.registry import DATASET_FORMATS, DatasetSpec, open_dataset
from samkit.data.sa1b import SA1B_SOURCES, SA1BDataset, annotation_source, is_sa1b_record, read_sa1b_folder
from samkit.data.sample import ClipSample, LazyDataset, Sample
from samkit.data.synthetic.clips import SyntheticClipDataset, make_clip
from samkit.data.synthetic.labpics import make_labpics_scene, write_synthetic_labpics
from samkit.data.synthetic.scenes import SyntheticSceneDataset, make_scene

__all__ = ["Sample", "ClipSample", "LazyDataset", "LabPicsDataset", "CocoDataset", "MaskFolderDataset",
           "LABPICS_IGNORE", "labpics_simple_masks", "decode_coco_segmentation", "rasterize_polygons",
           "SyntheticSceneDataset", "SyntheticClipDataset", "make_scene", "make_labpics_scene", "make_clip",
           "write_synthetic_labpics", "DATASET_FORMATS", "DatasetSpec", "open_dataset",
           "SA1BDataset", "SA1B_SOURCES", "annotation_source", "is_sa1b_record", "read_sa1b_folder"]
