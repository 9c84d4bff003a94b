"""Hugging Face hub folders (the GPU model set): download, offline import, and the installed-revision check.

Each hub entry of the manifest is a snapshot of one repository at a pinned revision, kept in `model_dir/<folder>`.
Installing writes a small marker file (MARKER) recording the repository, the manifest revision and the commit
that was downloaded; `require` compares it with the manifest, so a folder from another revision (or another
repository) is refused with a message naming the fix instead of being loaded. Weights are not hashed here: the hub
checks them on download, and a partial copy is caught by the `required` files list and by the loader.

Nothing in this module runs at render time except `require` / `state` (file-system checks only).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import ModelMissingError

if TYPE_CHECKING:
    from .registry import ModelSpec

MARKER = ".render-appliance-model.json"
DEFAULT_REQUIRED = ("config.json",)
_SHA = re.compile(r"^[0-9a-f]{40}$")
_FIX = ("run `render-appliance models pull --set gpu` (online) or `render-appliance models pull --set gpu --from DIR` "
        "with a folder that holds it")


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def write_marker(folder: Path, spec: "ModelSpec", commit: str | None) -> None:
    data = {"name": spec.name, "hub_id": spec.hub_id, "revision": spec.revision, "commit": commit}
    (folder / MARKER).write_text(json.dumps(data, indent=1) + "\n")


def _revision_problem(spec: "ModelSpec", marker: dict | None) -> str | None:
    """Why the recorded revision is not the manifest's, or None."""
    if marker is None:
        return f"no {MARKER} (not installed by `models pull`), so its revision is unknown"
    if marker.get("hub_id") != spec.hub_id:
        return f"it holds {marker.get('hub_id')}, the manifest wants {spec.hub_id}"
    commit = marker.get("commit")
    if marker.get("revision") != spec.revision and not (commit and commit == spec.revision):
        return (f"it holds revision {marker.get('revision')} (commit {commit or 'unknown'}), "
                f"the manifest pins {spec.revision}")
    if _SHA.match(spec.revision or "") and commit and commit != spec.revision:
        return f"it holds commit {commit}, the manifest pins {spec.revision}"
    return None


def _missing_files(spec: "ModelSpec", folder: Path) -> list[str]:
    missing = []
    for entry in spec.required or DEFAULT_REQUIRED:
        options = entry.split("|")
        if not any((folder / o).is_file() for o in options):
            missing.append(" or ".join(options))
    return missing


def state(spec: "ModelSpec", model_dir: Path) -> str:
    """'ok' | 'missing' | 'wrong revision: ...' | 'incomplete: ...'"""
    folder = Path(model_dir) / spec.folder
    if not folder.is_dir():
        return "missing"
    problem = _revision_problem(spec, read_marker(folder))
    if problem:
        return f"wrong revision: {problem}"
    missing = _missing_files(spec, folder)
    if missing:
        return f"incomplete: lacks {', '.join(missing)}"
    return "ok"


def require(spec: "ModelSpec", model_dir: Path) -> Path:
    """The installed folder, or ModelMissingError naming the problem and the command that fixes it."""
    folder = Path(model_dir) / spec.folder
    found = state(spec, model_dir)
    if found == "ok":
        return folder
    if found == "missing":
        raise ModelMissingError(f"model '{spec.name}' ({spec.hub_id}) is not installed in {folder}; {_FIX}")
    raise ModelMissingError(f"model '{spec.name}' in {folder} is not usable: {found}; {_FIX}")


def _commit_of_local_dir(folder: Path) -> str | None:
    """Commit recorded by `huggingface_hub` downloads with `local_dir` (.cache/huggingface/download/*.metadata:
    first line is the commit hash)."""
    for meta in sorted((folder / ".cache" / "huggingface" / "download").rglob("*.metadata")):
        try:
            first = meta.read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            continue
        if _SHA.match(first):
            return first
    return None


def _replace(tmp: Path, dest: Path) -> None:
    """Swap a fully written folder in; a half-copied model is never seen under its real name."""
    old = dest.with_name(dest.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)


def install_from(spec: "ModelSpec", src: Path, model_dir: Path, log: Callable[[str], None] = print) -> None:
    """Copy one hub folder from `src` (air-gapped install).

    `src` is either a folder this appliance installed (it holds MARKER) or a `huggingface-cli download
    --local-dir` folder (its commit is read from the download metadata). Its revision must be the manifest's."""
    src, model_dir = Path(src), Path(model_dir)
    if state(spec, model_dir) == "ok":
        log(f"{spec.name}: already installed")
        return
    marker = read_marker(src)
    commit = marker.get("commit") if marker else _commit_of_local_dir(src)
    if marker is None:
        if commit is None:
            raise ModelMissingError(
                f"model '{spec.name}': cannot tell which revision {src} holds (no {MARKER} and no "
                f"huggingface_hub download metadata); copy a folder made by `render-appliance models pull` or by "
                f"`huggingface-cli download {spec.hub_id} --revision {spec.revision} --local-dir DIR`")
        marker = {"hub_id": spec.hub_id, "revision": commit if _SHA.match(spec.revision) else spec.revision,
                  "commit": commit}
    problem = _revision_problem(spec, marker)
    if problem:
        raise ModelMissingError(f"model '{spec.name}': {src} is the wrong revision: {problem}")
    missing = _missing_files(spec, src)
    if missing:
        raise ModelMissingError(f"model '{spec.name}': {src} lacks {', '.join(missing)}")
    model_dir.mkdir(parents=True, exist_ok=True)
    dest = model_dir / spec.folder
    tmp = model_dir / f".{spec.folder}.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".cache", MARKER))
    write_marker(tmp, spec, commit)
    _replace(tmp, dest)
    log(f"{spec.name}: installed {spec.hub_id}@{commit or spec.revision} into {dest}")


def pull(spec: "ModelSpec", model_dir: Path, log: Callable[[str], None] = print) -> None:
    """Download one hub folder at the manifest revision (online machines)."""
    model_dir = Path(model_dir)
    if state(spec, model_dir) == "ok":
        log(f"{spec.name}: already installed")
        return
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as exc:
        raise ModelMissingError("the GPU model set needs huggingface_hub: pip install 'render-appliance[gpu]'") from exc
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{spec.folder}.part"
    try:
        commit = HfApi().model_info(spec.hub_id, revision=spec.revision).sha
        log(f"{spec.name}: downloading {spec.hub_id}@{commit} ({spec.licence})")
        snapshot_download(spec.hub_id, revision=commit or spec.revision, local_dir=tmp,
                          allow_patterns=list(spec.allow) if spec.allow else None)
    except (HfHubHTTPError, OSError) as exc:
        raise ModelMissingError(
            f"model '{spec.name}': download of {spec.hub_id}@{spec.revision} failed ({exc}); on an offline machine "
            f"copy the folder and run `render-appliance models pull --set gpu --from DIR`") from exc
    missing = _missing_files(spec, tmp)
    if missing:
        raise ModelMissingError(f"model '{spec.name}': the download lacks {', '.join(missing)} (check `allow`)")
    shutil.rmtree(tmp / ".cache", ignore_errors=True)
    write_marker(tmp, spec, commit)
    _replace(tmp, model_dir / spec.folder)
    log(f"{spec.name}: installed into {model_dir / spec.folder}")
