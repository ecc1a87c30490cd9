"""The command line's console: TensorFlow's C++ log lines filtered out of stderr, library
messages in the command line's words (flags for Python keywords)."""
import os
import re
import sys
import threading


def _fail(code, message, prog="kerasep separate"):
    print(f"{prog}: {message}", file=sys.stderr)
    return code


#: Python keywords in library messages and the flags that say the same on the command line.
_CLI_WORDS = (("trust=True", "--trust"), ("downmix=True", "--downmix"),
              ("allow_truncated=True", "--allow-truncated"), ("overwrite=True", "--overwrite"))


def _cli_words(exc):
    """A library error as the command line says it: ``--weights PATH: ...`` for the weights
    the user named, flags instead of Python keywords (``--trust`` for ``trust=True``)."""
    user_path = getattr(exc, "user_path", None)
    text = f"--weights {user_path}: {exc.detail}" if user_path is not None else str(
        exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    for keyword, flag in _CLI_WORDS:
        text = text.replace(f" ({flag} on the command line)", "").replace(keyword, flag)
    return text


class _StderrFilter:
    """Drops TensorFlow's C++ log lines (absl/glog format ``I0000 00:00:... file.cc:12] ...``,
    absl's "All log messages before absl::InitializeLog()" line) from file descriptor 2 while
    the command runs; everything else is passed through as it comes (progress bars included).
    TF_CPP_MIN_LOG_LEVEL=3 silences most of them, but TensorFlow 2.17+ logs a few with absl
    before reading it (``cudart_stub.cc``, the InitializeLog line), which no variable stops."""

    NOISE = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] "
                       rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                       rb"|To enable the following instructions: )")
    STARTS = (b"I0", b"W0", b"E0", b"WARNING: All log", b"To enable the following")

    def __init__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.thread = threading.Thread(target=self._pump, name="kerasep-stderr-filter", daemon=True)
        self.thread.start()

    def _maybe_noise(self, partial):
        return len(partial) < 512 and any(s.startswith(partial[: len(s)]) for s in self.STARTS)

    def _write(self, data):
        while data:
            data = data[os.write(self.saved, data):]

    def _pump(self):
        buf, passing = b"", False
        while True:
            try:
                data = os.read(self.read, 65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while buf:
                ends = [i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0]
                if ends:
                    i = min(ends) + 1
                    line, buf = buf[:i], buf[i:]
                    if passing or not self.NOISE.match(line):
                        self._write(line)
                    passing = False
                elif passing or not self._maybe_noise(buf):
                    self._write(buf)
                    buf, passing = b"", True
                else:
                    break
        if buf and not self.NOISE.match(buf):
            self._write(buf)
        os.close(self.read)

    def close(self):
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(self.saved, 2)  # closes the pipe's write end: the thread sees its end
        self.thread.join(timeout=5)
        os.close(self.saved)
