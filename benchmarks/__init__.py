"""Speed and cost of lmoe_viz, as ratios measured in one run (``make bench``).

Each piece is a small module with one ``*_piece(...)`` function that measures and returns
a :class:`benchmarks.report.Piece` (figures, the settings it ran with, the raw numbers):

* ``step``: a training step of each method against CE and its ideal pass count;
* ``extract``: ``lmoe_viz.extract.predict`` against a bare forward loop;
* ``pipeline``: images/s per worker of the paper presets' transforms on JPEGs;
* ``epoch``: evaluation time per epoch against training time per epoch;
* ``reproduce``: a cached ``lmoe-viz reproduce`` against the first one;
* ``gpu``: ResNet-50 at 448 px on a GPU (``python -m benchmarks.gpu``).

``python -m benchmarks`` runs them all, prints a table and writes
``benchmarks/results/<machine>.json``; ``--tiny`` runs each at a toy size (the tests).
"""
