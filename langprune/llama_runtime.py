"""Which llama.cpp this process runs: the one build `langprune prepare` made for this CPU (`llama_tools`), for the
Python runtime as for the tools, so that one build measures every figure of a report.

llama-cpp-python loads its library from `LLAMA_CPP_LIB_PATH` where that is set; `import_llama_cpp` points it at the
cached build before the first import (a user's own setting wins). Before `prepare` has built it, the wheel's own
library runs (built `-DGGML_NATIVE=OFF` by the Makefile), and `system_info` says so.
"""

import hashlib
import os
import platform
import sys
from functools import cache
from importlib.metadata import version
from pathlib import Path

from .paths import cache_dir


def llama_cpp_version() -> str:
    """llama-cpp-python's version, read without loading its library."""
    return version("llama-cpp-python")


def build_dir() -> Path:
    """Where this CPU's build is cached: by llama-cpp-python's version and this CPU's model and instruction sets (a
    native build runs only on the same)."""
    return cache_dir() / f"llama.cpp-{llama_cpp_version()}-{cpu_key()}"


def cpu_key() -> str:
    """This CPU's architecture and a digest of its model and instruction sets."""
    text = "\n".join(dict.fromkeys(cpu_lines())) or platform.processor()
    return f"{platform.machine()}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@cache
def cpu_lines() -> tuple[str, ...]:
    """/proc/cpuinfo's model name and instruction-set lines (none where there is no such file)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return tuple(line for line in lines if line.startswith(("model name", "flags", "Features")))


def import_llama_cpp():
    """llama_cpp, its library this CPU's cached build where one is built."""
    if "llama_cpp" not in sys.modules and (build_dir() / "libllama.so").exists():
        os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(build_dir()))
    import llama_cpp

    return llama_cpp


def system_info() -> dict:
    """{"cpu": this CPU's model, "library": the libllama this process runs, "build": prepare's build name or whose,
    "features": llama.cpp's own list of the CPU features its kernels use}."""
    import json

    llama_cpp = import_llama_cpp()
    chosen = os.environ.get("LLAMA_CPP_LIB_PATH")
    library = Path(chosen or Path(llama_cpp.__file__).parent / "lib") / "libllama.so"
    record = library.parent / "build.json"
    if record.exists():
        build = json.loads(record.read_text())["build"]
    else:  # a user's own LLAMA_CPP_LIB_PATH, or the wheel before `prepare` built this CPU's
        build = "LLAMA_CPP_LIB_PATH's" if chosen else "llama-cpp-python wheel's (-DGGML_NATIVE=OFF)"
    features = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    models = [line.split(":", 1)[1].strip() for line in cpu_lines() if line.startswith("model name")]
    return {"cpu": models[0] if models else platform.processor() or platform.machine(), "library": str(library),
            "build": build, "features": features}
