"""The dock widget: Find WBCs, Measure again, Export, Save as training data.

Every action that touches pixels runs in a napari thread worker (with a busy
bar here and a progress entry in napari's activity dock), so the viewer
stays responsive on a large image.  Every way an action can fail ends in a
message in the viewer (the status line here and a napari notification),
never in a traceback, and the viewer keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wbc_napari import core

__all__ = ["WBCWidget"]

#: Scale choices, as in ``compare predict``: estimated, ``--pixel-size``, ``--wbc-diameter``.
SCALE_MODES = ("estimate from the image", "pixel size (um)", "WBC diameter (px)")
_SCALE_DEFAULTS = {1: 0.25, 2: 60.0}  # a typical 100x oil objective; a neutrophil of about 15 um

_ACTIONS = {"find": "Finding WBCs", "measure": "Measuring WBCs", "export": "Exporting",
            "save": "Saving training data"}


@dataclass
class _Session:
    """One image the widget has found WBCs in, and its layers."""

    image_layer: Image
    image: np.ndarray
    name: str
    source: str
    wbcs: Labels
    nuclei: Labels
    ids: Points
    result: core.WBCResult


class WBCWidget(QWidget):
    """Find WBCs in the chosen image layer, show and measure them, export and save corrections.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari when the widget is opened from the Plugins menu.

    Attributes
    ----------
    finished : Signal(str)
        Emitted when an action ("find", "measure", "export", "save") ends,
        whether it succeeded, was refused or failed (tests wait on it).
    """

    finished = Signal(str)

    def __init__(self, napari_viewer: Any):
        super().__init__()
        self.viewer = napari_viewer
        self.sessions: list[_Session] = []
        self._worker: Any = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._layers_removed)
        self.viewer.layers.selection.events.active.connect(self._follow_active)
        self._refresh_images()

    # -- layout ----------------------------------------------------------------------

    def _build(self) -> None:
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The RGB image layer to find WBCs in.")
        form.addRow("Image", self.image_combo)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("committed default U-Net")
        self.model_edit.setToolTip("A model folder saved by 'compare run' (results/models/NAME); empty for the default.")
        model_button = QPushButton("Choose...")
        model_button.clicked.connect(self._choose_model)
        row = QHBoxLayout()
        row.addWidget(self.model_edit)
        row.addWidget(model_button)
        form.addRow("Model", row)
        self.scale_mode = QComboBox()
        self.scale_mode.addItems(SCALE_MODES)
        self.scale_value = QDoubleSpinBox()
        self.scale_value.setDecimals(3)
        self.scale_value.setRange(0.0, 10_000.0)
        self.scale_value.setSpecialValueText("-")  # shown at 0, i.e. while the scale is estimated
        self.scale_value.setEnabled(False)
        self.scale_mode.currentIndexChanged.connect(self._scale_mode_changed)
        row = QHBoxLayout()
        row.addWidget(self.scale_mode)
        row.addWidget(self.scale_value)
        form.addRow("Scale", row)

        self.find_button = QPushButton("Find WBCs")
        self.find_button.clicked.connect(self.find_wbcs)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy indicator: prediction does not report fractions
        self.progress.setVisible(False)
        self.status = QLabel("Open an RGB smear image, then Find WBCs.")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.cellClicked.connect(self._go_to_cell)

        self.measure_button = QPushButton("Measure again")
        self.measure_button.setToolTip("Recompute nuclei and the table from the edited WBC labels.")
        self.measure_button.clicked.connect(self.measure_again)
        self.rois_box, self.geojson_box, self.tiff_box = (QCheckBox("ImageJ ROIs"), QCheckBox("GeoJSON"),
                                                          QCheckBox("TIFF"))
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip("Write what 'compare predict' writes for this image, from the edited labels.")
        self.export_button.clicked.connect(self.export)
        self.save_button = QPushButton("Save as training data...")
        self.save_button.setToolTip("Write images/NAME.png + masks/NAME.png (the layout 'compare score' reads).")
        self.save_button.clicked.connect(self.save_training_data)
        exports = QHBoxLayout()
        for box in (self.rois_box, self.geojson_box, self.tiff_box):
            exports.addWidget(box)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.find_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.measure_button)
        layout.addLayout(exports)
        layout.addWidget(self.export_button)
        layout.addWidget(self.save_button)
        self._action_buttons = (self.find_button, self.measure_button, self.export_button, self.save_button)

    def _choose_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (saved by 'compare run')")
        if folder:
            self.model_edit.setText(folder)

    def _scale_mode_changed(self, index: int) -> None:
        self.scale_value.setEnabled(index != 0)
        if index in _SCALE_DEFAULTS:
            self.scale_value.setValue(_SCALE_DEFAULTS[index])

    # -- layers ------------------------------------------------------------------------

    def _refresh_images(self, event: Any = None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        active = self.viewer.layers.selection.active
        pick = active.name if isinstance(active, Image) else current
        if pick in names:
            self.image_combo.setCurrentText(pick)
        self.image_combo.blockSignals(False)

    def _layers_removed(self, event: Any = None) -> None:
        present = {id(layer) for layer in self.viewer.layers}
        self.sessions = [s for s in self.sessions if id(s.wbcs) in present and id(s.image_layer) in present]
        self._refresh_images()

    def _follow_active(self, event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and self.image_combo.findText(active.name) >= 0:
            self.image_combo.setCurrentText(active.name)
        session = self._session_of(active)
        if session is not None:
            self._fill_table(session.result.cells)

    def _session_of(self, layer: Any) -> _Session | None:
        for session in reversed(self.sessions):
            if any(layer is other for other in (session.image_layer, session.wbcs, session.nuclei, session.ids)):
                return session
        return None

    def current_session(self) -> _Session | None:
        """The session of the active layer, else the last one whose layers are still open."""
        return self._session_of(self.viewer.layers.selection.active) or (self.sessions[-1] if self.sessions else None)

    def _chosen_image_layer(self) -> Image | None:
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if not isinstance(layer, Image):
            active = self.viewer.layers.selection.active
            layer = active if isinstance(active, Image) else None
        return layer

    # -- actions -----------------------------------------------------------------------

    def find_wbcs(self) -> None:
        """Run the model on the chosen image layer (in a worker); adds the WBC, nucleus and id layers."""
        if self._busy("find"):
            return
        layer = self._chosen_image_layer()
        if layer is None:
            self._refuse("find", "No image layer: open an RGB image of a blood smear (File > Open) first.")
            return
        try:
            image, note = core.rgb_image(layer.data, rgb=layer.rgb, name=layer.name, multiscale=layer.multiscale)
            wbc_diameter, pixel_size_um = self._scale_options()
        except core.InputError as exc:
            self._refuse("find", str(exc))
            return
        if note:
            self._tell(note, "info")
        folder = self.model_edit.text().strip() or None
        name = layer.name

        def work() -> core.WBCResult:
            # The model runs in its own process (core.run_in_model_process); the first call starts it and
            # loads the model (seconds), later ones reuse it.
            return core.find_wbcs(image, folder=folder, wbc_diameter=wbc_diameter, pixel_size_um=pixel_size_um,
                                  name=name)

        self._start("find", work, lambda result: self._show_found(layer, image, result))

    def measure_again(self) -> None:
        """Recompute nuclei and the cell table from the (edited) WBC labels, in a worker."""
        session = self._session_or_refuse("measure")
        if session is None:
            return
        labels = np.array(session.wbcs.data, copy=True)  # a snapshot: the user may go on painting meanwhile
        self._start("measure", lambda: core.measure(session.result, session.image, labels),
                    lambda result: self._show_measured(session, result, labels))

    def export(self, folder: str | None = None) -> None:
        """Measure the edited labels and write what ``compare predict`` writes into a chosen folder."""
        session = self._session_or_refuse("export")
        if session is None:
            return
        folder = folder or QFileDialog.getExistingDirectory(self, "Export into folder")
        if not folder:
            self._refuse("export", "Export cancelled: no folder chosen.", level="info")
            return
        labels = np.array(session.wbcs.data, copy=True)
        options = {"rois": self.rois_box.isChecked(), "geojson": self.geojson_box.isChecked(),
                   "tiff": self.tiff_box.isChecked()}

        def work() -> tuple[core.WBCResult, dict]:
            result = core.measure(session.result, session.image, labels)  # from the edits, measured or not
            return result, core.export(folder, session.name, session.source, session.image, result, **options)

        def done(out: tuple[core.WBCResult, dict]) -> None:
            self._show_measured(session, out[0], labels)
            self._tell(f"Exported {out[1]['wbc_count']} WBCs of '{session.name}' to {folder} "
                       "(masks/, nuclei/, overlays/, counts.csv, instances.csv).", "info")

        self._start("export", work, done)

    def save_training_data(self, folder: str | None = None) -> None:
        """Write the image and the edited WBC mask as ``images/NAME.png`` + ``masks/NAME.png``."""
        session = self._session_or_refuse("save")
        if session is None:
            return
        folder = folder or QFileDialog.getExistingDirectory(self, "Save training data into folder")
        if not folder:
            self._refuse("save", "Save cancelled: no folder chosen.", level="info")
            return
        labels = np.array(session.wbcs.data, copy=True)

        def done(paths: tuple) -> None:
            self._tell(f"Saved {paths[0].name} to {folder}/images and its mask to {folder}/masks; "
                       f"'compare score {folder}' reads this folder.", "info")

        self._start("save", lambda: core.save_training_data(folder, session.name, session.image, labels), done)

    # -- showing results -------------------------------------------------------------------

    def _show_found(self, layer: Image, image: np.ndarray, result: core.WBCResult) -> None:
        source = getattr(getattr(layer, "source", None), "path", None) or layer.name
        where = {"scale": tuple(layer.scale[-2:]), "translate": tuple(layer.translate[-2:])}
        wbcs = self._labels_layer(f"{layer.name} WBCs", result.labels, where, opacity=1.0)
        # Magenta, as compare predict's overlays draw predictions; every id alike (numbers tell them apart).
        wbcs.colormap = DirectLabelColormap(color_dict={None: "magenta", 0: "transparent"})
        # Outlines, so the cells stay visible under the labels while editing; thicker on large images,
        # where a 2 px line vanishes when the whole image is in view.
        wbcs.contour = max(2, min(image.shape[:2]) // 250)
        nuclei = self._labels_layer(f"{layer.name} nuclei", result.nuclei, where, opacity=0.35)
        ids = self._ids_layer(f"{layer.name} WBC ids", result.cells, where)
        self.sessions = [s for s in self.sessions if s.wbcs is not wbcs]
        session = _Session(layer, image, core.safe_name(layer.name), str(source), wbcs, nuclei, ids, result)
        self.sessions.append(session)
        self._show_measured(session, result, None)
        self.viewer.layers.selection.active = wbcs  # ready for napari's paint / erase / fill tools
        scale = result.scale
        text = (f"{len(result.cells)} WBCs in '{layer.name}' ({result.seconds:.1f} s; scale x{scale.factor:.2f}, "
                f"{scale.method}).")
        if result.warnings:
            for warning in result.warnings:
                show_warning(f"{layer.name}: {warning}")
            text += " Warning: " + "; ".join(result.warnings) + "."
        self._tell(text, "warning" if result.warnings else "info", notify=not result.warnings)

    def _labels_layer(self, name: str, data: np.ndarray, where: dict, **style: Any) -> Labels:
        # Running again on the same image reuses its layers, so the layer list does not fill up with copies.
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            layer = self.viewer.layers[name]
            layer.data = data
            return layer
        return self.viewer.add_labels(data, name=name, **where, **style)

    def _ids_layer(self, name: str, cells: pd.DataFrame, where: dict) -> Points:
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Points):
            self.viewer.layers.remove(name)  # a Points layer's text does not follow a data change reliably
        return self.viewer.add_points(_id_positions(cells), features=pd.DataFrame({"id": _ids(cells)}), name=name,
                                      size=1, face_color="transparent", border_width=0, **where,
                                      text={"string": "{id}", "color": "magenta", "size": 18})

    def _show_measured(self, session: _Session, result: core.WBCResult, snapshot: np.ndarray | None) -> None:
        session.result = result
        if snapshot is not None and not np.array_equal(result.labels, snapshot):
            # Ids were renumbered 1..n; only written back when nothing was painted while measuring.
            if np.array_equal(session.wbcs.data, snapshot):
                session.wbcs.data = result.labels
            else:
                self._tell("Labels changed while measuring; press Measure again.", "warning")
        session.nuclei.data = result.nuclei
        features = result.cells.copy()
        features.insert(0, "index", _ids(result.cells))  # napari maps label values to rows by 'index'
        session.wbcs.features = features
        session.nuclei.features = features
        if session.ids in self.viewer.layers:
            session.ids.data = _id_positions(result.cells)
            session.ids.features = pd.DataFrame({"id": _ids(result.cells)})
            session.ids.refresh_text()
        self._fill_table(result.cells)
        if snapshot is not None:
            self._tell(f"{len(result.cells)} WBCs in '{session.image_layer.name}' after editing.", "info",
                       notify=False)

    def _fill_table(self, cells: pd.DataFrame) -> None:
        self.table.clear()
        self.table.setColumnCount(len(cells.columns))
        self.table.setRowCount(len(cells))
        self.table.setHorizontalHeaderLabels([str(c) for c in cells.columns])
        # The WBC id as row header too, so it stays in view while the wide table is scrolled sideways.
        self.table.setVerticalHeaderLabels([str(i) for i in _ids(cells)])
        for r, row in enumerate(cells.itertuples(index=False)):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(_format(value)))
        self.table.resizeColumnsToContents()

    def _go_to_cell(self, row: int, column: int) -> None:
        session = self.current_session()
        if session is None or row >= len(session.result.cells):
            return
        cell = session.result.cells.iloc[row]
        session.wbcs.selected_label = int(cell["id"])
        self.viewer.camera.center = session.wbcs.data_to_world((cell["centroid_y"], cell["centroid_x"]))

    # -- running and telling -------------------------------------------------------------

    def _start(self, action: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        def returned(value: Any) -> None:
            try:
                done(value)
            except Exception as exc:  # noqa: BLE001 - shown in the viewer; a slot must not raise into Qt
                self._failed(action, exc)

        # _ignore_errors: errors are told in the viewer by _failed, not re-raised into Qt's event loop.
        worker = create_worker(work, _progress={"desc": _ACTIONS[action], "total": 0}, _ignore_errors=True)
        worker.returned.connect(returned)
        worker.errored.connect(lambda exc: self._failed(action, exc))
        worker.finished.connect(lambda: self._idle(action))
        self._worker = worker
        for button in self._action_buttons:
            button.setEnabled(False)
        self.progress.setFormat(_ACTIONS[action])
        self.progress.setVisible(True)
        self.status.setText(f"{_ACTIONS[action]}...")
        worker.start()

    def _idle(self, action: str) -> None:
        self._worker = None
        self.progress.setVisible(False)
        for button in self._action_buttons:
            button.setEnabled(True)
        self.finished.emit(action)

    def _busy(self, action: str) -> bool:
        if self._worker is None:
            return False
        self._tell("Busy: wait until the running action finishes.", "info")
        self.finished.emit(action)
        return True

    def _session_or_refuse(self, action: str) -> _Session | None:
        if self._busy(action):
            return None
        session = self.current_session()
        if session is None:
            self._refuse(action, "No WBC layer yet: choose an image and press Find WBCs first.")
        return session

    def _scale_options(self) -> tuple[float | None, float | None]:
        mode, value = self.scale_mode.currentIndex(), float(self.scale_value.value())
        if mode and not (math.isfinite(value) and value > 0):
            raise core.InputError(f"The {SCALE_MODES[mode]} must be a positive number.")
        return (value if mode == 2 else None), (value if mode == 1 else None)

    def _refuse(self, action: str, message: str, level: str = "error") -> None:
        self._tell(message, level)
        self.finished.emit(action)

    def _failed(self, action: str, exc: BaseException) -> None:
        if isinstance(exc, (core.InputError, FileNotFoundError)):
            message = str(exc)
        else:  # unexpected: say what, so it can be reported, without a traceback dialog
            message = f"{_ACTIONS[action]} failed ({type(exc).__name__}: {exc})."
        self._tell(message, "error")

    def _tell(self, message: str, level: str = "info", notify: bool = True) -> None:
        colour = {"info": "", "warning": "color: #e0a000;", "error": "color: #ff5050;"}[level]
        self.status.setStyleSheet(colour)
        self.status.setText(message)
        if notify:
            {"info": show_info, "warning": show_warning, "error": show_error}[level](message)


def _ids(cells: pd.DataFrame) -> np.ndarray:
    return cells["id"].to_numpy(dtype=int) if "id" in cells else np.zeros(0, dtype=int)


def _id_positions(cells: pd.DataFrame) -> np.ndarray:
    """Where each WBC's number is written: just off its box's upper right corner, so it hides no nucleus."""
    if len(cells) == 0 or "bbox_y0" not in cells:
        return np.zeros((0, 2))
    box = cells[["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]].to_numpy(dtype=float)
    pad = 0.15 * (box[:, 2:] - box[:, :2])
    return np.stack([box[:, 0] - pad[:, 0], box[:, 3] + pad[:, 1]], axis=1)  # napari points are (row, column)


def _format(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)
