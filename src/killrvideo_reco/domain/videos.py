"""A video row as the catalogue service creates it (name, description, tags…)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from ..errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Video:
    name: str
    description: str | None = None
    tags: frozenset[str] = frozenset()
    userid: uuid.UUID | None = None
    thumbnail_url: str | None = None
    preview_image_location: str | None = None
    videoid: uuid.UUID = field(default_factory=uuid.uuid4)
    added_date: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidRequest("a video needs a non-empty name")


class VideoLine(msgspec.Struct, forbid_unknown_fields=True):
    """One line of a ``videos load`` JSONL file: the fields of ``videos add``."""

    name: str
    description: str | None = None
    tags: list[str] = []
    userid: uuid.UUID | None = None
    videoid: uuid.UUID | None = None
    thumbnail_url: str | None = None
    preview_image_location: str | None = None

    def to_video(self) -> Video:
        return Video(
            name=self.name,
            description=self.description,
            tags=frozenset(self.tags),
            userid=self.userid,
            thumbnail_url=self.thumbnail_url,
            preview_image_location=self.preview_image_location,
            videoid=self.videoid or uuid.uuid4(),
        )


_line_decoder = msgspec.json.Decoder(VideoLine)


def parse_video_line(line: bytes | str, *, lineno: int) -> Video:
    try:
        return _line_decoder.decode(line).to_video()
    except (msgspec.DecodeError, InvalidRequest) as exc:
        raise InvalidRequest(f"line {lineno}: {exc}") from None


# -- the KillrVideo catalogue export (cqlsh COPY TO, no header) ---------------------

CATALOGUE_COLUMNS = (
    "videoid", "added_date", "category", "content_features", "content_rating", "description",
    "language", "location", "location_type", "name", "preview_image_location", "tags",
    "userid", "views", "youtube_id",
)  # fmt: skip
_HEAD, _TAIL = 5, 9  # the fields before and after the description


@dataclass(frozen=True, slots=True)
class CatalogueRow:
    video: Video
    vector: list[float] | None  # the export's own embedding, when it has one


def parse_catalogue_row(fields: list[str]) -> CatalogueRow:
    """One CSV record of the export; InvalidRequest when it cannot be trusted.

    Some descriptions hold unquoted commas, which split them into several
    fields: the first 5 and the last 9 fields are fixed, the rest is the
    description.
    """
    if len(fields) < len(CATALOGUE_COLUMNS):
        raise InvalidRequest(f"expected {len(CATALOGUE_COLUMNS)} fields, got {len(fields)}")
    head, tail = fields[:_HEAD], fields[-_TAIL:]
    description = ",".join(fields[_HEAD:-_TAIL])
    row = dict(zip(CATALOGUE_COLUMNS, [*head, description, *tail], strict=True))
    try:
        videoid = uuid.UUID(row["videoid"])
        userid = uuid.UUID(row["userid"]) if row["userid"] else None
        added = datetime.strptime(row["added_date"], "%Y-%m-%d %H:%M:%S.%f%z")
        vector = (
            msgspec.json.decode(row["content_features"], type=list[float] | None)
            if row["content_features"]
            else None
        )
        tags = _set_literal(row["tags"])
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"video {row['videoid']!r}: {exc}") from None
    image = row["preview_image_location"] or None
    video = Video(
        name=row["name"],
        description=description.replace("\\\\n", "\n").replace("\\n", "\n") or None,
        tags=tags,
        userid=userid,
        # The export has no thumbnail_url; its preview image is the thumbnail.
        thumbnail_url=image,
        preview_image_location=image,
        videoid=videoid,
        added_date=added,
    )
    return CatalogueRow(video=video, vector=vector)


def _set_literal(text: str) -> frozenset[str]:
    """A CQL set<text> literal as cqlsh prints it: {'a', 'b'}."""
    text = text.strip()
    if not text:
        return frozenset()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"tags are not a set literal: {text[:40]!r}")
    inner = text[1:-1].strip()
    if not inner:
        return frozenset()
    return frozenset(part.strip().strip("'").replace("''", "'") for part in inner.split("', '"))


def embedding_text(video: Video) -> str:
    """What an embedding of a video's metadata is computed from: name, description, tags."""
    parts = [video.name.strip()]
    if video.description and video.description.strip():
        parts.append(video.description.strip())
    if video.tags:
        parts.append("Tags: " + ", ".join(sorted(video.tags)))
    return "\n".join(parts)
