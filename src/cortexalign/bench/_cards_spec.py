"""Config entry of the model cards: ``segmentation:`` (mIoU on a COCO set, plus efficiency).

With it, a run writes one model card per distinct model entry once the scores are in
(``bench._cards``): parameters, FLOPs, latency and memory with the entry's own weights, and for
Segment Anything family entries the prompted mIoU on the COCO set (the report's accuracy /
efficiency / alignment trade-off reads them). ``cortexalign miou`` measures the same mIoU for one
model from the command line.

```yaml
segmentation:
  coco: data/coco/annotations/instances.json   # COCO instance annotations (polygons or RLE)
  images: data/coco/images                     # the folder of their file_name entries
  prompt: box                                  # one box (or point) per instance
  limit: 500                                   # the first 500 images (default: all)
  profile_repeats: 10                          # timed passes of the card's latency (0: none)
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SegmentationSpec"]


class SegmentationSpec(BaseModel):
    """Model cards with prompted-segmentation mIoU (``cortexalign.segmentation``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coco: str = Field(description="A COCO-format instance annotation file ('images' with id, "
                      "file_name, height, width; 'annotations' with polygons or RLE). Crowd "
                      "annotations are skipped, as in SAM's evaluation; polygons are "
                      "rasterised by pycocotools.")
    images: str = Field(description="The folder holding the annotation file's images "
                        "(its file_name entries).")
    prompt: Literal["box", "point"] = Field(
        "box", description="One prompt per ground-truth instance: its bounding box, or the "
        "point farthest from its boundary (then the best of SAM's three masks by predicted "
        "IoU). mIoU is the mean IoU over instances.")
    limit: int | None = Field(None, ge=1, description="Score only the first N images of the "
                              "annotation file (null: all).")
    profile_repeats: int = Field(10, ge=0, description="Timed forward passes for the card's "
                                 "latency and memory (parameters and FLOPs are counted too); "
                                 "0: the card holds mIoU only.")
