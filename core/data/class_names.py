"""The class names a dataset folder declares: YOLO's data.yaml / dataset.yaml (``names``),
or a classes.txt / obj.names with one name per line. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

from detplug.core.errors import DataError

NAME_FILES = ("data.yaml", "dataset.yaml", "classes.txt", "obj.names")


def names_from_yaml(path: Path) -> tuple[str, ...]:
    """A YOLO yaml's ``names``: a list, or a map 0: name, 1: name, ..."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"{path}: cannot read it as YAML ({error})") from None
    names = document.get("names") if isinstance(document, dict) else None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(
            f"{path}: 'names' must be a list of class names or a map 0: name, 1: name, ... (got {names!r})"
        )
    return tuple(names)


def source_names(root: Path) -> tuple[str, ...] | None:
    """The class names the folder declares (data.yaml / dataset.yaml / classes.txt / obj.names), or None."""
    for name in NAME_FILES:
        path = root / name
        if not path.is_file():
            continue
        if path.suffix == ".yaml":
            return names_from_yaml(path)
        try:
            names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read the class names ({error})") from None
        if not names:
            raise DataError(f"{path} lists no class names")
        return names
    return None
