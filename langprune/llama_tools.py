"""llama.cpp's own command-line tools, built once for this machine from the llama.cpp that llama-cpp-python vendors
(the same source as the runtime the checks use; native CPU flags, as pip builds llama-cpp-python) and cached:

- `llama-bench`: speed as llama.cpp users quote it (`measure/llama_bench.py`);
- `llama-quantize`: quantization with an importance matrix (`exporters/quantize.py`), which llama-cpp-python's
  quantize parameters cannot carry (their `imatrix` is a pointer to a C++ map).

`langprune prepare` builds them (`build_llama_tools`); a measurement or export never downloads or builds, it names
the command to run (`llama_tool`).
"""

import hashlib
import os
import platform
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import UserError, run_tool
from .log import say
from .paths import cache_dir, written

TOOLS = ("llama-bench", "llama-quantize")


def llama_tool(name: str) -> Path:
    """The cached build of one of TOOLS for this machine, or a clear error naming the command that builds it."""
    binary = _cached(name)
    if not binary.exists():
        raise UserError(f"{name} is not built for this CPU ({binary} is missing): run `langprune prepare` "
                        "(`make setup` does; it builds llama.cpp's tools once, ~10 minutes on 2 cores)")
    return binary


def build_llama_tools() -> None:
    """Build whichever of TOOLS this machine's cache lacks, in one cmake build (~10 minutes on 2 cores)."""
    import llama_cpp

    missing = [name for name in TOOLS if not _cached(name).exists()]
    if not missing:
        return
    if not shutil.which("cmake"):
        raise UserError("llama.cpp's tools are built from its source and need cmake: install it "
                        "(`pip install cmake`, or Debian's cmake)")
    version = llama_cpp.__version__
    source = llama_cpp_source(version)
    say(f"   building {', '.join(missing)} from llama.cpp {version} (llama-cpp-python's) for this CPU (once; cached "
        f"in {cache_dir()})")
    with tempfile.TemporaryDirectory() as build:
        run_tool(["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
                  "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                  "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=ON"], "configure llama.cpp's build of its tools")
        run_tool(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", *missing],
                 f"build {', '.join(missing)}")
        for name in missing:
            with written(_cached(name)) as partial:
                shutil.copy2(Path(build) / "bin" / name, partial)


def llama_cpp_source(version: str) -> Path:
    """llama.cpp as llama-cpp-python `version` vendors it, from its source distribution (cached)."""
    root = cache_dir() / f"llama-cpp-python-{version}"
    if not (root / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        say(f"   downloading llama-cpp-python {version}'s source (once)")
        with tempfile.TemporaryDirectory() as tmp, written(root) as partial:
            run_tool([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                      f"llama-cpp-python=={version}", "-d", tmp], "download llama-cpp-python's source")
            with tarfile.open(next(Path(tmp).glob("*.tar.gz"))) as archive:
                archive.extractall(tmp, filter="tar")
            shutil.move(next(p for p in Path(tmp).iterdir() if p.is_dir()), partial)
    return root / "vendor" / "llama.cpp"


def _cached(name: str) -> Path:
    """Where `name` is cached: by llama-cpp-python's version and this CPU (a native build runs only on the same)."""
    import llama_cpp

    return cache_dir() / f"{name}-{llama_cpp.__version__}-{_cpu_key()}"


def _cpu_key() -> str:
    """This CPU's model and instruction sets."""
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    text = "\n".join(dict.fromkeys(wanted)) or platform.processor()
    return f"{platform.machine()}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
