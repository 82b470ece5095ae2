"""Dataset readers (NYUD, PASCAL-MT), paired image/label augmentation, and the SynthIndoor
renderer (``mtlsi_edge.data.synthindoor``) that writes NYUD-layout data when no real data is
available."""
