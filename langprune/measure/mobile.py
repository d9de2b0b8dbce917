"""`make mobile-check`: what a phone-class target needs, checked on an existing export.

ONNX Runtime Mobile runs ORT-format models in a reduced build that carries only the operators and
types its models use. For the export's 4-bit ONNX model (made from `onnx/` when the export has
none): the ORT-format copy, the `required_operators_and_types.config` a reduced build is made
from, ONNX Runtime's own mobile usability check (`check_onnx_model_mobile_usability`: which
execution providers may help), greedy tokens of the ORT-format model against the ONNX one here,
and the ORT-format model's greedy tokens in onnxruntime for aarch64 under qemu-user against here
(`arm64.ort_on_arm64`). And llama.cpp on arm64 (`arm64.py`): the GGUF files under qemu-user against
the host. `bench.mobile_check` adds the results to the export's report ("On-device").
"""

import io
import json
import logging
from pathlib import Path

from ..data.corpus import encode, load_corpus
from ..errors import UserError, option
from ..log import say

MOBILE_QUANT = "int4"
GREEDY_TOKENS = 16


def ort_mobile(folder: Path, kept: list[str], corpus_folder=None) -> dict:
    """The ORT Mobile checks of one export folder (see the module's docstring)."""
    from ..exporters.export_onnx import quantize_onnx, to_ort_format
    from ..model.load import load_tokenizer
    from .arm64 import ort_on_arm64
    from .onnxrt import generate, open_session
    from .verify import fidelity_prompts, file_size

    onnx, source = onnx_source(folder)
    if onnx != source:
        say(f"   quantizing {source.relative_to(folder)} to {MOBILE_QUANT} for ONNX Runtime Mobile")
        quantize_onnx(source, onnx, MOBILE_QUANT)
    ort = to_ort_format(onnx)
    config = ort.parent / "required_operators_and_types.config"
    tokenizer = load_tokenizer(folder / "onnx")
    corpus = load_corpus(kept, corpus_folder)
    sessions = {"onnx": open_session(onnx), "ort": open_session(ort)}
    greedy, prompts = {}, {lang: encode(tokenizer, fidelity_prompts(corpus, lang)[0]) for lang in kept}
    for lang, ids in prompts.items():
        runs = {kind: generate(session, ids, GREEDY_TOKENS) for kind, session in sessions.items()}
        greedy[lang] = {"same": runs["onnx"] == runs["ort"], **runs}
    say(f"   {ort.relative_to(folder)} in onnxruntime for aarch64 under qemu-aarch64")
    arm64 = ort_on_arm64(ort, sessions["ort"], prompts, {lang: g["ort"] for lang, g in greedy.items()})
    return {"onnx": str(onnx.relative_to(folder)), "ort": str(ort.relative_to(folder)), "ort_bytes": file_size(ort),
            "config": str(config.relative_to(folder)), "operators": operator_lines(config),
            "usability": usability(onnx), "greedy": greedy, "greedy_tokens": GREEDY_TOKENS, "arm64": arm64}


def onnx_source(folder: Path) -> tuple[Path, Path]:
    """(the export's MOBILE_QUANT ONNX model, the file it is or is quantized from); an error where it has neither.
    The model is where the export's report puts it: onnx/ itself for a model written in int4 (over
    `files.ONNX_FLOAT32_LIMIT`), else onnx-int4/."""
    from .arm64 import made_from

    report = folder / "report.json"
    files = json.loads(report.read_text()).get("files", {}) if report.exists() else {}
    target = folder / files.get(f"onnx {MOBILE_QUANT}", f"onnx-{MOBILE_QUANT}/model.onnx")
    return made_from(folder, target, folder / "onnx" / "model.onnx", "ONNX")


def operator_lines(config: Path) -> list[str]:
    """The config's `domain;opset;op{types},...` lines (comments dropped)."""
    return [line for line in config.read_text().splitlines() if line.strip() and not line.startswith("#")]


def usability(onnx: Path) -> str:
    """ONNX Runtime's mobile usability check of a model, as it logs it."""
    from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

    logger, text = logging.getLogger("langprune.usability"), io.StringIO()
    handler = logging.StreamHandler(text)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        analyze_model(onnx, skip_optimize=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    return text.getvalue()


def arm64_quants(quants=None) -> list[str]:
    """The GGUF kinds to run on arm64: quants (checked), else all of `arm64.ARM_QUANTS`."""
    from .arm64 import ARM_QUANTS

    if bad := [kind for kind in quants or [] if kind not in ARM_QUANTS]:
        raise UserError(f"{option('quants', ','.join(bad))}: the arm64 check runs {', '.join(ARM_QUANTS)}")
    return list(quants or ARM_QUANTS)


def languages_to_check(folder: Path, langs=None) -> list[str]:
    """The export's kept languages that are langs (each must be one; default: all); an error where it has no report."""
    if not (folder / "report.json").exists():
        raise UserError(f"{folder} has no report.json: not an export (run `make export LANGS=...` first)")
    kept = json.loads((folder / "report.json").read_text())["languages"]["kept"]
    if bad := [lang for lang in langs or [] if lang not in kept]:
        raise UserError(f"{option('langs', ','.join(bad))}: {folder.name} keeps {', '.join(kept)}")
    return [lang for lang in kept if lang in (langs or kept)]
