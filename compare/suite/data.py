"""The one data loader: data folders to RGB images, boolean masks (cell, nucleus) and groups.

No data set is part of the project; :func:`resolve_dataset` finds a copy of
one (``--data``, its environment variable, ``../shared/data/NAME`` beside
the project, the user cache) and downloads it into the cache on first use
(:mod:`compare.suite.fetch`).  :func:`resolve_data_dir` is that for the
SigTuple set, the one every protocol fits on.

A SigTuple folder holds ``Train_Data/`` (images ``NAME.jpg`` with masks
``NAME-mask.jpg``) and ``Test_Data/`` (images only).  Training images named
``train-N`` are the 128 x 128 patches; the other training images are the large
labelled images.  Any folder in that layout can be read with ``--data DIR``.
:func:`load_domain` also reads the generic ``images/`` + ``masks/`` layout
and the CellaVision one (``Dataset 2/NNN.bmp`` with ``NNN.png``), whose
three-level masks give a nucleus as well as the whole cell.  Files are read
by :mod:`compare.io.images`.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compare.io.images import (
    IMAGE_SUFFIXES,
    MASK_SUFFIX,
    DataError,
    Sample,
    list_images,
    natural_key,
    read_image,
    read_mask_levels,
)
from compare.suite.fetch import DATA_ENV, source_of, user_cache_dir
from compare.suite.fetch import fetch as download

__all__ = [
    "CELLAVISION_FOLDER",
    "DATA_ENV",
    "KNOWN_OVERLAPS",
    "ResolvedData",
    "default_data_dir",
    "grouped_kfold",
    "load_domain",
    "load_large",
    "load_patches",
    "load_set",
    "load_test",
    "resolve_data_dir",
    "resolve_dataset",
    "shared_data_dir",
    "user_cache_dir",
    "without_groups",
]

#: Overlaps in the SigTuple data found by normalised cross-correlation (see
#: ``docs/data.md``): each patch listed belongs to the group named, so
#: grouped splits keep copies of one region in one fold.
KNOWN_OVERLAPS: dict[str, str] = {
    "train-68": "1467973122",
    "train-70": "1467973178",
    "train-71": "1467973178",
    "train-72": "1467973178",
    "train-90": "1467973104",
    "train-107": "54A84627F362",
    "train-108": "54A84627F362",
    "train-110": "54A84627F362",
    "train-57": "train-57",
    "train-58": "train-57",
}

_PATCH_NAME = re.compile(r"^train-\d+$")

#: Folder of the CellaVision set (Zheng et al. 2018) holding ``NNN.bmp`` images
#: beside their ``NNN.png`` masks (0 background, 128 cytoplasm, 255 nucleus).
CELLAVISION_FOLDER = "Dataset 2"


@dataclass(frozen=True)
class ResolvedData:
    """Where the data was found.

    Attributes
    ----------
    path : Path
        The data folder.
    source : str
        Which rule of :func:`resolve_dataset` chose it: ``"--data"``,
        ``"shared"``, ``"cache"`` or the name of the environment variable
        (``"WBC_DATA"`` for SigTuple, ``"WBC_CELLAVISION"``).
    dataset : str
        The data set's name in :data:`compare.suite.fetch.SOURCES`.
    """

    path: Path
    source: str
    dataset: str = "sigtuple"

    def describe(self) -> str:
        """The rule that chose the folder, in words."""
        fixed = {
            "--data": "given with --data",
            "shared": f"the shared copy ../shared/data/{self.dataset} beside the project",
            "cache": "the user cache",
        }
        return fixed.get(self.source, f"from the environment variable {self.source}")


def project_root() -> Path:
    """The folder holding the ``compare`` package."""
    return Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``../shared/data/sigtuple`` beside the project root (a verified copy on development machines and CI)."""
    return project_root().parent / "shared" / "data" / "sigtuple"


def _shared_dir(name: str) -> Path:
    """``../shared/data/NAME`` beside the project root."""
    return shared_data_dir() if name == "sigtuple" else project_root().parent / "shared" / "data" / name


def _is_missing_or_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def resolve_dataset(name: str, data: str | Path | None = None, *, fetch: bool = True,
                    progress: bool = True) -> ResolvedData:
    """Find a data set's folder; the one place every command, test and benchmark asks.

    In order:

    1. ``data`` (a ``--data DIR`` option), used as given, never downloaded
       into;
    2. the set's environment variable (``WBC_DATA`` for SigTuple,
       ``WBC_CELLAVISION``); when that folder is missing or empty, the set is
       downloaded into it (it names where the data set lives);
    3. ``../shared/data/NAME`` beside the project root, when it holds the
       set's marker folder (``Train_Data/``, ``Dataset 2/``);
    4. the user cache (:func:`user_cache_dir`), downloaded into on first use.

    Parameters
    ----------
    name : str
        A data set of :data:`compare.suite.fetch.SOURCES` (``"sigtuple"``,
        ``"cellavision"``).
    data : str or Path, optional
        An explicit folder.
    fetch : bool
        Download into the environment variable's folder or the cache when it
        is missing or empty; with False the path is returned as it is.
    progress : bool
        Show the download's progress bar.

    Returns
    -------
    ResolvedData

    Raises
    ------
    DataError
        The download failed (offline, blocked, or a file failed its hash);
        the message names the folder to put a copy in and the variable.
    """
    source = source_of(name)
    if data is not None and str(data) != "":
        return ResolvedData(Path(data).expanduser(), "--data", source.name)
    env = os.environ.get(source.data_env, "")
    if env:
        resolved = ResolvedData(Path(env).expanduser(), source.data_env, source.name)
    elif (_shared_dir(source.name) / source.marker).is_dir():
        return ResolvedData(_shared_dir(source.name), "shared", source.name)
    else:
        resolved = ResolvedData(user_cache_dir(source.name), "cache", source.name)
    if fetch and _is_missing_or_empty(resolved.path):
        download(resolved.path, source=source, progress=progress)
    return resolved


