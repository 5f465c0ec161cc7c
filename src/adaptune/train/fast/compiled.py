"""Small C kernels for training on a CPU, compiled on first use and loaded through ctypes.

``kernels/*.c`` are plain C with AVX-512 intrinsics (no PyTorch headers; ``kernels/*.h`` are
shared by them): compiling one takes a second or two with the machine's ``gcc``, into
``$XDG_CACHE_HOME/adaptune/kernels`` (default ``~/.cache``), named by a hash of its source,
headers and flags (no path, so moving the package rebuilds nothing), so a rebuild happens only
when the source changes; the build is written under a temporary name and renamed, so concurrent
first uses do not collide. They run with ``-fopenmp`` on PyTorch's own OpenMP threads (the
process has one libgomp, the one torch loaded), so no second pool of threads fights torch's for
the cores.

:func:`load` gives a kernel library, or ``None`` where it cannot run: a CPU without
``avx512_bf16`` (they use its bf16 conversions and dot products), no working compiler, or
``ADAPTUNE_NATIVE_KERNELS=0`` (both variables are read through :mod:`adaptune.config`). Callers
then take their PyTorch path: the same results, slower. :mod:`adaptune.train.fast.native`
(attention) and :mod:`adaptune.train.fast.fused` (norms, the MLP's gated SiLU) use them.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from adaptune.config import NATIVE_KERNELS_ENV, kernel_cache, native_kernels

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")
FLAGS = (
    "-O3", "-shared", "-fPIC", "-fopenmp", "-std=gnu11",
    "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma",
)  # fmt: skip
SWITCH = NATIVE_KERNELS_ENV
"""Set to ``0`` to run every kernel's PyTorch path instead."""


def cache_dir() -> Path:
    """Where built kernels are kept."""
    return kernel_cache()


def cpu_has_bf16() -> bool:
    """Whether ``/proc/cpuinfo`` lists ``avx512_bf16``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = (line.split() for line in text.splitlines() if line.startswith("flags"))
    return any("avx512_bf16" in words for words in flags)


def build(source: Path, directory: Path | None = None) -> Path:
    """Compile ``source`` (once per text of it and the headers beside it, and flags) and return
    the library's path; raises :class:`RuntimeError` with the compiler's message when it
    fails."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH")
    headers = sorted(source.parent.glob("*.h"))  # what the source may include
    text = b"".join(path.read_bytes() for path in (source, *headers))
    digest = hashlib.sha256(text + " ".join(FLAGS).encode()).hexdigest()[:16]
    directory = directory or cache_dir()
    target = directory / f"{source.stem}-{digest}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        partial = Path(tmp) / target.name
        done = subprocess.run(
            [compiler, *FLAGS, f"-I{source.parent}", str(source), "-o", str(partial), "-lm"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {source.name}: {done.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    return target


@cache
def load(name: str) -> ctypes.CDLL | None:
    """``kernels/<name>.c`` built and loaded, or ``None`` (the reason logged once) where it
    cannot run here."""
    if not native_kernels():
        return None
    if not cpu_has_bf16():
        log.info("compiled kernels off: this CPU has no avx512_bf16")
        return None
    try:
        return ctypes.CDLL(str(build(KERNELS / f"{name}.c")))
    except (RuntimeError, OSError) as err:
        log.warning("compiled kernel %s off: %s", name, err)
        return None


Signature = tuple[list[Any], Any]
"""A C function's argument types and result type, as ctypes takes them."""


def bind(name: str, signatures: dict[str, Signature]) -> ctypes.CDLL | None:
    """:func:`load` ``name`` and declare its functions' ``signatures``; ``None`` where it cannot
    run here."""
    lib = load(name)
    if lib is not None:
        for function, (args, result) in signatures.items():
            getattr(lib, function).argtypes = args
            getattr(lib, function).restype = result
    return lib
