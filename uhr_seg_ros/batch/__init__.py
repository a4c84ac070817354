"""Archive mode: map the segmenter over many files (images or mosaics) on a Ray cluster.

* :mod:`.jobs`: which inputs, where each mask goes, and the manifest that makes runs resumable;
* :mod:`.worker`: one :class:`~uhr_seg_ros.pipeline.Segmenter` per worker process, one file per
  call, every failure recorded instead of raised (no Ray import: testable and usable alone);
* :mod:`.ray_runner`: the Ray actors, a queue of files over them and replacement of dead ones.

Ray is the optional ``batch`` extra; only :mod:`.ray_runner` imports it.
"""
