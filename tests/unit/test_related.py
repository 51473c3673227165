"""Choosing the related videos among the index's candidates."""

from __future__ import annotations

import uuid

import pytest

from killrvideo_reco.domain.related import RelatedVideo, best_related, candidate_count


def video(score: float) -> RelatedVideo:
    return RelatedVideo(video_id=uuid.uuid4(), title=None, thumbnail_url=None, score=score)


@pytest.mark.parametrize(
    ("limit", "overfetch", "expected"), [(10, 1, 11), (10, 2, 21), (100, 9, 901), (100, 10, 1000)]
)
def test_the_index_is_asked_for_overfetch_per_video_plus_itself_up_to_cassandras_cap(
    limit: int, overfetch: int, expected: int
) -> None:
    assert candidate_count(limit, overfetch) == expected


def test_the_best_exact_scores_win_whatever_the_index_order() -> None:
    a, b, c, d = video(0.7), video(0.9), video(0.8), video(0.95)
    assert best_related([a, b, c, d], video_id=uuid.uuid4(), limit=3) == [d, b, c]


def test_the_video_itself_is_never_related() -> None:
    me, other = video(1.0), video(0.5)
    assert best_related([me, other], video_id=me.video_id, limit=10) == [other]


def test_equal_scores_keep_the_index_order() -> None:
    first, second = video(0.8), video(0.8)
    assert best_related([first, second], video_id=uuid.uuid4(), limit=1) == [first]
