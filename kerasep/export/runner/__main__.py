"""``python -m kerasep.export.runner MODEL.onnx song.wav -o out`` (and the zipapp's entry)."""
import sys

from .cli import main

sys.exit(main())
