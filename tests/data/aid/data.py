#!/usr/bin/env python3
"""Write a tiny fake AID-multilabel folder in the real layout (``docs/datasets_aid.md``).

    python tests/data/aid/data.py [--size 64] [--out tests/data/aid]

Output (committed next to this script)::

    images_tr/<Scene>/<scene>_<n>.jpg     4 images per scene, 6 scenes (24)
    images_test/<Scene>/<scene>_<n>.jpg   2 images per scene (12)
    multilabel_correct_final.csv          comma-separated, IMAGE\\LABEL + 17 classes
    multilabel.csv                        tab-separated "original" copy: Meadow images
                                          are grass + pavement, as in the first release
    single_positive_labels_manual.csv     our format: image_id, class_name, annotator,
                                          timestamp; one deliberately wrong choice

Real images are 600 x 600 RGB JPEGs; these are ``--size`` px to keep the repository
small. ``mobile-home`` has one train positive and none in test, so evaluation meets
a class without positives, as on the real test split. Everything is drawn from a
fixed seed.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = (
    "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field",
    "grass", "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water",
)  # fmt: skip
#: scene folder -> classes that may occur there (each with probability 0.6)
SCENES = {
    "Airport": ("airplane", "pavement", "grass", "buildings", "cars"),
    "BareLand": ("bare-soil", "chaparral", "field", "trees"),
    "Beach": ("sand", "sea", "water", "trees", "buildings"),
    "Industrial": ("buildings", "tanks", "pavement", "cars", "bare-soil"),
    "Meadow": ("grass", "trees", "field", "bare-soil"),
    "Port": ("dock", "ship", "water", "sea", "buildings", "court"),
}
NUM_TRAIN, NUM_TEST = 4, 2
#: the single mobile-home positive (train), as rare as in the real data
MOBILE_HOME = "industrial_2"
WRONG_MANUAL = "airport_3"  # a human mistake kept in the manual file


def draw_labels(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{image id: (17,) uint8} for every image, train ids first."""
    labels: dict[str, np.ndarray] = {}
    for scene, likely in SCENES.items():
        for n in range(1, NUM_TRAIN + NUM_TEST + 1):
            row = np.zeros(len(CLASSES), dtype=np.uint8)
            present = [c for c in likely if rng.random() < 0.6] or [likely[0]]
            row[[CLASSES.index(c) for c in present]] = 1
            labels[f"{scene.lower()}_{n}"] = row
    labels[MOBILE_HOME][CLASSES.index("mobile-home")] = 1
    return labels


def render(rng: np.random.Generator, label: np.ndarray, size: int) -> Image.Image:
    """Blocky colour patches, one hue per present class, plus noise."""
    palette = np.random.default_rng(7).integers(30, 225, (len(CLASSES), 3))
    present = np.flatnonzero(label)
    cells = rng.choice(present, size=(4, 4))
    image = palette[cells].repeat(size // 4 + 1, axis=0).repeat(size // 4 + 1, axis=1)
    image = image[:size, :size] + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_csv(path: Path, labels: dict[str, np.ndarray], delimiter: str) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(["IMAGE\\LABEL", *CLASSES])
        for image_id, row in labels.items():
            writer.writerow([image_id, *row.tolist()])


def write_manual(path: Path, labels: dict[str, np.ndarray], train_ids: list[str]) -> None:
    rng = np.random.default_rng(1)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "class_name", "annotator", "timestamp"])
        for k, image_id in enumerate(train_ids):
            choices = np.flatnonzero(labels[image_id])
            if image_id == WRONG_MANUAL:
                choices = np.flatnonzero(labels[image_id] == 0)
            name = CLASSES[int(rng.choice(choices))]
            writer.writerow([image_id, name, "fixture", f"2025-01-01T10:{k:02d}:00"])


def main(out: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    labels = draw_labels(rng)
    for folder in ("images_tr", "images_test"):
        shutil.rmtree(out / folder, ignore_errors=True)
    train_ids = []
    for image_id, label in labels.items():
        scene = next(s for s in SCENES if image_id.startswith(s.lower() + "_"))
        split = "images_tr" if int(image_id.rsplit("_", 1)[1]) <= NUM_TRAIN else "images_test"
        train_ids += [image_id] if split == "images_tr" else []
        path = out / split / scene / f"{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        render(rng, label, size).save(path, "JPEG", quality=75)
    write_csv(out / "multilabel_correct_final.csv", labels, ",")
    meadow = np.zeros(len(CLASSES), dtype=np.uint8)
    meadow[[CLASSES.index("grass"), CLASSES.index("pavement")]] = 1
    original = {i: meadow if i.startswith("meadow_") else row for i, row in labels.items()}
    write_csv(out / "multilabel.csv", original, "\t")
    write_manual(out / "single_positive_labels_manual.csv", labels, train_ids)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--size", type=int, default=64, help="image side in px (real: 600)")
    args = parser.parse_args()
    main(args.out, args.size)
