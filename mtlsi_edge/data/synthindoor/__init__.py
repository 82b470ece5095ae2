"""SynthIndoor: procedurally generated indoor rooms with exact dense ground truth.

There is no NYUDv2 on this machine, so the project renders its own NYUD-like data. Each sample is
one random room (bedroom, living room, kitchen, office or bathroom) furnished with boxes and
vertical cylinders labelled with the 40 NYUD classes (``mtlsi_edge.tasks.NYUD_CLASSES``), seen
from a random camera pose inside the room, and rendered by vectorised ray casting in numpy:

- the room is a box seen from inside (walls, floor, ceiling): one analytic exit test for all rays;
- every furniture primitive is an axis-aligned box (slab method), a box rotated about the vertical
  axis (rays transformed into the box frame) or a vertical cylinder; each primitive is tested only
  on the rays of its projected screen rectangle and skipped when that rectangle is already covered
  by nearer hits; the nearest hit wins;
- normals, textures (procedural stripes, tiles, wood planks, fabric, drawers, books, pictures,
  windows, screens...) and Lambertian shading (ambient + a ceiling point light + a directional
  light, soft room-corner occlusion and contact shadows) are evaluated once on the visible hits.

Ground truth per image (``SynthSample``), ``H×W`` at the requested size:

- ``image_rgb``: ``H×W×3`` uint8 RGB;
- ``semseg``: ``H×W`` uint8 NYUD-40 class index 0..39 (255 where no surface was hit, which does
  not happen inside the closed room);
- ``depth``: ``H×W`` float32 metric z-depth along the optical axis (as NYUD), > 0;
- ``normals``: ``H×W×3`` float32 unit surface normals in the camera frame (OpenCV: x right,
  y down, z forward), oriented towards the camera (``n · ray < 0``);
- ``boundary``: ``H×W`` uint8 0/1, one pixel wide, on the nearer side of every label, instance or
  depth discontinuity (relative jump > 5 % between different surfaces);
- ``intrinsics``: ``3×3`` float32 pinhole matrix (NYU-like: fx = fy = 518.8·W/640, principal point
  at the image centre).

``render_sample(seed)`` is deterministic; ``write_dataset`` writes the NYUD "NYUDv2" layout read by
``mtlsi_edge.data.datasets.NYUDDataset``; ``render_walkthrough`` writes an mp4 camera loop through
one room.

Modules, in pipeline order: ``scene`` (constants, primitive types, dataclasses), ``layout``
(assemblies and their placement), ``furniture`` and ``rooms`` (recipes, ``make_scene``),
``camera`` (poses), ``raycast`` (nearest hits), ``textures`` and ``render`` (normals, textures,
lighting, noise; ``render_sample``), ``writer`` (``write_dataset``) and ``walkthrough``.
"""

from mtlsi_edge.data.synthindoor.render import render_sample
from mtlsi_edge.data.synthindoor.scene import ROOM_TYPES, SynthSample, intrinsics, sample_seed
from mtlsi_edge.data.synthindoor.walkthrough import render_walkthrough
from mtlsi_edge.data.synthindoor.writer import encode_normals, write_dataset

__all__ = [
    "SynthSample",
    "render_sample",
    "write_dataset",
    "render_walkthrough",
    "sample_seed",
    "intrinsics",
    "encode_normals",
    "ROOM_TYPES",
]
