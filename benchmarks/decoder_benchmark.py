#!/usr/bin/env python3
"""JPEG decoders for AID: images/s of each candidate and its pixels against PIL's, one run.

Every candidate turns a JPEG file into the RGB uint8 (3, H, W) array the AID
workers hand on (the channels-first copy counted where the decoder returns
(H, W, 3)), in one thread, on

* 600 x 600 px JPEGs (AID's real size): the fixture's images enlarged (bicubic)
  with a little grain, saved at ``--quality`` (AID's files are ~180 kB at 600 px);
* the tiny test fixture (``tests/data/aid``, 64 x 64 px), as stored.

Medians of ``--repeats`` passes over ``--images`` files after a warm-up pass (page
cache warm). Each candidate's pixels are compared with PIL's (largest absolute
difference and share of differing values); candidates whose package or system
library is missing are listed as such.

    pip install simplejpeg torchcodec PyTurboJPEG   # the candidates
    python benchmarks/decoder_benchmark.py [--images 40] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "aid"
Decoder = Callable[[str], np.ndarray]


def pil(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1))


def candidates() -> tuple[dict[str, Decoder], list[str]]:
    """The decoders that can run here, and a line for each that cannot."""
    found: dict[str, Decoder] = {f"Pillow {Image.__version__} (PIL.Image.open + convert)": pil}
    missing = ["Pillow-SIMD: replaces Pillow (the same PIL package) and builds from source; "
               "not installable next to Pillow in one environment"]  # fmt: skip
    try:
        import simplejpeg

        def simple(path: str) -> np.ndarray:
            with open(path, "rb") as file:
                rgb = simplejpeg.decode_jpeg(file.read(), colorspace="RGB")
            return np.ascontiguousarray(rgb.transpose(2, 0, 1))

        found[f"simplejpeg {simplejpeg.__version__} (bundled libjpeg-turbo)"] = simple
    except ImportError:
        missing.append("simplejpeg: not installed (pip install simplejpeg)")
    try:
        from torchcodec import __version__ as codec_version
        from torchcodec.decoders import decode_jpeg as codec_jpeg

        found[f"torchcodec {codec_version} decode_jpeg"] = lambda p: codec_jpeg(p).numpy()
    except ImportError:
        missing.append("torchcodec: not installed (pip install torchcodec)")
    try:
        import turbojpeg

        jpeg = turbojpeg.TurboJPEG()

        def turbo(path: str) -> np.ndarray:
            with open(path, "rb") as file:
                rgb = jpeg.decode(file.read(), pixel_format=turbojpeg.TJPF_RGB)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1))

        found["PyTurboJPEG (system libturbojpeg)"] = turbo
    except ImportError:
        missing.append("PyTurboJPEG: not installed (pip install PyTurboJPEG)")
    except RuntimeError as error:  # the package is there, the system library is not
        missing.append(f"PyTurboJPEG: {str(error).splitlines()[0]} (apt install libturbojpeg0)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # removal announced in 0.29
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

    found[f"torchvision {torchvision.__version__} io.decode_jpeg (deprecated)"] = lambda p: (
        decode_jpeg(read_file(p), mode=ImageReadMode.RGB).numpy()
    )
    return found, missing


def aid_size_jpegs(folder: Path, count: int, quality: int, side: int = 600) -> list[str]:
    """``count`` JPEGs of ``side`` px made from the fixture's scenes (enlarged, grained)."""
    sources = sorted((FIXTURE / "images_tr").glob("*/*.jpg"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as image:
            big = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
        grain = rng.normal(0, 16, big.shape)
        path = folder / f"scene_{i}.jpg"
        Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(path, quality=quality)
        paths.append(str(path))
    return paths


def images_per_s(decoder: Decoder, paths: list[str], repeats: int) -> float:
    for path in paths:
        decoder(path)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            decoder(path)
        rates.append(len(paths) / (time.perf_counter() - start))
    return statistics.median(rates)


def agreement(decoder: Decoder, paths: list[str]) -> str:
    """Largest |difference| from PIL's pixels and the share of values that differ."""
    worst, differing, total = 0, 0, 0
    for path in paths:
        ours, reference = decoder(path).astype(np.int16), pil(path).astype(np.int16)
        if ours.shape != reference.shape:
            return f"shape {ours.shape} != PIL {reference.shape}"
        difference = np.abs(ours - reference)
        worst = max(worst, int(difference.max()))
        differing += int((difference > 0).sum())
        total += difference.size
    return "identical" if worst == 0 else f"max |diff| {worst}, {differing / total:.2%} differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    torch.set_num_threads(1)
    decoders, missing = candidates()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average before: {load}; 1 thread; medians of {args.repeats} passes")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            f"600 x 600 px, quality {args.quality}": aid_size_jpegs(
                Path(tmp), args.images, args.quality
            ),
            "64 x 64 px (test fixture)": [str(p) for p in sorted(FIXTURE.glob("images_*/*/*.jpg"))],
        }
        for title, paths in sets.items():
            size = np.mean([os.path.getsize(p) for p in paths]) / 1024
            rates = {name: images_per_s(d, paths, args.repeats) for name, d in decoders.items()}
            base = next(iter(rates.values()))
            print(f"\n{title}: {len(paths)} files, {size:.0f} kB on average")
            print(f"  {'decoder':<52s} {'images/s':>9s} {'vs PIL':>7s}  pixels vs PIL")
            for name, rate in rates.items():
                print(
                    f"  {name:<52s} {rate:9.1f} {rate / base:6.2f}x  "
                    f"{agreement(decoders[name], paths)}"
                )
    for line in missing:
        print(f"  not measured: {line}")
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
