"""NewNameQuota: a sliding hourly window per subject, bounded in memory."""

from __future__ import annotations

from bitdust.identity.policy import NewNameQuota


def test_a_subject_gets_its_limit_per_window_and_no_more():
    quota = NewNameQuota(limit=2, window=3600)
    for now in (0.0, 10.0):
        assert quota.allows("key-a", now)
        quota.record("key-a", now)
    assert not quota.allows("key-a", 3599.0)
    assert quota.allows("key-b", 3599.0)  # subjects are counted apart
    assert quota.allows("key-a", 3600.0)  # the first claim left the window


def test_memory_is_bounded_by_forgetting_the_least_recently_active():
    quota = NewNameQuota(limit=1, window=3600, max_subjects=2)
    quota.record("old", 0.0)
    quota.record("mid", 1.0)
    quota.record("new", 2.0)
    assert quota.allows("old", 3.0)  # forgotten
    assert not quota.allows("mid", 3.0) and not quota.allows("new", 3.0)
