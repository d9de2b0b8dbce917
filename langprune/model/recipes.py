"""Model presets: one TOML file per model in langprune/recipes/ (package data) says where it comes from and how it
exports."""

import tomllib
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from ..errors import UserError
from ..paths import cache_dir, recipes_dir, written
from .families import FAMILIES, Family


@dataclass(frozen=True)
class Recipe:
    name: str
    family: Family  # what the model must be; its GGUF architectures and layouts
    package: str | None = None  # a Python package that ships the GGUF
    file: str | None = None  # the GGUF's file name in that package
    assemble: bool = False  # the package ships chunks that its assemble() joins
    parts: tuple[str, ...] = ()  # or chunks in several packages ("package/inner/path"), joined here in order
    sha256: str | None = None  # of the joined parts
    path: str | None = None  # or a local GGUF file / Hugging Face directory

    def source_path(self) -> Path:
        """The local GGUF file or model directory this recipe names."""
        if self.path:
            return Path(self.path).expanduser()
        if self.parts:
            return self._joined_parts()
        folder = self._package_dir(self.package)
        if self.assemble:  # the package's assemble() joins its chunks and checks the hash
            return Path(import_module(self.package).assemble(cache_dir() / "models" / self.file))
        path = folder / self.file  # found without importing the package's code
        if not path.exists():
            raise UserError(f"recipe {self.name}: {path} is missing; reinstall with `make setup`")
        return path

    def _package_dir(self, package: str) -> Path:
        """An installed package's folder, found without importing its code."""
        spec = find_spec(package)
        if spec is None or spec.origin is None:
            raise UserError(f"recipe {self.name}: package {package!r} is not installed: `pip install {package}` "
                            "(`make setup` installs every recipe's)")
        return Path(spec.origin).parent

    def _joined_parts(self) -> Path:
        """The parts joined once into the cache, checked against sha256 (a later call finds the file)."""
        import hashlib

        target = cache_dir() / "models" / self.file
        if target.is_file():
            return target
        files = [self._package_dir(part.split("/")[0]).parent / part for part in self.parts]
        digest = hashlib.sha256()
        with written(target) as partial, open(partial, "wb") as out:
            for path in files:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != self.sha256:
                raise UserError(f"recipe {self.name}: the joined parts' sha256 is {digest.hexdigest()}, not "
                                f"{self.sha256}: reinstall them with `make setup`")
        return target


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


def load_recipe(name: str) -> Recipe:
    path = recipes_dir() / f"{name}.toml"
    if not path.exists():
        raise UserError(f"no recipe {name!r} (available: {', '.join(available_recipes())})")
    data = tomllib.loads(path.read_text())
    source = data.get("source", {})
    if data.get("family") not in FAMILIES:
        raise UserError(f"recipe {name}: family {data.get('family')!r} is not one of {', '.join(FAMILIES)}")
    return Recipe(
        name=data.get("name", name),
        family=FAMILIES[data["family"]],
        package=source.get("package"),
        file=source.get("file"),
        assemble=source.get("assemble", False),
        parts=tuple(source.get("parts", ())),
        sha256=source.get("sha256"),
        path=source.get("path"),
    )
