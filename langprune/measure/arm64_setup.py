"""What the arm64 checks (`arm64.py`) run on, made once and cached in `paths.cache_dir()`: the system's cross
compiler and qemu-user (installed only with consent: `prepare_system`), llama.cpp cross-built for aarch64 and
linked with `gguf_probe.cpp` (`build_probe`), and an aarch64 Python with onnxruntime (`arm64_python`)."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import UserError, run_tool, via_make
from ..llama_runtime import llama_cpp_version
from ..llama_tools import llama_cpp_source
from ..log import say
from ..paths import cache_dir, written

ARM_CPU = "cortex-a76"  # qemu's model of the CPU the build targets
ARM_ARCH = "armv8.2-a+dotprod+fp16"
THREADS = 2
INSTALL_TIMEOUT = 1800  # an apt-get install or update
EMULATION_TIMEOUT = 3600  # one file's or model's run under qemu-user (emulated: ~4 tokens/s on Gemma 3 270M)
TOOLS = {"aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user"}  # command: Debian package
PROBE_SOURCE = Path(__file__).with_name("gguf_probe.cpp")


def system_commands() -> list[list[str]]:
    """The apt/dpkg commands this machine still needs for the arm64 checks: Debian's cross compiler and
    qemu-user (TOOLS), and, until the aarch64 Python is cached, arm64 among dpkg's architectures."""
    missing = _missing_packages()
    commands = [["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]] if missing else []
    if not (_arm64_python_folder() / "root" / "usr" / "bin" / "python3.11").exists():
        foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True,
                                 timeout=60).stdout.split() if shutil.which("dpkg") else []
        if "arm64" not in foreign:
            commands += [["dpkg", "--add-architecture", "arm64"], ["apt-get", "update", "-q"]]
    return commands


def prepare_system(install: bool = False) -> None:
    """Before any work: what the arm64 checks need from the system (`system_commands`). Without install
    a missing piece is an error naming the commands; with it (`make mobile-check INSTALL=1`, `--install`)
    they run, as root, and a failure is an error. Nothing is changed otherwise."""
    commands = system_commands()
    if not commands:
        return
    text = " && ".join(" ".join(c) for c in commands)
    if not install:
        raise UserError(f"the arm64 checks need Debian packages this machine lacks: run, as root, `{text}`, or "
                        f"let mobile-check run it ({_install_option()})")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise UserError(f"the arm64 checks need, run as root on a Debian system: `{text}`")
    for command in commands:
        say(f"   {' '.join(command)}")
        run_tool(command, f"run `{' '.join(command)}`", timeout=INSTALL_TIMEOUT)


def _install_option() -> str:
    return "INSTALL=1" if via_make() else "--install"


def _missing_packages() -> list[str]:
    """The Debian packages of TOOLS whose commands this machine lacks."""
    return [package for command, package in TOOLS.items() if not shutil.which(command)]


def ensure_tools() -> None:
    """The cross compiler and qemu-user, or a clear error (`prepare_system` installs them when asked)."""
    missing = _missing_packages()
    if missing:
        commands = ", ".join(command for command, package in TOOLS.items() if package in missing)
        raise UserError(f"llama.cpp's arm64 check needs {commands}: install Debian's {' '.join(missing)} "
                        f"(`apt-get install {' '.join(missing)}`, as root, or {_install_option()})")


def build_probe() -> Path:
    """gguf_probe for aarch64, statically linked against the host's llama.cpp version (cached)."""
    version = llama_cpp_version()
    folder = cache_dir() / f"llama.cpp-{version}-{ARM_ARCH}"
    probe = folder / f"gguf_probe-{hashlib.sha256(PROBE_SOURCE.read_bytes()).hexdigest()[:12]}"
    if probe.exists():
        return probe
    ensure_tools()
    source, build = llama_cpp_source(version), folder / "build"
    libs = [build / "src" / "libllama.a",
            *(build / "ggml" / "src" / f"lib{n}.a" for n in ("ggml", "ggml-cpu", "ggml-base"))]
    if not all(lib.exists() for lib in libs):
        say(f"   cross-building llama.cpp {version} (llama-cpp-python's) for aarch64 {ARM_ARCH} "
            f"(about 2 minutes on 2 cores, once; cached in {folder})")
        run_tool(["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_SYSTEM_NAME=Linux",
                  "-DCMAKE_SYSTEM_PROCESSOR=aarch64", "-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc",
                  "-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++", "-DGGML_NATIVE=OFF", f"-DGGML_CPU_ARM_ARCH={ARM_ARCH}",
                  "-DGGML_OPENMP=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                  "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
                 "configure llama.cpp's aarch64 build")
        run_tool(["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", "llama"],
                 "cross-build llama.cpp for aarch64")
    with written(probe) as partial:
        run_tool(["aarch64-linux-gnu-g++", "-O2", "-std=c++17", "-static", "-I", source / "include",
                  "-I", source / "ggml" / "include", PROBE_SOURCE, *libs, "-lpthread", "-o", partial],
                 "link gguf_probe for aarch64")
    return probe


# -- ONNX Runtime on arm64 ---------------------------------------------------------------------
# An aarch64 Python for qemu-user: Debian's arm64 packages (unpacked, never installed) and PyPI's
# aarch64 wheels of the host's numpy and onnxruntime.
PYTHON_DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libstdc++6",
               "libgcc-s1", "libexpat1", "zlib1g", "libffi8", "libbz2-1.0", "liblzma5")
# qemu-user shows programs the host's /proc/cpuinfo; ONNX Runtime's cpuinfo library finds no ARM core in an x86
# one and crashes at load. qemu looks files up under its -L folder first, so the sysroot carries the emulated CPU's.
CPUINFO = ("processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
           "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
           "CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n")  # a Cortex-A76


def _arm64_python_folder() -> Path:
    import numpy
    import onnxruntime

    return cache_dir() / f"python3.11-arm64-onnxruntime-{onnxruntime.__version__}-numpy-{numpy.__version__}"


def arm64_python() -> tuple[Path, Path]:
    """(sysroot, site-packages) of an aarch64 Python 3.11 with the host's numpy and onnxruntime (cached)."""
    import numpy
    import onnxruntime

    folder = _arm64_python_folder()
    if not (folder / "root" / "usr" / "bin" / "python3.11").exists():
        ensure_tools()
        say(f"   unpacking an aarch64 Python with onnxruntime {onnxruntime.__version__} (once; cached in {folder})")
        with tempfile.TemporaryDirectory() as debs, written(folder) as partial:
            _download_arm64_debs(Path(debs))
            (partial / "root" / "proc").mkdir(parents=True)
            for deb in sorted(Path(debs).glob("*.deb")):
                run_tool(["dpkg-deb", "-x", deb, partial / "root"], f"unpack {deb.name}")
            (partial / "root" / "proc" / "cpuinfo").write_text("\n".join(CPUINFO.format(i=i) for i in range(THREADS)))
            run_tool([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
                      "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_aarch64",
                      "--platform", "manylinux_2_17_aarch64", "-d", debs, f"onnxruntime=={onnxruntime.__version__}",
                      f"numpy=={numpy.__version__}"], "download onnxruntime's and numpy's aarch64 wheels")
            for wheel in Path(debs).glob("*.whl"):
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(partial / "site")
    return folder / "root", folder / "site"


def _download_arm64_debs(folder: Path) -> None:
    """apt-get download of PYTHON_DEBS for arm64 (arm64 among dpkg's architectures: `prepare_system`)."""
    run_tool(["apt-get", "download", "-q", *(f"{name}:arm64" for name in PYTHON_DEBS)],
             "download Debian's arm64 Python (is arm64 among dpkg's architectures, with apt's lists updated?)",
             cwd=folder)
