"""detplug's core: everything but the components, in layers from plan (bottom) to cli (top).

    errors.py  the error types every layer raises
    disk.py    files written whole or not at all; disk faults as sentences
    console.py what detplug says: the `detplug` logger tree, the command line's console handler
    plan/      the plan file, params, specs, the static check        (no TensorFlow)
    build.py   the per-kind factory contract; every component is built here
    data/      datasets to TFRecords, and the tf.data input pipeline
    model/     the assembled Keras model, losses, box maths, inference
    evaluate/  the evaluator contract, KITTI files, detections on the val split
    pictures/  training curves, PR curves, the data as the trainer sees it (no TensorFlow)
    train/     the training run: session, trainer loop, checkpoints, resume
    cli/       the commands run.py dispatches to

Each layer may import those listed before it (tests/test_layout.py reads this list);
build.py, which every layer uses to build components, checks their results against those
layers' types. No core module imports a plugin: components are found through the
registry, and there are no import loops, not even through imports made for annotations.
"""