def resolve_data_dir(data: str | Path | None = None, *, fetch: bool = True, progress: bool = True) -> ResolvedData:
    """Find the SigTuple data folder: :func:`resolve_dataset` for ``"sigtuple"``.

    In order: ``data`` (``--data DIR``, any folder in the SigTuple layout),
    ``WBC_DATA`` (downloaded into when missing or empty),
    ``../shared/data/sigtuple`` when it holds ``Train_Data/``, the user cache
    (downloaded into on first use).

    Parameters
    ----------
    data : str or Path, optional
    fetch : bool
    progress : bool

    Returns
    -------
    ResolvedData
    """
    return resolve_dataset("sigtuple", data, fetch=fetch, progress=progress)


def default_data_dir() -> Path:
    """The SigTuple data folder found by :func:`resolve_data_dir` (downloaded on first use)."""
    return resolve_data_dir().path


def _find_mask(image_path: Path) -> Path:
    stem = image_path.stem + MASK_SUFFIX
    for suffix in (image_path.suffix, *IMAGE_SUFFIXES):
        for candidate in (image_path.with_name(stem + suffix), image_path.with_name(stem + suffix.upper())):
            if candidate.exists():
                return candidate
    raise DataError(
        f"{image_path}: no mask found (expected {image_path.with_name(stem + image_path.suffix).name} "
        "beside it); add the mask or move the image to Test_Data."
    )


def _group_of(name: str) -> str:
    return KNOWN_OVERLAPS.get(name, name)


def _read_sample(path: Path, find_mask, group: str, on_error: str,
                 errors: list[DataError] | None) -> Sample | None:
    """Read one image and, when ``find_mask`` is given, the mask it names (with its nucleus, if it has one).

    With ``on_error="skip"`` an unreadable file gives None and its
    :class:`DataError` is appended to ``errors``; otherwise the error is raised.
    """
    try:
        image = read_image(path)
        mask, nucleus = (None, None) if find_mask is None else read_mask_levels(find_mask(path), image.shape[:2])
    except DataError as exc:
        if on_error == "raise":
            raise
        if errors is not None:
            errors.append(exc)
        return None
    return Sample(path.stem, image, mask, group, path, nucleus)


def load_set(data_dir: str | Path | None, which: str, *, on_error: str = "raise",
             errors: list[DataError] | None = None) -> list[Sample]:
    """Load one of the three sets of a SigTuple-layout folder.

    Parameters
    ----------
    data_dir : str, Path or None
        The data folder; None asks :func:`resolve_data_dir`.
    which : {"patches", "large", "test"}
    on_error : {"raise", "skip"}
        With "skip", a file that cannot be read is left out and its
        :class:`DataError` appended to ``errors``, so one bad file does not
        stop the rest.
    errors : list, optional
        Receives the skipped files' errors.

    Returns
    -------
    list of Sample
        In natural file-name order.
    """
    if which not in ("patches", "large", "test"):
        raise ValueError(f"Unknown set {which!r}; choose 'patches', 'large' or 'test'.")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")
    root = resolve_data_dir(data_dir).path
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder; pass --data with a folder in the SigTuple layout.")
    folder = root / ("Test_Data" if which == "test" else "Train_Data")
    paths = list_images(folder)
    if which != "test":
        want_patch = which == "patches"
        paths = [p for p in paths if bool(_PATCH_NAME.match(p.stem)) == want_patch]
        if not paths:
            kind = "patches named train-N" if want_patch else "large images (names other than train-N)"
            raise DataError(f"{folder}: holds no {kind}; check --data.")
    find_mask = None if which == "test" else _find_mask
    samples = [_read_sample(path, find_mask, _group_of(path.stem), on_error, errors) for path in paths]
    return [s for s in samples if s is not None]


def _cellavision_images(folder: Path) -> list[Path]:
    """The ``NNN.bmp`` images of a CellaVision ``Dataset 2/`` folder, in natural order."""
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".bmp"]
    if not images:
        raise DataError(f"{folder}: holds no .bmp images beside their .png masks; check the folder.")
    return sorted(images, key=natural_key)


