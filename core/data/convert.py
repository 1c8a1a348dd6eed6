"""The one converter: from a format's :class:`Source` to a finished records folder.

A format module (plugins/datasets/kitti.py, coco.py, yolo_txt.py) only lists
its images and says how to read one image's labels. This module does the
rest for all of them: the fingerprint that names (and lets us reuse) the
records folder, the train/val split, the per-image work in worker processes,
the shards and ``manifest.json``.

A dataset whose params ask for tiles (``tile``) is split by source image first and
cut into tiles after, image by image, so no pixel of a validation image reaches
training; the manifest's ``tiles`` lists every source image with its tiles
(core/data/prepared.py says how).

Results are consumed in item order whatever the number of workers, and each
image's record depends only on that image, so the shards (and their sha256)
are the same for 1 worker or 16.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
import os
import random
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from tqdm import tqdm

from detplug.core.data import records
from detplug.core.data.letterbox import PAD_VALUE
from detplug.core.data.prepared import FORMAT_VERSION, MANIFEST_NAME, SPLITS, PreparedData, read_prepared
from detplug.core.data.source import Converted, Failed, LabelReader, SourceItem, convert_chunk, convert_item
from detplug.core.data.staging import staging
from detplug.core.data.tiles import TileSettings
from detplug.core.disk import writing
from detplug.core.errors import DataError, first_few
from detplug.core.plan.specs import name_tuple

log = logging.getLogger(__name__)

#: Below this many images one process is faster than starting a pool.
PARALLEL_MIN = 48

#: Images per task sent to a worker, and tasks kept in flight per worker: enough
#: to hide the hand-over, few enough to bound the memory held by finished PNGs.
CHUNK = 8
IN_FLIGHT_PER_WORKER = 4

#: Params that say where the source is, not what the records hold: moving a
#: dataset must not force a new conversion.
LOCATION_PARAMS = ("root", "synthetic_fallback")


@attrs.frozen(kw_only=True)
class Source:
    """What a format reader found.

    Either ``items`` (split here by the params' ``val_ratio`` and ``split_seed``)
    or ``splits`` (given by the source: split files, folders, a second annotation file).
    """

    format: str
    root: Path = attrs.field(converter=Path)
    classes: tuple[str, ...] = attrs.field(converter=name_tuple)
    #: Source label -> class index (IGNORE_CLASS for ignore regions), for the manifest.
    label_map: Mapping[str, int]
    reader: LabelReader
    items: Sequence[SourceItem] = ()
    splits: Mapping[str, Sequence[SourceItem]] | None = None
    #: How ``splits`` were made, for the manifest (e.g. "ImageSets/train.txt, ImageSets/val.txt").
    split_origin: str = ""
    #: Every file the records depend on; their names, sizes and mtimes key the records folder.
    fingerprint_files: Sequence[Path] = ()
    #: Format-specific entries for the manifest's "source".
    notes: Mapping[str, Any] = attrs.field(factory=dict)
    #: Label files whose image is missing: nothing of them is converted, and the run says so.
    unmatched_labels: Sequence[str] = ()


def conversion_params(params: Any, source: Source) -> dict[str, Any]:
    """What changes the records: any change gives a new records folder."""
    values = {key: value for key, value in attrs.asdict(params).items() if key not in LOCATION_PARAMS}
    return json.loads(json.dumps({
        "format_version": FORMAT_VERSION,
        "format": source.format,
        **values,
        "classes": list(source.classes),
        "label_map": dict(source.label_map),
    }))


def source_fingerprint(source: Source, params: Any) -> str:
    """sha256 of every source file's name, size and mtime plus the conversion params:
    cheap (stat only) and changes whenever a file or a param does."""
    digest = hashlib.sha256(json.dumps(conversion_params(params, source), sort_keys=True).encode())
    for path in source.fingerprint_files:
        path = Path(path)
        try:
            name = path.relative_to(source.root).as_posix()
        except ValueError:
            name = path.as_posix()
        try:
            stat = path.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0missing\n".encode())  # reported per image while converting
    return digest.hexdigest()


def split_items(items: Sequence[SourceItem], val_ratio: float, split_seed: int) -> dict[str, list[SourceItem]]:
    """A seeded random train/val split by key; each split keeps key order."""
    if len(items) < 2:
        raise DataError(f"a train/val split needs at least 2 images (found {len(items)})")
    keys = sorted(item.key for item in items)
    random.Random(split_seed).shuffle(keys)
    val_count = min(len(keys) - 1, max(1, round(len(keys) * val_ratio)))
    val = set(keys[:val_count])
    ordered = sorted(items, key=lambda item: item.key)
    return {"train": [i for i in ordered if i.key not in val], "val": [i for i in ordered if i.key in val]}


def default_workers(images: int) -> int:
    return 1 if images < PARALLEL_MIN else os.cpu_count() or 1


def _convert_all(source: Source, items: Sequence[SourceItem], params: Any, workers: int) -> Generator[Any, None, None]:
    """:func:`convert_item` over ``items``, in order, in ``workers`` processes."""
    target, max_boxes, tile = tuple(params.image_size), params.max_boxes, tile_settings(params)
    done = 0
    if workers > 1:
        # spawn, not fork: the parent usually holds TensorFlow's threads, and a forked
        # copy of a multi-threaded process can deadlock. Workers import no TensorFlow.
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        pending: collections.deque = collections.deque()
        try:
            for start in range(0, len(items), CHUNK):
                pending.append(pool.submit(convert_chunk, source.reader, items[start : start + CHUNK], target,
                                           max_boxes, tile))
                if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    for result in pending.popleft().result():
                        done += 1
                        yield result
            while pending:
                for result in pending.popleft().result():
                    done += 1
                    yield result
        except concurrent.futures.process.BrokenProcessPool as error:
            # Workers that cannot start (e.g. a script without an ``if __name__ == "__main__"``
            # guard, which spawn re-imports) must not cost the conversion: go on in-process.
            log.info(f"worker processes stopped ({error}); converting the remaining images in this process")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for item in items[done:]:
        yield convert_item(source.reader, item, target, max_boxes, tile)


def tile_settings(params: Any) -> TileSettings | None:
    """The params' ``tile`` (None: whole images); a third party's params may have none."""
    return getattr(params, "tile", None)


def _source_entry(item: SourceItem, converted: Converted, split: str) -> dict[str, Any]:
    """A tiled dataset's manifest entry for one source image: where it is, its size and its
    tiles, and for the val split its boxes as labelled, so that whole images can be evaluated
    by sliced prediction without reading the source's labels again."""
    entry: dict[str, Any] = {"key": item.key, "image": str(item.image), "size": list(converted.size),
                             "tiles": [list(record.window) for record in converted.records]}
    if split == "val":
        entry["boxes"] = converted.source_boxes.astype(float).round(3).tolist()
        entry["classes"] = converted.source_classes.astype(int).tolist()
    return entry


def _stop_message(failed: Failed, split: str) -> str:
    advice = (
        "conversion stopped and the records already in the cache are untouched; fix the file, or pass "
        "--skip-bad (skip_bad=True) to leave bad images out and list them in manifest.json"
    )
    if len(failed.errors) == 1:
        return f"{failed.errors[0]} ({split} image {failed.key}); {advice}"
    listed = "".join(f"\n  {error}" for error in failed.errors)
    return f"{split} image {failed.key} ({failed.image}) has {len(failed.errors)} problems; {advice}:{listed}"


def convert_source(
    source: Source,
    params: Any,
    *,
    cache_dir: str | Path,
    dataset: str,
    skip_bad: bool = False,
    force: bool = False,
    workers: int | None = None,
) -> PreparedData:
    """Convert ``source`` into ``cache_dir/records/<dataset>-<fingerprint[:16]>``, or reuse
    that folder when the source and params are unchanged (unless ``force``).

    A bad image (its labels, its boxes or the image itself) stops the
    conversion with a DataError listing all of that image's problems; with
    ``skip_bad`` it is left out, counted and listed in the manifest's ``skipped``.
    """
    if not source.classes:
        raise DataError(f"{dataset}: no classes to convert; list them in the dataset's 'classes' param")
    fingerprint = source_fingerprint(source, params)
    final = Path(cache_dir).absolute() / "records" / f"{dataset}-{fingerprint[:16]}"
    if (final / MANIFEST_NAME).is_file() and not force:
        prepared = read_prepared(final)
        log.info(f"{dataset}: source unchanged, reusing the records in {final}")
        return prepared

    if source.splits is not None:
        splits = {split: sorted(source.splits.get(split, ()), key=lambda i: i.key) for split in SPLITS}
        split_origin = source.split_origin
    else:
        splits = split_items(source.items, params.val_ratio, params.split_seed)
        split_origin = f"random: val_ratio {params.val_ratio:g}, split_seed {params.split_seed}"
    ordered = [(split, item) for split in SPLITS for item in splits[split]]
    keys = [item.key for _, item in ordered]
    if len(set(keys)) != len(keys):
        twice = sorted(key for key, count in collections.Counter(keys).items() if count > 1)[:5]
        raise DataError(f"{dataset}: images {', '.join(twice)} are listed twice in {source.root}")
    workers = workers or default_workers(len(ordered))
    log.info(
        f"{dataset}: converting {len(ordered)} images from {source.root} to {tuple(params.image_size)} "
        f"records in {final}"
    )
    started = time.perf_counter()
    skipped: list[dict[str, Any]] = []
    tile = tile_settings(params)
    tiled_images: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    beyond_max_boxes = empty_boxes = 0
    dropped_in: dict[str, list[str]] = {"beyond_max_boxes": [], "empty_after_clipping": []}
    with writing(f"the records of dataset '{dataset}'", final.parent), staging(final, replace=force) as folder:
        per_shard = getattr(params, "records_per_shard", None)  # a third party's params may not say
        writers = {split: records.ShardWriter(folder, split, source.classes, records_per_shard=per_shard)
                   for split in SPLITS}
        results = _convert_all(source, [item for _, item in ordered], params, workers)
        bar = tqdm(total=len(ordered), desc=dataset, unit="img", mininterval=0.5, disable=None, leave=False)
        try:
            for (split, item), result in zip(ordered, results, strict=True):
                bar.update(1)
                if isinstance(result, Failed):
                    if not skip_bad:
                        raise DataError(_stop_message(result, split))
                    skipped.append({"image": result.image, "split": split, "reasons": list(result.errors)})
                    continue
                for record in result.records:
                    writers[split].write(record)
                if tile is not None:
                    tiled_images[split].append(_source_entry(item, result, split))
                beyond_max_boxes += result.beyond_max_boxes
                empty_boxes += result.empty_boxes
                for kind, count in (("beyond_max_boxes", result.beyond_max_boxes),
                                    ("empty_after_clipping", result.empty_boxes)):
                    if count:
                        dropped_in[kind].append(result.key)
        finally:
            bar.close()
            results.close()  # stops the workers when conversion stopped early
            for writer in writers.values():
                writer.close()
        split_entries = {split: writers[split].finish() for split in SPLITS}
        if split_entries["train"]["images"] == 0:
            raise DataError(f"{dataset}: no train image is left to convert in {source.root}")
        manifest = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "source": {
                "format": source.format,
                "path": str(source.root),
                "fingerprint": fingerprint,
                "split": split_origin,
                **source.notes,
            },
            "image_size": list(params.image_size),
            "size_policy": "letterbox",
            "pad_value": PAD_VALUE,
            "classes": list(source.classes),
            "label_map": dict(source.label_map),
            "conversion": conversion_params(params, source),
            "splits": split_entries,
            "dropped_boxes": {"beyond_max_boxes": beyond_max_boxes, "empty_after_clipping": empty_boxes,
                              "images": dropped_in},
            "labels_without_images": list(source.unmatched_labels),
        }
        if tile is not None:
            for split in SPLITS:
                split_entries[split]["source_images"] = len(tiled_images[split])
            manifest["tiles"] = {"size": tile.size, "overlap": tile.overlap, "min_area_ratio": tile.min_area_ratio,
                                 "images": tiled_images}
        if skip_bad:
            manifest["skip_bad"] = True
            manifest["skipped"] = skipped
        records.write_manifest(folder, manifest)
    _report(dataset, source, params, manifest, time.perf_counter() - started, workers)
    return read_prepared(final)


