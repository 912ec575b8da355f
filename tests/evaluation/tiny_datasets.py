"""Tiny datasets in each benchmark's published layout, scripted answers and the metrics they must give.

Every ``build_<benchmark>(root)`` writes the dataset under ``root`` (generated PNGs and short H.264
MP4s), and returns a :class:`eval_helpers.Case`: the benchmark name, its data root, the scripted response of
every sample id and the expected metrics (computed by hand in the comments).
"""

from __future__ import annotations

from tiny_image_datasets import (
    build_ai2d,
    build_ai2d_tsv,
    build_chartqa,
    build_docvqa,
    build_gqa,
    build_infovqa,
    build_mathvista,
    build_mme,
    build_mmmu,
    build_ocrbench,
    build_realworldqa,
)
from tiny_video_datasets import (
    build_charades_sta,
    build_egoschema,
    build_longvideobench,
    build_mlvu,
    build_mvbench,
    build_nextqa,
    build_perception_test,
    build_tempcompass,
    build_videomme,
)

BUILDERS = {
    "mvbench": build_mvbench,
    "videomme": build_videomme,
    "mlvu": build_mlvu,
    "longvideobench": build_longvideobench,
    "egoschema": build_egoschema,
    "perception_test": build_perception_test,
    "nextqa": build_nextqa,
    "tempcompass": build_tempcompass,
    "charades_sta": build_charades_sta,
    "docvqa": build_docvqa,
    "infovqa": build_infovqa,
    "chartqa": build_chartqa,
    "ai2d": build_ai2d,
    "ai2d_tsv": build_ai2d_tsv,
    "mmmu": build_mmmu,
    "mathvista": build_mathvista,
    "ocrbench": build_ocrbench,
    "realworldqa": build_realworldqa,
    "mme": build_mme,
    "gqa": build_gqa,
}
