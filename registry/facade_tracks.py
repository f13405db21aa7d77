"""The registry facade's track methods (:mod:`registry.tracks`, :mod:`registry.track_edits`).

A mixin of :class:`registry.facade.Registry`: it uses the facade's ``_conn``,
``embedding_version`` and ``_after_write``.
"""
from __future__ import annotations

from collections.abc import Sequence

from registry import track_edits, tracks


class TrackMethods:
    """Tracks of a video source and the edits a person makes to them."""

    # -- tracks (registry.tracks) --------------------------------------------------------------
    def create_track(self, object_ids: Sequence[str], *, category: str | None = None, metadata: dict | None = None) -> str:
        """A ``trk_…`` track of objects of one source; ``sequence_idx`` follows frame order."""
        return tracks.create_track(self._conn, self.embedding_version, object_ids, category=category,
                                   metadata=metadata)

    def get_track(self, track_id: str) -> dict:
        """The track row (+ ``category`` name) with ``objects`` in frame order (+ ``frame_idx``)."""
        return tracks.get_track(self._conn, self.embedding_version, track_id)

    def add_objects_to_track(self, track_id: str, object_ids: Sequence[str]) -> int:
        """Adds objects (same source and category, one per frame) to a track; returns how many were new."""
        return tracks.add_objects_to_track(self._conn, self.embedding_version, track_id, object_ids)

    def list_tracks(self, source_id: str) -> list[dict]:
        """A source's tracks by first frame: category, start/end frame, object_count, avg_confidence, metadata."""
        return tracks.list_tracks(self._conn, source_id)

    def delete_tracker_tracks(self, source_id: str) -> dict:
        """Deletes tracker-made, unedited tracks (+ their interpolated objects): ``{"tracks", "objects"}``."""
        return tracks.delete_tracker_tracks(self._conn, source_id)

    # -- track edits by a person (registry.track_edits) ----------------------------------------
    def merge_tracks(self, track_id: str, other_id: str, *, edited_by: str, keep: str = "refuse") -> dict:
        """Moves ``other_id``'s objects into ``track_id`` (see :func:`registry.track_edits.merge_tracks`)."""
        return track_edits.merge_tracks(self._conn, track_id, other_id, edited_by=edited_by, keep=keep)

    def split_track(self, track_id: str, frame_idx: int, *, edited_by: str) -> dict:
        """Objects on frames ``>= frame_idx`` go to a new track (``{"track_id", "new_track_id", "moved"}``)."""
        return track_edits.split_track(self._conn, track_id, frame_idx, edited_by=edited_by)

    def delete_track(self, track_id: str, *, with_objects: bool = False) -> dict:
        """Deletes a track; its objects stay unless ``with_objects``."""
        out = track_edits.delete_track(self._conn, track_id, version=self.embedding_version, with_objects=with_objects)
        if out["queued"]:
            self._after_write()
        return out

    def relabel_track(self, track_id: str, category: str, *, edited_by: str) -> dict:
        """Sets the category of a track and of all its objects."""
        out = track_edits.relabel_track(self._conn, track_id, category, version=self.embedding_version,
                                        edited_by=edited_by)
        if out["queued"]:
            self._after_write()
        return out

    def approve_track(self, track_id: str, *, edited_by: str) -> dict:
        """Approves every object of a track (validated_by = ``edited_by``)."""
        out = track_edits.approve_track(self._conn, track_id, version=self.embedding_version, edited_by=edited_by)
        if out["queued"]:
            self._after_write()
        return out