def _report(dataset: str, source: Source, params: Any, manifest: dict, seconds: float, workers: int) -> None:
    splits = manifest["splits"].values()
    # A tiled split counts its source images: its records are tiles, said on a line of their own.
    images = sum(s.get("source_images", s["images"]) for s in splits) + len(manifest.get("skipped", []))
    seen = {name: sum(s["boxes_per_class"][name] for s in splits) for name in source.classes}
    log.info(
        f"{dataset}: converted {images} images in {seconds:.1f} s ({images / max(seconds, 1e-9):.0f} images/s, "
        f"{workers} worker{'s' if workers > 1 else ''}): "
        + ", ".join(f"{name} {count}" for name, count in seen.items())
        + f", {sum(s['ignore_regions'] for s in splits)} ignore regions"
    )
    if "tiles" in manifest:
        tiles = manifest["tiles"]
        counts = {split: (entry["source_images"], entry["images"]) for split, entry in manifest["splits"].items()}
        size = tiles["size"]
        log.info(f"{dataset}: {sum(n for n, _ in counts.values())} images -> "
                 f"{sum(m for _, m in counts.values())} tiles of {size}x{size} (overlap {tiles['overlap']:g}; "
                 f"split by source image: "
                 + ", ".join(f"{split} {n} -> {m}" for split, (n, m) in counts.items()) + ")")
    if manifest.get("skipped"):
        names = [Path(entry["image"]).name for entry in manifest["skipped"]]
        log.info(f"{dataset}: skipped {len(names)} bad images ({first_few(names)}); manifest.json lists them "
                 f"with their reasons under 'skipped'")
    dropped = manifest["dropped_boxes"]
    in_images = dropped.get("images", {})
    if dropped["beyond_max_boxes"]:
        names = in_images.get("beyond_max_boxes", [])
        log.info(f"{dataset}: {dropped['beyond_max_boxes']} boxes beyond max_boxes={params.max_boxes} were left out, "
                 f"in {len(names)} images ({first_few(names)}); raise the dataset's max_boxes to keep them")
    if dropped["empty_after_clipping"]:
        names = in_images.get("empty_after_clipping", [])
        log.info(f"{dataset}: {dropped['empty_after_clipping']} boxes of zero width or height (after clipping to the "
                 f"image) were left out, in {len(names)} images ({first_few(names)})")
    if manifest.get("labels_without_images"):
        names = manifest["labels_without_images"]
        log.info(f"{dataset}: {len(names)} label files have no image and were left out ({first_few(names)})")
    missing = [name for name, count in seen.items() if count == 0]
    if missing:
        log.warning(f"{dataset}: warning: no boxes of class {', '.join(missing)} in {source.root}; check the plan's "
                    f"classes")
