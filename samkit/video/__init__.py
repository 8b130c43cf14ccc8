"""Video: lazy frame sources (:mod:`samkit.video.frames`) and synthetic clips with ground
truth (:mod:`samkit.video.synthetic`)."""
