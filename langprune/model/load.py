"""Load a model, offline, as a transformers model whose weights rest in 16 bits and compute in float32 (`rest.py`),
with a tokenizer that matches llama.cpp.

Sources: a recipe name (langprune/recipes/*.toml), a GGUF file (dequantized), or a local Hugging Face
model directory of a supported family. Nothing is ever downloaded.
A GGUF's dequantized weights and tokenizer are cached under the cache's hf/ (`paths.cache_dir()`),
keyed by the file's hash.
"""

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gguf import Keys

from ..errors import UserError
from ..log import say
from ..paths import cache_dir, cache_entry, cached
from .families import Family, family_of, family_of_gguf
from .recipes import Recipe, available_recipes, load_recipe

# The vocabulary's tables, a GGUF's largest tensors (a 7B's: 152,064 x 3,584, 2.2 GB in float32), are dequantized
# DEQUANTIZE_BLOCK bytes of float32 rows at a time
TABLES = ("token_embd.weight", "output.weight")
DEQUANTIZE_BLOCK = 64 << 20
# A GGUF is dequantized into a checkpoint of files of about SHARD_BYTES each, written as they fill
SHARD_BYTES = 512 << 20


@dataclass
class LoadedModel:
    model: object  # transformers PreTrainedModel, eval mode, its matrices resting in 16 bits (`rest.rest`)
    tokenizer: object  # transformers PreTrainedTokenizerFast
    family: Family
    name: str
    source: Path  # the GGUF file or model directory
    fingerprint: str

    @property
    def gguf(self) -> Path | None:
        return self.source if self.source.suffix == ".gguf" else None


@lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Content hash, computed once per process for a file that has not changed."""
    stat = Path(path).stat()
    return _sha256(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


def resolve(source: str | Path | Recipe) -> tuple[str, Path, Recipe | None]:
    """A recipe name, a GGUF path or a directory -> (name, local path, recipe or None)."""
    if isinstance(source, Recipe):
        return source.name, source.source_path(), source
    text = str(source)
    if text in available_recipes():
        recipe = load_recipe(text)
        return recipe.name, recipe.source_path(), recipe
    path = Path(text).expanduser()
    if path.exists():
        return path.stem if path.is_file() else path.name, path, None
    if text.endswith(".gguf") or "/" not in text or text.startswith((".", "/", "~")):
        raise UserError(
            f"{text!r} is neither a recipe ({', '.join(available_recipes())}) nor an existing file or directory"
        )
    raise UserError(
        f"{text!r} looks like a model hub id, and this tool works offline: download it first "
        "(for example `huggingface-cli download` on a connected machine) and pass its local directory"
    )


def check_source(source: str | Path | Recipe) -> tuple[str, Path, Family]:
    """What a model source is, from its GGUF header or its config.json and tokenizer.json alone (no
    weights read): (name, path, family), or the UserError `load` would raise, in seconds."""
    name, path, recipe = resolve(source)
    if path.is_dir():
        family = _check_hf_dir(path)
    elif path.suffix == ".gguf" and path.is_file():
        family = _check_gguf(path)
    else:
        raise UserError(f"{path} is not a GGUF file or a Hugging Face model directory")
    if recipe and recipe.family is not family:
        raise UserError(f"recipe {recipe.name} says family {recipe.family.name}, the model is {family.name}")
    return name, path, family


def load(source: str | Path | Recipe) -> LoadedModel:
    name, path, family = check_source(source)
    return _load_hf_dir(path, name, family) if path.is_dir() else _load_gguf(path, name, family)


def _check_hf_dir(path: Path) -> Family:
    config_path = path / "config.json"
    if not config_path.exists():
        raise UserError(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(config_path.read_text())
        family = family_of(config.get("model_type"))
    except ValueError as err:
        raise UserError(f"{path}/config.json is not valid JSON ({err})") from None
    except (UserError, AttributeError) as err:
        raise UserError(f"{path}: {err}") from None
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise UserError(f"{path} has a config.json but no weights (*.safetensors or *.bin)")
    return family


def _check_gguf(path: Path) -> Family:
    from .gguf_file import read_header
    from .tokenizer import check_vocab, read_vocab

    header = read_header(path)
    try:
        family = family_of_gguf(header.get(Keys.General.ARCHITECTURE, ""))
        check_vocab(read_vocab(path, header))
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    return family


def load_tokenizer(folder: Path):
    """The tokenizer saved in folder, as it is. transformers 4.57.3+ warns that every local byte-level BPE
    tokenizer "has an incorrect regex pattern" (a check meant for Mistral's) unless told not to "fix" it;
    ours hold llama.cpp's exact pre-tokenizer regexes, so it is told."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True, fix_mistral_regex=False)


def _load_hf_dir(path: Path, name: str, family: Family) -> LoadedModel:
    model = _resting_model(path)
    try:
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: no usable tokenizer ({err})") from None
    fingerprint = _dir_fingerprint(path)
    return LoadedModel(model, tokenizer, family, name, path, fingerprint)


def _dir_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            stat = f.stat()
            digest.update(f"{f.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def _resting_model(folder: Path):
    """The checkpoint in `folder` with its matrices in 16 bits (`rest.rest_dtype` of its published type), read as
    such (never a float32 copy of the whole model), and its norms and biases as the checkpoint holds them."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from .rest import rest, rest_dtype

    config = json.loads((folder / "config.json").read_text())
    published = config.get("dtype") or config.get("torch_dtype")
    dtype = rest_dtype(published)
    with _no_transformers_bars():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True).eval()
    if str(dtype).removeprefix("torch.") != published:  # rounded here
        _refuse_overflow(model, folder)
    vectors = {name: p for name, p in model.named_parameters() if p.ndim < 2}  # read in `dtype`: read again
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as weights:
            for name in vectors.keys() & set(weights.keys()):
                vectors[name].data = weights.get_tensor(name).float()
    return rest(model, dtype)


@contextmanager
def _no_transformers_bars():
    """transformers' own progress bar hidden for the block ("Loading checkpoint shards", a second for a checkpoint of
    several files, such as a dequantized GGUF's), as it was before: the library prints nothing of its own."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def _refuse_overflow(model, source: Path) -> None:
    for name, p in model.named_parameters():
        _refuse_out_of_range(name, p, source)


def _refuse_out_of_range(name: str, weight, source: Path) -> None:
    """Where weights were just rounded to 16 bits: a matrix that came out beyond the type's range (or was not
    finite) is refused in one line, not computed with. Its extremes only: `isfinite` over float16 is 4x slower."""
    import torch

    if weight.ndim >= 2 and not torch.isfinite(torch.stack([weight.amax(), weight.amin()]).float()).all():
        raise UserError(f"{source}: {name} holds values beyond {str(weight.dtype).removeprefix('torch.')}'s range "
                        "(or not finite), which the F16 GGUF export could not hold either")


def _load_gguf(path: Path, name: str, family: Family) -> LoadedModel:
    fingerprint = file_sha256(path)[:16]
    entry = cache_entry("hf", (path.stem, fingerprint), (__name__, "langprune.model.tokenizer"))

    def read(folder: Path):
        return _resting_model(folder), load_tokenizer(folder)

    (model, tokenizer), _ = cached(entry, lambda folder: _dequantize_to(path, folder), read)
    return LoadedModel(model, tokenizer, family, name, path, fingerprint)


def _dequantize_to(path: Path, folder: Path) -> None:
    """Dequantize a GGUF into folder as a resting checkpoint (`rest.py`: float16 matrices, float32 vectors), with our
    llama.cpp-exact tokenizer, one tensor at a time: each is written (`_save_in_shards`) before the next is read, so
    the model is never whole in memory. transformers' own GGUF loading (`from_pretrained(gguf_file=...)`) first builds
    a float32 state dict of the whole model (6.2 GB for a 1.5B); its parts are used here instead: the config, the
    GGUF -> transformers tensor names, and the per-architecture tensor processing (llama's q/k row order, Gemma's
    norms stored as 1 + w), which leaves the `TABLES` as they are: those a block of rows at a time."""
    import torch
    from gguf import GGUFReader
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
    )

    from ..log import progress
    from .rest import rest
    from .tokenizer import tokenizer_from_gguf

    say(f"Dequantizing {path.name} to float16 (once; cached in {cache_dir() / 'hf'})")
    # the metadata parsed once (13 s for Qwen's 151,936 tokens), as AutoConfig.from_pretrained(gguf_file=...) parses it
    parsed = load_gguf_checkpoint(path, return_tensors=False)
    config = CONFIG_MAPPING[parsed["config"]["model_type"]].from_dict(dict(parsed["config"]))
    with torch.device("meta"):  # names, shapes and types only
        model = rest(AutoModelForCausalLM.from_config(config, dtype=torch.float16), torch.float16)
    reader = GGUFReader(path)
    architecture = reader.fields[Keys.General.ARCHITECTURE].contents()
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])
    names, expected = get_gguf_hf_weights_map(model), model.state_dict()
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()

    def process(values, name: str):
        return processor.process(weights=values, name=name, tensor_key_mapping=names, parsed_parameters=parsed)

    def read_all():
        for tensor in progress(reader.tensors, desc="dequantize", unit="tensor"):
            gguf_name, values = _dequantized(tensor, process)
            name = names.get(gguf_name)
            if name in expected and name not in tied:
                values = values.reshape(expected[name].shape).to(expected[name].dtype)
                _refuse_out_of_range(name, values, path)
                yield name, values
            del values
            _release_pages(reader.data, tensor)

    written_names = _save_in_shards(read_all(), folder)
    if missing := sorted(set(expected) - written_names - tied):
        raise UserError(f"{path}: no tensor for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    config.dtype, config.architectures = "float16", [type(model).__name__]
    config.save_pretrained(folder)
    if model.can_generate():
        model.generation_config.save_pretrained(folder)
    tokenizer_from_gguf(path).save_pretrained(folder)


def _dequantized(tensor, process) -> tuple[str, object]:
    """One GGUF tensor as (its processed name, a torch tensor), processed as its architecture processes it: float32,
    but a table that the processing leaves as it is (checked on its first block), which is dequantized
    `DEQUANTIZE_BLOCK` bytes of rows at a time into the float16 it rests in (a table is a matrix)."""
    import numpy as np
    import torch
    from gguf import dequantize

    count = len(tensor.data)
    rows = max(1, DEQUANTIZE_BLOCK // (4 * int(tensor.shape[0]))) if tensor.name in TABLES else count
    block = dequantize(tensor.data[:rows], tensor.tensor_type)
    result = process(block, tensor.name)
    if rows < count and result.weights is block:
        table = torch.empty((count, *block.shape[1:]), dtype=torch.float16)
        table[:rows] = torch.from_numpy(block)
        for start in range(rows, count, rows):
            table[start:start + rows] = torch.from_numpy(dequantize(tensor.data[start:start + rows],
                                                                    tensor.tensor_type))
        return result.name, table
    if rows < count:  # the architecture changes this table: processed whole
        result = process(dequantize(tensor.data, tensor.tensor_type), tensor.name)
    return result.name, torch.from_numpy(np.require(result.weights, requirements="W"))  # the reader's are read-only


def _release_pages(mapped, tensor) -> None:
    """Drop from this process's resident memory the pages of the memory-mapped GGUF that `tensor` was read from
    (they stay in the page cache; read again, they come back): reading every tensor once would otherwise leave the
    whole file resident (4.7 GB for a 7B Q4_K_M). The mapping is numpy's memmap's own (`_mmap`: the reader maps the
    file once, and numpy offers no other handle on it); where it or madvise is missing, nothing is done."""
    import mmap

    buffer = getattr(mapped, "_mmap", None)
    if buffer is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = tensor.data_offset - tensor.data_offset % mmap.PAGESIZE
    buffer.madvise(mmap.MADV_DONTNEED, start, tensor.data_offset + tensor.n_bytes - start)


def _save_in_shards(named_tensors, folder: Path) -> set[str]:
    """Write (name, tensor) pairs as they come into safetensors files of about `SHARD_BYTES` each (a larger tensor
    alone in its file) with the index transformers reads (`model.safetensors.index.json`): at most one file's
    tensors are held. The names written."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weight_map, shard, size, total = {}, {}, 0, 0

    def flush():
        file = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, folder / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))

    for name, tensor in named_tensors:
        if shard and size + tensor.nbytes > SHARD_BYTES:
            flush()
            shard, size = {}, 0
        shard[name] = tensor.contiguous()
        size += tensor.nbytes
        total += tensor.nbytes
    if shard:
        flush()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return set(weight_map)
