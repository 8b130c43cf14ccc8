"""Video: lazy frame sources (:mod:`~samkit.video.frames`), the typed tracking state
(:mod:`~samkit.video.state`), the tracker shared by inference and training
(:mod:`~samkit.video.tracking`), :class:`~samkit.video.predictor.VideoPredictor`, frames pushed one
at a time (:class:`~samkit.video.streaming.StreamingTracker`), writers of masks and videos
(:mod:`~samkit.video.writers`), the ``samkit track`` run (:mod:`~samkit.video.export`) and
generated clips as a frame source (:mod:`~samkit.video.synthetic`)."""

from samkit.video.predictor import VideoPredictor
from samkit.video.streaming import StreamingTracker

__all__ = ["VideoPredictor", "StreamingTracker"]
