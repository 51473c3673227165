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
