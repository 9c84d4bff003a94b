"""Input references: what a job's `image_url`, `texture_url` and `mask_url` name, parsed in one place.

A stored reference is one string (the job table and the API keep that form):
    "https://..."         a URL the worker downloads (through the SSRF guard)
    "#RRGGBB"             a paint colour (texture only)
    "upload:<file>"       a file in the job's own folder (console uploads, retries, mask fixes)
The API accepts URLs and colours only, so no client can point a job at a file on this box; only the job service
writes upload references.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipeline.images import parse_colour

UPLOAD_PREFIX = "upload:"


class RefKind(StrEnum):
    URL = "url"
    COLOUR = "colour"
    UPLOAD = "upload"


@dataclass(frozen=True)
class InputRef:
    kind: RefKind
    value: str  # the URL, the colour "#RRGGBB", or the file name in the job's folder

    @classmethod
    def parse(cls, text: str) -> "InputRef":
        """A stored reference (never fails: a bad upload name stays an upload whose `file_name` is None)."""
        if text.startswith(UPLOAD_PREFIX):
            return cls(RefKind.UPLOAD, text[len(UPLOAD_PREFIX):])
        if text.strip().startswith("#"):
            return cls(RefKind.COLOUR, text.strip())
        return cls(RefKind.URL, text)

    @classmethod
    def upload(cls, file_name: str) -> "InputRef":
        return cls(RefKind.UPLOAD, file_name)

    @property
    def is_colour(self) -> bool:
        return self.kind is RefKind.COLOUR

    @property
    def file_name(self) -> str | None:
        """An upload's file name when it is a plain name (no path, no dot-file), else None."""
        name = self.value
        ok = self.kind is RefKind.UPLOAD and 0 < len(name) <= 64 and not name.startswith(".") and \
            all(c.isalnum() or c in "._-" for c in name)
        return name if ok else None

    def __str__(self) -> str:
        return UPLOAD_PREFIX + self.value if self.kind is RefKind.UPLOAD else self.value


def parse_ref(text: str | None) -> InputRef | None:
    return None if text is None else InputRef.parse(text)


def normal_colour(text: str) -> str | None:
    """"#rrggbb" (any case, spaces around) -> "#RRGGBB", else None."""
    rgb = parse_colour(text)
    return None if rgb is None else "#%02X%02X%02X" % rgb


def upload_name(ref: str | None) -> str | None:
    """The file name behind an "upload:<name>" reference (a plain name, no path), else None."""
    parsed = parse_ref(ref)
    return parsed.file_name if parsed is not None else None
