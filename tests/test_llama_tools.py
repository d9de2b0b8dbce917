"""The one llama.cpp build: the first of the builds tried that runs the model, cached with its name; the Python
runtime loads that build's library; a crash in the trial is caught at prepare."""

import json

import pytest

from langprune import llama_tools
from langprune.errors import UserError

AMX_XEON = ["model name\t: Intel(R) Xeon(R) Processor",
            "flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16"]
EPYC = ["model name\t: AMD EPYC", "flags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni avx512_bf16"]


def test_an_amx_cpu_tries_native_then_without_amx_then_portable(monkeypatch):
    monkeypatch.setattr(llama_tools.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(llama_tools, "cpu_lines", lambda: AMX_XEON)
    tried = llama_tools.builds()
    assert list(tried) == ["native", "native without AMX", "portable (AVX2)"]
    without = tried["native without AMX"]
    assert "-DGGML_NATIVE=OFF" in without and "-DGGML_AVX512=ON" in without and "-DGGML_AVX512_BF16=ON" in without
    assert "-DGGML_AVX512_VBMI=OFF" in without and not any("AMX" in switch for switch in without)
    monkeypatch.setattr(llama_tools, "cpu_lines", lambda: EPYC)
    assert list(llama_tools.builds()) == ["native", "portable (AVX2)"]  # no AMX: nothing to leave out


def test_a_build_that_crashes_on_the_model_gives_way_to_the_next(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(llama_tools, "llama_cpp_source", lambda version: tmp_path / "source")
    monkeypatch.setattr(llama_tools, "builds", lambda: {"native": ["-DA"], "portable (AVX2)": ["-DB"]})
    crashing = "#!/bin/sh\nkill -SEGV $$\n"  # as the native build's AMX kernels do on a prompt on some Xeons

    def build(source, folder, switches):
        (folder / "bin").mkdir()
        for name in (*llama_tools.TOOLS, "libllama.so"):
            (folder / "bin" / name).write_text(crashing if switches == ["-DA"] else "#!/bin/sh\nexit 0\n")
            (folder / "bin" / name).chmod(0o755)

    monkeypatch.setattr(llama_tools, "_build", build)
    llama_tools.build_llama_cpp(tmp_path / "model.gguf")
    record = json.loads((llama_tools.build_dir() / "build.json").read_text())
    assert record["build"] == "portable (AVX2)" and record["switches"] == ["-DB"]
    assert record["failed"] == {"native": "killed by SIGSEGV (it crashed)"}
    assert llama_tools.llama_tool("llama-bench").read_text().endswith("exit 0\n")

    monkeypatch.setattr(llama_tools, "build_dir", lambda: tmp_path / "cache" / "another CPU")
    monkeypatch.setattr(llama_tools, "builds", lambda: {"native": ["-DA"]})
    with pytest.raises(UserError, match="no build of llama.cpp runs on this CPU: native: killed by SIGSEGV"):
        llama_tools.build_llama_cpp(tmp_path / "model.gguf")
    assert not (tmp_path / "cache" / "another CPU").exists()  # nothing half-built left under the real name


def test_the_python_runtime_runs_the_cached_build():
    from langprune.llama_runtime import build_dir, system_info

    info = system_info()
    assert info["library"] == str(build_dir() / "libllama.so")  # the build prepare made and tried, not the wheel's
    assert info["build"] in llama_tools.builds() and "CPU :" in info["features"] and info["cpu"]
