"""Constants, :class:`RunnerError` and how messages name options (:func:`option`)."""



#: Chunks are rounded up to whole patches and get one patch of context each side (about 3 extra
#: patches of work per chunk border): long chunks waste little on context, and the exported U-Net
#: streams patches so memory grows only with the chunk's input and outputs (measured on a 10-minute
#: input, unet-2stems: peak RSS 791 MiB with 120 s chunks, 858 MiB with 240 s, 949 MiB with 300 s).
DEFAULT_CHUNK_SECONDS = 240.0
#: Models without an exact chunk grid (crossfaded chunks; their graphs take a chunk whole, so
#: memory grows with the chunk: umxhq on a 10-minute input, `kerasep separate --backend onnx`
#: peak RSS 1.46 GiB with 20 s chunks, 1.97 GiB with 30 s, 3.42 GiB with 120 s).
DEFAULT_CROSSFADE_CHUNK_SECONDS = 20.0
DEFAULT_CONTEXT_SECONDS = 5.0  # crossfade context for models without an exact chunk grid
WRITE_BLOCK = 1 << 20  # samples converted and written at a time
READABLE = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
#: Output formats: name -> (soundfile format, allowed subtypes, default subtype).
OUTPUT_FORMATS = {
    "wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT"), "PCM_16"),
    "flac": ("FLAC", ("PCM_16", "PCM_24"), "PCM_16"),
    "mp3": ("MP3", ("MPEG_LAYER_III",), "MPEG_LAYER_III"),
    "ogg": ("OGG", ("VORBIS",), "VORBIS"),
}
#: MPEG-1 layer III bitrates (kbit/s), the ones an MP3 at 32, 44.1 or 48 kHz can have.
MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
DEFAULT_MP3_BITRATE = 320


class RunnerError(RuntimeError):
    """A problem with the model file, the input or the outputs; the message says which."""


#: Which interface error messages name options for: ``"python"`` (keywords, ``downmix=True``) or
#: ``"cli"`` (flags, ``--downmix``); a command's ``main`` sets ``"cli"`` while it runs.
INTERFACE = {"name": "python"}


def option(keyword, value=True):
    """How the user of the interface in use says ``keyword=value``: ``--allow-truncated`` on the
    command line (:data:`INTERFACE`), ``allow_truncated=True`` in Python."""
    if INTERFACE["name"] == "cli":
        flag = "--" + keyword.replace("_", "-")
        return flag if value is True else f"{flag} {value}"
    return f"{keyword}={value!r}"


def option_name(keyword):
    """``--chunk-seconds`` on the command line, ``chunk_seconds`` in Python."""
    return "--" + keyword.replace("_", "-") if INTERFACE["name"] == "cli" else keyword


def positive_seconds_option(value, keyword="chunk_seconds"):
    """``value`` as a finite float > 0, else a :class:`RunnerError` naming the option
    (:func:`option_name`) and the value received."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise RunnerError(f"{option_name(keyword)}: expected a finite number of seconds > 0. Received: {value}")
    return seconds
