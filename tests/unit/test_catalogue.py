"""Parsing the KillrVideo CSV export (cqlsh COPY TO, no header)."""

from __future__ import annotations

import csv
import io

import pytest

from killrvideo_reco.domain.videos import Video, embedding_text, parse_catalogue_row
from killrvideo_reco.errors import InvalidRequest

VID = "b77d0ad9-c863-40da-8bad-8cd70cb0c1aa"
USER = "c47e9127-d184-4824-a685-77329465e9c7"


def record(
    description: str, *, vector: str = '"[0.5, -0.25]"', tags: str = "\"{'a', 'b'}\""
) -> list[str]:
    line = (
        f"{VID},2021-10-13 17:58:01.000+0000,Education,{vector},G,{description},en,"
        f"https://youtube/x,1,A name,https://i.ytimg.com/x.jpg,{tags},{USER},,yt1"
    )
    return next(csv.reader(io.StringIO(line)))


def test_a_clean_record() -> None:
    row = parse_catalogue_row(record("Plain words"))
    assert row.vector == [0.5, -0.25]
    video = row.video
    assert (str(video.videoid), str(video.userid), video.name) == (VID, USER, "A name")
    assert video.description == "Plain words" and video.tags == {"a", "b"}
    assert video.thumbnail_url == video.preview_image_location == "https://i.ytimg.com/x.jpg"
    assert video.added_date.year == 2021 and video.added_date.utcoffset() is not None


def test_an_unquoted_description_with_commas_is_joined_back() -> None:
    fields = record("one, two, three")
    assert len(fields) == 17
    assert parse_catalogue_row(fields).video.description == "one, two, three"


def test_no_vector_and_no_tags() -> None:
    row = parse_catalogue_row(record("d", vector="", tags=""))
    assert row.vector is None and row.video.tags == frozenset()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["x"] * 3, "expected 15 fields, got 3"),
        (record("d", vector='"[0.5, oops]"'), VID),
        (record("d", tags="a-b"), "not a set literal"),
    ],
)
def test_records_that_cannot_be_trusted_are_refused(fields: list[str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_catalogue_row(fields)


def test_embedding_text_uses_name_description_and_sorted_tags() -> None:
    video = Video(name=" Title ", description="About it.", tags=frozenset({"z", "a"}))
    assert embedding_text(video) == "Title\nAbout it.\nTags: a, z"
    assert embedding_text(Video(name="Only")) == "Only"
