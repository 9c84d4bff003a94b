"""The model manifest and the model folder.

Nothing here loads a network: this module only knows which files exist, where they come from, and whether the
copy in the model folder is the right one (sha256). Loaders live next to the stages that use them.

Two kinds of entries: single files (`file` + `sha256` + `source`, the embedded set) and Hugging Face hub folders
(`hub_id` + `revision` + `folder`, the GPU set), which pipeline/models/hub.py installs and checks.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ModelMissingError
from . import hub

MANIFEST = Path(__file__).with_name("manifest.toml")
BUNDLED_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    set: str
    file: str = ""  # single-file entries: file name in the model folder
    sha256: str = ""
    source: str = ""
    licence: str = ""
    purpose: str = ""
    bundled: bool = False
    # hub-folder entries (set = "gpu"): a snapshot of a Hugging Face repository at a pinned revision
    hub_id: str | None = None
    revision: str | None = None
    folder: str | None = None  # sub-folder of the model folder
    allow: tuple[str, ...] | None = None  # download only these files (glob patterns)
    required: tuple[str, ...] | None = None  # files that must be present ("a|b": either)
    variant: str | None = None  # weights variant to load (diffusers/transformers `variant`, e.g. "fp16")

    def __post_init__(self) -> None:
        for key in ("allow", "required"):
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))
        needed = ("hub_id", "revision", "folder") if self.hub_id else ("file", "sha256", "source")
        missing = [k for k in needed + ("licence",) if not getattr(self, k)]
        if missing:
            raise ValueError(f"manifest entry '{self.name}' lacks {', '.join(missing)}")

    @property
    def is_hub(self) -> bool:
        return self.hub_id is not None

    def download_url(self) -> str | None:
        """Raw download address for `github:owner/repo@commit:path` sources."""
        if not self.source.startswith("github:"):
            return None
        repo, _, rest = self.source[len("github:"):].partition("@")
        commit, _, path = rest.partition(":")
        return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@lru_cache(maxsize=1)
def manifest() -> dict[str, ModelSpec]:
    with MANIFEST.open("rb") as fh:
        entries = tomllib.load(fh)["model"]
    return {e["name"]: ModelSpec(**e) for e in entries}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def location(spec: ModelSpec, model_dir: Path) -> Path:
    if spec.is_hub:
        return Path(model_dir) / spec.folder
    return (BUNDLED_DIR if spec.bundled else Path(model_dir)) / spec.file


def require(model_dir: Path | str, name: str) -> Path:
    """Path of an installed model file, or ModelMissingError naming the command that installs it.

    Only existence is checked here (hashing 10 MB on every worker start is wasted time); `models verify` and
    `models pull` check sha256.
    """
    spec = manifest()[name]
    if spec.is_hub:
        return hub.require(spec, Path(model_dir))
    path = location(spec, Path(model_dir))
    if not path.is_file():
        raise ModelMissingError(
            f"model '{name}' ({spec.file}) is not installed in {path.parent}; run "
            f"`render-appliance models pull` (online) or `render-appliance models pull --from DIR` "
            f"with a folder that holds it")
    return path


def status(model_dir: Path | str, names: Iterable[str] | None = None, *, check_hash: bool = True,
           model_set: str = "embedded") -> dict[str, str]:
    """name -> 'ok' | 'missing' | 'sha256 mismatch' (files) or 'ok' | 'missing' | 'wrong revision: ...' |
    'incomplete: ...' (hub folders). Without `names`: the entries of `model_set` ("all" for every entry)."""
    result = {}
    if not names:
        names = [n for n, s in manifest().items() if model_set in ("all", s.set)]
    for name in names:
        spec = manifest()[name]
        path = location(spec, Path(model_dir))
        if spec.is_hub:
            result[name] = hub.state(spec, Path(model_dir))
        elif not path.is_file():
            result[name] = "missing"
        elif check_hash and sha256_of(path) != spec.sha256:
            result[name] = "sha256 mismatch"
        else:
            result[name] = "ok"
    return result


def _install_file(spec: ModelSpec, src: Path, model_dir: Path) -> None:
    got = sha256_of(src)
    if got != spec.sha256:
        raise ModelMissingError(f"model '{spec.name}': {src} has sha256 {got}, expected {spec.sha256}")
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / (spec.file + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(model_dir / spec.file)  # atomic: a half-copied model is never seen


def _selected(model_set: str) -> list[ModelSpec]:
    return [s for s in manifest().values() if model_set in ("all", s.set) and not s.bundled]


def install_from(src_dir: Path | str, model_dir: Path | str, *, model_set: str = "embedded",
                 log: Callable[[str], None] = print) -> None:
    """Copy the set's files from a local folder (air-gapped install), verifying sha256 (files) or the recorded
    revision (hub folders, see hub.install_from)."""
    src_dir, model_dir = Path(src_dir), Path(model_dir)
    files = [s for s in _selected(model_set) if not s.is_hub]
    missing = [s.file for s in files if not (src_dir / s.file).is_file()]
    missing += [s.folder + "/" for s in _selected(model_set) if s.is_hub and not (src_dir / s.folder).is_dir()]
    if missing:
        raise ModelMissingError(f"{src_dir} lacks {', '.join(missing)}")
    for spec in _selected(model_set):
        if spec.is_hub:
            hub.install_from(spec, src_dir / spec.folder, model_dir, log)
            continue
        dest = model_dir / spec.file
        if dest.is_file() and sha256_of(dest) == spec.sha256:
            log(f"{spec.name}: already installed")
            continue
        _install_file(spec, src_dir / spec.file, model_dir)
        log(f"{spec.name}: installed {spec.file}")


def pull(model_dir: Path | str, *, model_set: str = "embedded", log: Callable[[str], None] = print) -> None:
    """Download the set's files from their public sources, verifying sha256 (hub folders: see hub.pull)."""
    import tempfile

    import httpx

    model_dir = Path(model_dir)
    for spec in _selected(model_set):
        if spec.is_hub:
            hub.pull(spec, model_dir, log)
            continue
        dest = model_dir / spec.file
        if dest.is_file() and sha256_of(dest) == spec.sha256:
            log(f"{spec.name}: already installed")
            continue
        url = spec.download_url()
        if url is None:
            raise ModelMissingError(f"model '{spec.name}': no download address for source {spec.source}")
        log(f"{spec.name}: downloading {url}")
        with tempfile.TemporaryDirectory() as tmp:
            part = Path(tmp) / spec.file
            try:
                with httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp:
                    resp.raise_for_status()
                    with part.open("wb") as fh:
                        for chunk in resp.iter_bytes():
                            fh.write(chunk)
            except httpx.HTTPError as exc:
                raise ModelMissingError(
                    f"model '{spec.name}': download failed ({exc}); on an offline machine copy the files and run "
                    f"`render-appliance models pull --from DIR`") from exc
            _install_file(spec, part, model_dir)
        log(f"{spec.name}: installed {spec.file}")