def load_domain(folder: str | Path, *, on_error: str = "raise",
                errors: list[DataError] | None = None) -> list[Sample]:
    """Every labelled image of one data folder (one lab, one microscope: a domain).

    Three layouts are read: the generic one, ``images/NAME.ext`` with
    ``masks/NAME.ext`` (any image suffix, WBC pixels white), the SigTuple one
    (``Train_Data/``, patches and large images together) and the CellaVision
    one (``Dataset 2/NNN.bmp`` with its mask ``NNN.png``).  A mask stored
    losslessly with the levels 0, 128 and 255 (background, cytoplasm,
    nucleus) gives each sample a ``nucleus`` as well as the whole cell
    (:func:`compare.io.images.read_mask_levels`); SigTuple's JPEG masks are
    read as ``mask >= 128``, without a nucleus.

    Parameters
    ----------
    folder : str or Path
    on_error : {"raise", "skip"}
        As in :func:`load_set`.
    errors : list, optional
        Receives the skipped files' errors.

    Returns
    -------
    list of Sample
        Groups are prefixed with the folder's name, so two domains never
        share a group.

    Raises
    ------
    DataError
        If the folder has no known layout or no labelled image.
    """
    root = Path(folder)
    if (root / "Train_Data").is_dir():
        samples = load_set(root, "patches", on_error=on_error, errors=errors)
        samples += load_set(root, "large", on_error=on_error, errors=errors)
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        masks = {p.stem: p for p in list_images(root / "masks")}

        def mask_of(path: Path) -> Path:
            if path.stem not in masks:
                raise DataError(f"{path}: no mask named {path.stem}.* in {root / 'masks'}; add it or remove the image.")
            return masks[path.stem]

        samples = [s for s in (_read_sample(path, mask_of, path.stem, on_error, errors)
                               for path in list_images(root / "images")) if s is not None]
    elif (root / CELLAVISION_FOLDER).is_dir():

        def png_beside(path: Path) -> Path:
            mask = path.with_suffix(".png")
            if not mask.is_file():
                raise DataError(f"{path}: no mask {mask.name} beside it; add it or remove the image.")
            return mask

        samples = [s for s in (_read_sample(path, png_beside, path.stem, on_error, errors)
                               for path in _cellavision_images(root / CELLAVISION_FOLDER)) if s is not None]
    else:
        raise DataError(f"{root}: neither images/ + masks/, the SigTuple layout (Train_Data/) nor the CellaVision "
                        f"one ({CELLAVISION_FOLDER}/); pass a labelled data folder with --data.")
    if not samples:
        raise DataError(f"{root}: holds no labelled image; check --data.")
    return [Sample(s.name, s.image, s.mask, f"{root.name}/{s.group}", s.path, s.nucleus) for s in samples]


def load_patches(data_dir: str | Path | None = None, **kwargs) -> list[Sample]:
    """The labelled 128 x 128 patches (164 in the SigTuple data); see :func:`load_set`."""
    return load_set(data_dir, "patches", **kwargs)


def load_large(data_dir: str | Path | None = None, **kwargs) -> list[Sample]:
    """The large labelled images (5 in the SigTuple data); see :func:`load_set`."""
    return load_set(data_dir, "large", **kwargs)


def load_test(data_dir: str | Path | None = None, **kwargs) -> list[Sample]:
    """The unlabelled test images (61 in the SigTuple data); see :func:`load_set`."""
    return load_set(data_dir, "test", **kwargs)


def without_groups(samples: Sequence[Sample], groups: set[str]) -> list[Sample]:
    """Samples whose group is not in ``groups``.

    Used for the ``large`` protocol: patches cropped from a large image carry
    that image's name as their group and must not be trained on.
    """
    return [s for s in samples if s.group not in groups]


def grouped_kfold(samples: Sequence[Sample], k: int = 5, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Split samples into ``k`` folds that never separate a group.

    Groups are shuffled with ``seed`` and dealt largest first to the fold with
    the fewest samples, so folds are balanced and the split is reproducible.

    Parameters
    ----------
    samples : sequence of Sample
    k : int
        Number of folds, ``2 <= k <= number of groups``.
    seed : int

    Returns
    -------
    list of (train_indices, test_indices)
        ``k`` pairs of sorted index lists into ``samples``; the test lists
        partition ``range(len(samples))``.
    """
    by_group: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_group.setdefault(s.group, []).append(i)
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"--folds must be an integer of at least 2, not {k!r}.")
    if k > len(by_group):
        raise ValueError(f"--folds {k} is more than the {len(by_group)} groups of samples; use fewer folds.")
    groups = sorted(by_group)
    random.Random(seed).shuffle(groups)
    # Stable sort keeps the shuffled order among groups of equal size.
    groups.sort(key=lambda g: len(by_group[g]), reverse=True)
    folds: list[list[int]] = [[] for _ in range(k)]
    for g in groups:
        min(folds, key=len).extend(by_group[g])
    everything = set(range(len(samples)))
    return [(sorted(everything - set(f)), sorted(f)) for f in folds]
