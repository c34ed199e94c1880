"""Run geoseg's Processing algorithms in headless QGIS and print what happened as one JSON dict.

Runs under the system Python that has QGIS (``/usr/bin/python3``), not the project's:
``processing_probe.py CONFIG.json``. The config names the installed plugins folder,
the scene, the job file and the folders to write to (see ``tests/qgis/test_plugin.py``).
Each step records its results, the feedback it received (progress, log, errors) and
the layers it added to the project; a step that raises records the exception's text.
"""

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path


def main(cfg):
    from qgis.core import (
        QgsApplication,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsProcessingException,
        QgsProcessingFeedback,
        QgsProject,
        QgsRasterLayer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    app = QgsApplication([], False)
    QgsApplication.setPrefixPath("/usr", True)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing

    sys.path.insert(0, cfg["plugins"])
    import geoseg_processing

    plugin = geoseg_processing.classFactory(None)
    plugin.initProcessing()
    out = {"qgis_version": QgsApplication.instance().applicationVersion()}
    registry = QgsApplication.processingRegistry()
    out["algorithms"] = sorted(a.id() for a in registry.algorithms() if a.provider().id() == "geoseg")
    picker = registry.algorithmById("geoseg:landcover").parameterDefinition("INSTALLED_MODEL")
    out["picker"] = {"options": picker.options(), "default": picker.defaultValue()}
    out["help"] = {a: bool(registry.algorithmById(a).shortHelpString()) for a in out["algorithms"]}

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.log = {"progress": [], "info": [], "warning": [], "error": [], "text": []}
            self.progressChanged.connect(lambda p: self.log["progress"].append(round(p, 2)))

        def setProgressText(self, text):
            self.log["text"].append(text)

        def pushInfo(self, info):
            self.log["info"].append(info)

        def pushWarning(self, warning):
            self.log["warning"].append(warning)

        def reportError(self, error, fatalError=False):
            self.log["error"].append(error)

    def describe(layer):
        d = {"name": layer.name(), "valid": layer.isValid(), "source": layer.source()}
        renderer = layer.renderer()
        d["renderer"] = renderer.type() if renderer else None
        if isinstance(layer, QgsVectorLayer):
            d["features"] = layer.featureCount()
            if d["renderer"] == "categorizedSymbol":
                d["categories"] = [(c.value(), c.label(), c.symbol().color().name()) for c in renderer.categories()]
        elif isinstance(layer, QgsRasterLayer) and d["renderer"] == "paletted":
            d["classes"] = [(c.value, c.label, c.color.name()) for c in renderer.classes()]
        return d

    def step(name, alg, params, *, load=True, cancel_on=None):
        feedback = Recorder()
        before = set(QgsProject.instance().mapLayers())
        rec = out[name] = {"ok": False}
        if cancel_on:

            def watch():
                t0 = time.monotonic()
                while not Path(cancel_on).exists() and time.monotonic() - t0 < 120:
                    time.sleep(0.05)
                rec["cancelled_at_progress"] = feedback.progress()
                feedback.cancel()

            threading.Thread(target=watch, daemon=True).start()
        t0 = time.monotonic()
        try:
            run = processing.runAndLoadResults if load else processing.run
            results = run(alg, params, feedback=feedback)
            rec["results"] = {
                k: v if isinstance(v, (int, float, str, type(None))) else str(v) for k, v in results.items()
            }
            rec["ok"] = True
        except QgsProcessingException as exc:
            rec["exception"] = str(exc)
        except Exception:
            rec["exception"] = "unexpected: " + traceback.format_exc()
        rec["seconds"] = round(time.monotonic() - t0, 1)
        rec["feedback"] = feedback.log
        layers = QgsProject.instance().mapLayers()
        rec["layers"] = [describe(layers[i]) for i in layers if i not in before]
        return rec

    lc = step(
        "landcover",
        "geoseg:landcover",
        {"INPUT": cfg["scene"], "CHUNK": 256, "CONFIDENCE": True, "OUTPUT_FOLDER": cfg["folders"]["landcover"]},
    )
    if lc["ok"] and cfg.get("png"):
        settings = QgsMapSettings()
        layers = list(QgsProject.instance().mapLayers().values())
        vector = next(x for x in layers if isinstance(x, QgsVectorLayer))
        raster = QgsRasterLayer(cfg["scene"], "scene")
        settings.setLayers([vector, raster])
        vector.setOpacity(0.75)
        settings.setDestinationCrs(vector.crs())
        settings.setExtent(vector.extent())
        settings.setOutputSize(QSize(512, 512))
        settings.setBackgroundColor(QColor(255, 255, 255))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        lc["png_saved"] = bool(job.renderedImage().save(cfg["png"], "PNG"))
        vector.setOpacity(1.0)

    step(
        "vectorize",
        "geoseg:vectorize",
        {"INPUT": lc.get("results", {}).get("CLASSES", ""), "MIN_AREA": 0, "SIMPLIFY": 0, "OUTPUT": cfg["vectorized"]},
    )
    step("batch", "geoseg:batch", {"JOB": cfg["job"]})

    # Cancel once the run reaches its vector stage; then the same parameters resume.
    os.environ.update(GEOSEG_FAILPOINT="vectorize", GEOSEG_FAILPOINT_FILE=cfg["marker"])
    params = {"INPUT": cfg["scene"], "MODEL": cfg["model"], "CHUNK": 256, "OUTPUT_FOLDER": cfg["folders"]["cancel"]}
    step("cancel", "geoseg:landcover", params, load=False, cancel_on=cfg["marker"])
    del os.environ["GEOSEG_FAILPOINT"]
    out["after_cancel"] = sorted(p.name for p in Path(cfg["folders"]["cancel"]).iterdir())
    step("resume", "geoseg:landcover", params, load=False)

    bad = dict(params, MODEL=cfg["missing_model"], OUTPUT_FOLDER=cfg["folders"]["bad"])
    step("bad_model", "geoseg:landcover", bad, load=False)
    return out


if __name__ == "__main__":
    report = {"ok": False}
    try:
        report.update(main(json.loads(Path(sys.argv[1]).read_text())))
        report["ok"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    print(json.dumps(report, default=str), flush=True)
    sys.stderr.flush()
    os._exit(0)  # QGIS may crash while tearing down; the report is already out
