"""The one llama.cpp build langprune runs on this machine, made once from the source llama-cpp-python vendors and
cached (`llama_runtime.build_dir`): its shared library, which the Python runtime loads (`llama_runtime`), and two of
llama.cpp's own command-line tools linked against it:

- `llama-bench`: speed as llama.cpp users quote it (`measure/llama_bench.py`);
- `llama-quantize`: quantization with an importance matrix (`exporters/quantize.py`), which llama-cpp-python's
  quantize parameters cannot carry (their `imatrix` is a pointer to a C++ map).

Build policy: the first of `builds()` that runs. Each is tried, once built, on a short prompt and decode of the model
`prepare` assembles; a build that crashes there (the native build's AMX kernels crash on some Intel Xeons: llama.cpp
issue 20824) gives way to the next. Native comes first because it is what a llama.cpp user deploys and it is faster:
on a 2-core AMX Xeon the native build decoded the default model's Q4_K_M at 66-67 tokens/s, the portable one at 42.5.

`langprune prepare` builds it (`build_llama_cpp`); a measurement or export never downloads or builds, it names the
command to run (`llama_tool`).
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import UserError, ended, run_tool
from .llama_runtime import build_dir, cpu_lines, llama_cpp_version
from .log import say, warn
from .paths import cache_dir, written

TOOLS = ("llama-bench", "llama-quantize")
# cmake's switches per build, in the order they are tried; "without AMX" is tried only on a CPU with AMX
NATIVE = ["-DGGML_NATIVE=ON"]  # every instruction set of this CPU, as llama.cpp builds by default
PORTABLE = ["-DGGML_NATIVE=OFF"]  # llama.cpp's portable x86 set (AVX2, FMA, F16C): the Makefile's wheel's
# /proc/cpuinfo flag -> llama.cpp's switch, for a build of this CPU's instruction sets but AMX
X86_SWITCHES = {"sse4_2": "SSE42", "avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "bmi2": "BMI2",
                "avx_vnni": "AVX_VNNI", "avx512f": "AVX512", "avx512vbmi": "AVX512_VBMI",
                "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16"}
SMOKE = ["-p", "64", "-n", "16", "-r", "1"]  # llama-bench's trial of a build: a 64-token prompt, then 16 tokens
SMOKE_TIMEOUT = 600


def builds() -> dict[str, list[str]]:
    """{name: cmake switches} of the builds to try on this CPU, in order."""
    flags = set(" ".join(line.split(":", 1)[-1] for line in cpu_lines() if line.startswith("flags")).split())
    tried = {"native": NATIVE}
    if "amx_tile" in flags:
        tried["native without AMX"] = ["-DGGML_NATIVE=OFF", *(f"-DGGML_{switch}={'ON' if flag in flags else 'OFF'}"
                                                              for flag, switch in X86_SWITCHES.items())]
    if platform.machine() in ("x86_64", "AMD64"):
        tried["portable (AVX2)"] = PORTABLE
    return tried


def llama_tool(name: str) -> Path:
    """The cached build of one of TOOLS for this machine, or a clear error naming the command that builds it."""
    binary = build_dir() / name
    if not binary.exists():
        raise UserError(f"{name} is not built for this CPU ({binary} is missing): run `langprune prepare` "
                        "(`make setup` does; it builds llama.cpp once, ~10 minutes on 2 cores)")
    return binary


def build_llama_cpp(model: Path | None) -> None:
    """Build llama.cpp for this CPU unless cached: the first of `builds()` that runs `model` (a GGUF file) through
    llama-bench without failing (~10 minutes a build on 2 cores). None: nothing to try it on, the first build is
    kept untried."""
    target = build_dir()
    if all((target / name).exists() for name in (*TOOLS, "libllama.so")):
        return
    if not shutil.which("cmake"):
        raise UserError("llama.cpp is built from its source and needs cmake: install it "
                        "(`pip install cmake`, or Debian's cmake)")
    source = llama_cpp_source(llama_cpp_version())
    failures = {}
    for name, switches in builds().items():
        say(f"   building llama.cpp {llama_cpp_version()} ({name}) for this CPU: its library, {', '.join(TOOLS)} "
            f"(once; cached in {cache_dir()})")
        with tempfile.TemporaryDirectory() as build:
            _build(source, Path(build), switches)
            failure = _try(Path(build) / "bin", model) if model else None
            if failure is None:
                if model is None:
                    warn("   warning: llama.cpp's build is not tried: the model is not a GGUF file")
                with written(target) as partial:
                    shutil.copytree(Path(build) / "bin", partial, symlinks=True)
                    (partial / "build.json").write_text(json.dumps(
                        {"build": name, "switches": switches, "failed": failures}, indent=1))
                return
        failures[name] = failure
        say(f"   the {name} build failed on {model.name}: {failure}; trying the next")
    raise UserError("no build of llama.cpp runs on this CPU: " + "; ".join(f"{n}: {f}" for n, f in failures.items()))


def _build(source: Path, build: Path, switches: list[str]) -> None:
    """One shared build into build/bin: the library and TOOLS, each finding the others beside it ($ORIGIN)."""
    run_tool(["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON",
              "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN", "-DLLAMA_OPENSSL=OFF",
              "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
              "-DLLAMA_BUILD_TOOLS=ON", *switches], "configure llama.cpp's build")
    run_tool(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", "llama", *TOOLS],
             f"build llama.cpp's library and {', '.join(TOOLS)}")


def _try(folder: Path, model: Path) -> str | None:
    """None if llama-bench of `folder` runs a short prompt and decode of `model`, else how it ended."""
    command = [str(folder / "llama-bench"), "-m", str(model), "-t", str(min(os.cpu_count() or 1, 2)), *SMOKE]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"no answer after {SMOKE_TIMEOUT} s"
    return None if result.returncode == 0 else ended(result.returncode)


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
