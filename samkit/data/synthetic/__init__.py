"""Generated data with exact ground truth: image scenes of textured shapes (:mod:`.scenes`),
LabPics-like lab scenes (:mod:`.labpics`), clips of moving objects (:mod:`.clips`), all drawn
with the textures of :mod:`.textures`."""
