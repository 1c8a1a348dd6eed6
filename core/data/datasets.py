"""Converting a plan's datasets: ``run.py --plan P --prepare`` and the start of training.

Each dataset's factory (core/build.py's contract) converts its source once;
an unchanged source is reused through the fingerprint in the records
folder's name, so calling this before every training run costs a stat per file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from detplug.core.data.prepared import PreparedData
from detplug.core.errors import DataError
from detplug.core.plan.plan_file import plan_argument

if TYPE_CHECKING:
    from detplug.core.plan.check import CheckedPlan
    from detplug.core.plan.specs import DatasetSpec



def _check_fits_plan(key: str, prepared: PreparedData, spec: DatasetSpec | None) -> None:
    """The records must hold what the model was checked against (the dataset's spec)."""
    if spec is None:
        return
    size = (spec.image.height, spec.image.width)
    if prepared.image_size != size or prepared.classes != tuple(spec.labels.classes):
        raise DataError(
            f"dataset '{key}': the records in {prepared.directory} hold {prepared.image_size[0]}x"
            f"{prepared.image_size[1]} images of classes {', '.join(prepared.classes)}, but the plan was checked "
            f"for {size[0]}x{size[1]} and {', '.join(spec.labels.classes)}; give the dataset 'classes' "
            f"explicitly, or the same --data-root to `run.py check` and to `run.py train`"
        )


def prepare_datasets(
    checked: CheckedPlan,
    *,
    data_root: str | Path | None,
    cache_dir: str | Path,
    skip_bad: bool = False,
    verify: bool = False,
    force: bool = False,
    keys: Iterable[str] | None = None,
) -> dict[str, PreparedData]:
    """Convert (or reuse) every dataset of a checked plan, by plan key.

    ``keys`` limits it to some datasets (training passes the ones its periods
    use); default: every dataset the plan names. ``skip_bad`` leaves bad
    images out and lists them in the manifest instead of stopping; ``force``
    converts even an unchanged source (replacing its records only once the
    new ones are complete); ``verify`` then re-reads every shard against its
    manifest and raises a DataError listing every problem.
    """
    from detplug.core.build import build_dataset

    data_root = Path(data_root) if data_root is not None else None
    cache_dir = Path(cache_dir)
    specs = {link.resolved.ref.key: link.output for link in checked.links}
    prepared = {}
    for key in list(checked.plan.datasets) if keys is None else list(keys):
        item = checked.resolved[f"datasets.{key}"]
        result = build_dataset(item.component, item.params, data_root=data_root, cache_dir=cache_dir,
                               skip_bad=skip_bad, force=force)
        _check_fits_plan(key, result, specs.get(f"datasets.{key}"))
        if verify:
            from detplug.core.data.integrity import verify_prepared

            problems = verify_prepared(result)
            if problems:
                raise DataError(
                    f"dataset '{key}': {len(problems)} problems in {result.directory}; delete the folder and run "
                    f"`run.py prepare --plan {plan_argument(checked.plan)}` again:"
                    + "".join(f"\n  {problem}" for problem in problems)
                )
        prepared[key] = result
    return prepared


def describe(key: str, prepared: PreparedData, *, verified: bool = False) -> str:
    """One line per dataset for ``--prepare``: where, how many images, boxes per class, skipped."""
    splits = prepared.manifest["splits"]
    counts = {name: sum(splits[s]["boxes_per_class"].get(name, 0) for s in splits) for name in prepared.classes}
    line = (
        f"dataset '{key}' ({prepared.dataset}): {prepared.images('train')} train + {prepared.images('val')} val "
        f"images, " + ", ".join(f"{name} {count}" for name, count in counts.items())
        + f"; {prepared.directory}"
    )
    if prepared.skipped:
        line += f"; {len(prepared.skipped)} bad images skipped (listed in manifest.json)"
    return line + ("; every shard verified" if verified else "")
