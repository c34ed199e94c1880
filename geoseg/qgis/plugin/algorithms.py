"""The Processing algorithms: each builds a geoseg command line, runs it (``runner``) and loads its outputs."""

import os
import shlex

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
    QgsSettings,
)
from qgis.PyQt.QtCore import QVariant

from . import runner

#: The Processing setting (Options > Processing > Providers > geoseg) with the geoseg command's path.
EXECUTABLE_SETTING = "GEOSEG_EXECUTABLE"
#: What the cleaning options mean, shared by two algorithms.
_MIN_AREA_HELP = "Minimum mapping unit (m²); smaller regions merge into a neighbour [default: 16 pixels; 0 keeps all]"
_SIMPLIFY_HELP = "Simplify boundaries by (m), keeping shared edges shared [default: one pixel; 0 = exact pixels]"

_models = None


class _DefaultStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies the style geoseg stored with the output (Processing loads layers without their default style)."""

    def postProcessLayer(self, layer, context, feedback):
        message, ok = layer.loadDefaultStyle()
        if not ok:
            feedback.pushWarning(f"{layer.name()}: no geoseg style found ({message})")
        layer.triggerRepaint()


#: The context deletes a layer's post-processor (one each), but the Python half of it must outlive the
#: algorithm until the layer is loaded: the latest ones are kept here.
_post_processors: list = []


def executable_setting():
    """The path the user set for geoseg ("" where none), read where Processing keeps its settings."""
    return str(QgsSettings().value(f"Processing/Configuration/{EXECUTABLE_SETTING}", "") or "")


def forget_models():
    """Read the installed models again when the algorithms are next built (the provider's refresh)."""
    global _models
    _models = None


def installed_models():
    """The installed models' names (``geoseg model list``) and the default one's name ("" where none)."""
    global _models
    if _models is None:
        try:
            models = runner.installed_models(runner.find_executable(executable_setting()))
        except runner.GeosegNotFound:
            models = []
        default = next((m["name"] for m in models if m.get("is_default")), "")
        _models = ([m["name"] for m in models], default)
    return _models


def _given(parameters, name):
    """Whether an optional parameter has a value (absent, None, NULL and "" say: use geoseg's default)."""
    value = parameters.get(name)
    if value is None or (isinstance(value, QVariant) and value.isNull()):
        return False
    return str(value).strip() != ""


def _number(value):
    """A number as geoseg's options take it: 2.0 -> "2", 0.25 -> "0.25"."""
    return f"{float(value):g}"


def _raster_file(layer, what):
    """The file behind a raster layer (geoseg reads files, not QGIS's data sources)."""
    if layer is None:
        raise QgsProcessingException(f"no {what} given: choose a raster layer or a GeoTIFF file")
    if layer.providerType() == "gdal":
        path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or layer.source()
        if os.path.isfile(path):
            return path
    raise QgsProcessingException(
        f"{what} {layer.name()!r} is not a raster file ({layer.providerType()} source {layer.source()!r}); "
        "save it as a GeoTIFF first (Export > Save As...)"
    )


class _GeosegAlgorithm(QgsProcessingAlgorithm):
    """Runs ``geoseg ARGS --log-json``, with its progress in the feedback bar and its log in the Processing log."""

    def createInstance(self):
        return type(self)()

    def helpUrl(self):
        return "https://pypi.org/project/geoseg/"

    def geoseg(self, args, feedback):
        """Run geoseg with `args`; its result record. Errors and Cancel become one-line QgsProcessingException."""
        try:
            command = runner.find_executable(executable_setting())
        except runner.GeosegNotFound as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushCommandInfo(" ".join(shlex.quote(str(a)) for a in [*command, *args, "--log-json"]))
        stage = [None]

        def progress(fraction, record):
            if record.get("stage") != stage[0]:
                stage[0] = record.get("stage")
                feedback.setProgressText(f"geoseg: {stage[0]}")
            feedback.setProgress(100.0 * fraction)

        def record(rec):
            level, message = rec.get("level", "info"), str(rec.get("message", ""))
            if level in ("error", "critical"):
                feedback.reportError(message, False)
            elif level == "warning":
                feedback.pushWarning(message)
            elif level == "info":
                feedback.pushInfo(message)

        try:
            return runner.run(
                command,
                [str(a) for a in args],
                on_progress=progress,
                on_record=record,
                on_text=feedback.pushConsoleInfo,
                is_cancelled=feedback.isCanceled,
            )
        except runner.CommandFailed as exc:
            if exc.result and self.accepts_partial(exc.result):
                feedback.reportError(str(exc), False)
                return exc.result
            raise QgsProcessingException(str(exc)) from None
        except runner.Cancelled as exc:
            raise QgsProcessingException(str(exc)) from None

    def accepts_partial(self, result):
        """Whether a failed command's result is still worth returning (a batch job's finished scenes)."""
        return False

    @staticmethod
    def load(context, uri, name, output):
        """Add `uri` to the project when the algorithm has finished (the desktop's Processing does it)."""
        details = QgsProcessingContext.LayerDetails(name, context.project(), output)
        styler = _DefaultStyle()
        _post_processors[:] = [*_post_processors[-15:], styler]
        details.setPostProcessor(styler)
        context.addLayerToLoadOnCompletion(uri, details)


class LandCoverAlgorithm(_GeosegAlgorithm):
    def name(self):
        return "landcover"

    def displayName(self):
        return "Map land cover"

    def shortHelpString(self):
        return (
            "Classifies every pixel of a scene into the six ISPRS land-cover classes (impervious surfaces, building, "
            "low vegetation, tree, car, clutter) with a geoseg model, then writes, in the output folder:"
            "<ul><li><b>&lt;scene&gt;.landcover.gpkg</b>: one polygon per region of a class, with its area, "
            "perimeter and mean confidence, styled in the ISPRS colours;</li>"
            "<li><b>&lt;scene&gt;.classes.tif</b>: the class raster (Cloud-Optimized GeoTIFF, paletted);</li>"
            "<li><b>&lt;scene&gt;.run.json</b>: the run's provenance and class areas.</li></ul>"
            "Both layers are loaded into the project, styled. <b>Model</b>: a checkpoint (.pt) or ONNX file, or the "
            "name of a model installed with <i>geoseg model install</i>; left empty, the installed model picked "
            "below (the default one) is used. <b>Bands</b>: the scene's bands in the model's order (e.g. 1,2,3); "
            "by default geoseg matches them by meaning. Cancel stops the run cleanly: run it again with the same "
            "parameters and it resumes from the finished blocks. Runs the <i>geoseg run</i> command "
            "(Processing options > Providers > geoseg says where it is)."
        )

    def initAlgorithm(self, config=None):
        names, default = installed_models()
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Scene (GeoTIFF)"))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", "Model: checkpoint or ONNX file, or an installed model's name", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "INSTALLED_MODEL",
                "Installed model (used when no model file is given)",
                options=names,
                defaultValue=default or None,
                optional=True,
                usesStaticStrings=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString("BANDS", "Scene bands in the model's order, e.g. 1,2,3", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber("MIN_AREA", _MIN_AREA_HELP, QgsProcessingParameterNumber.Double, None, True, 0)
        )
        self.addParameter(
            QgsProcessingParameterNumber("SIMPLIFY", _SIMPLIFY_HELP, QgsProcessingParameterNumber.Double, None, True, 0)
        )
        self.addParameter(QgsProcessingParameterBoolean("CONFIDENCE", "Also write the confidence raster", False))
        self.addParameter(QgsProcessingParameterBoolean("OVERWRITE", "Replace existing outputs", False))
        advanced = [
            QgsProcessingParameterNumber(
                "TILE",
                "Tile size in pixels, a multiple of 32 [default: the model's]",
                QgsProcessingParameterNumber.Integer,
                None,
                True,
                32,
            ),
            QgsProcessingParameterNumber(
                "OVERLAP", "Overlap of neighbouring tiles (pixels)", QgsProcessingParameterNumber.Integer, 64, False, 0
            ),
            QgsProcessingParameterNumber(
                "CHUNK",
                "Block size in pixels: sets memory use, not results [default: 1024 on CPU, 2048 on CUDA]",
                QgsProcessingParameterNumber.Integer,
                None,
                True,
                32,
            ),
            QgsProcessingParameterString("DEVICE", "Device: auto, cpu, cuda or cuda:N", "auto"),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addOutput(QgsProcessingOutputVectorLayer("LANDCOVER", "Land cover", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", "Classes"))
        self.addOutput(QgsProcessingOutputFile("REPORT", "Run report"))
        self.addOutput(QgsProcessingOutputNumber("POLYGONS", "Polygons"))

    def processAlgorithm(self, parameters, context, feedback):
        scene = _raster_file(self.parameterAsRasterLayer(parameters, "INPUT", context), "scene")
        model = self.parameterAsFile(parameters, "MODEL", context).strip()
        if not model and _given(parameters, "INSTALLED_MODEL"):
            model = self.parameterAsEnumString(parameters, "INSTALLED_MODEL", context)
        folder = os.path.abspath(self.parameterAsFileOutput(parameters, "OUTPUT_FOLDER", context))
        os.makedirs(folder, exist_ok=True)
        args = ["run", scene, "-o", folder, "-q", "--overlap", self.parameterAsInt(parameters, "OVERLAP", context)]
        if model:
            args += ["--model", model]
        if _given(parameters, "BANDS"):
            args += ["--bands", self.parameterAsString(parameters, "BANDS", context).replace(" ", "")]
        for name, option in (("TILE", "--tile"), ("CHUNK", "--chunk")):
            if _given(parameters, name):
                args += [option, self.parameterAsInt(parameters, name, context)]
        for name, option in (("MIN_AREA", "--min-area"), ("SIMPLIFY", "--simplify")):
            if _given(parameters, name):
                args += [option, _number(self.parameterAsDouble(parameters, name, context))]
        device = self.parameterAsString(parameters, "DEVICE", context).strip() or "auto"
        args += ["--device", device]
        if self.parameterAsBoolean(parameters, "CONFIDENCE", context):
            args.append("--confidence")
        if self.parameterAsBoolean(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        result = self.geoseg(args, feedback)
        outputs = result.get("outputs", {})
        stem = os.path.splitext(os.path.basename(scene))[0]
        gpkg = outputs.get("landcover", os.path.join(folder, f"{stem}.landcover.gpkg"))
        classes = outputs.get("classes", os.path.join(folder, f"{stem}.classes.tif"))
        landcover = f"{gpkg}|layername=landcover"
        self.load(context, classes, f"{stem} classes", "CLASSES")
        self.load(context, landcover, f"{stem} land cover", "LANDCOVER")
        return {
            "OUTPUT_FOLDER": folder,
            "LANDCOVER": landcover,
            "CLASSES": classes,
            "REPORT": outputs.get("report", os.path.join(folder, f"{stem}.run.json")),
            "POLYGONS": result.get("polygons"),
        }


class VectorizeAlgorithm(_GeosegAlgorithm):
    def name(self):
        return "vectorize"

    def displayName(self):
        return "Vectorise class raster"

    def shortHelpString(self):
        return (
            "Turns a class raster (uint8 class ids, 255 = nodata; a geoseg <i>.classes.tif</i> or one made elsewhere) "
            "into land-cover polygons in a GeoPackage (layer <b>landcover</b>: class, area, perimeter), with the same "
            "seam-free, parallel vectorisation and cleaning as <i>Map land cover</i>, styled in the ISPRS colours "
            "and loaded into the project. Use it to re-clean a map with another minimum mapping unit or "
            "simplification. Runs <i>geoseg vectorize</i>."
        )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Class raster"))
        self.addParameter(
            QgsProcessingParameterNumber("MIN_AREA", _MIN_AREA_HELP, QgsProcessingParameterNumber.Double, None, True, 0)
        )
        self.addParameter(
            QgsProcessingParameterNumber("SIMPLIFY", _SIMPLIFY_HELP, QgsProcessingParameterNumber.Double, None, True, 0)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Land-cover GeoPackage", "GeoPackage (*.gpkg *.GPKG)")
        )
        self.addOutput(QgsProcessingOutputVectorLayer("LANDCOVER", "Land cover", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("POLYGONS", "Polygons"))

    def processAlgorithm(self, parameters, context, feedback):
        classes = _raster_file(self.parameterAsRasterLayer(parameters, "INPUT", context), "class raster")
        output = os.path.abspath(self.parameterAsFileOutput(parameters, "OUTPUT", context))
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        os.makedirs(os.path.dirname(output), exist_ok=True)
        # QGIS asked before replacing a chosen file, and temporary outputs are new: replace as every algorithm does
        args = ["vectorize", classes, "-o", output, "-q", "--overwrite"]
        for name, option in (("MIN_AREA", "--min-area"), ("SIMPLIFY", "--simplify")):
            if _given(parameters, name):
                args += [option, _number(self.parameterAsDouble(parameters, name, context))]
        result = self.geoseg(args, feedback)
        output = result.get("outputs", {}).get("landcover", output)
        landcover = f"{output}|layername=landcover"
        stem = os.path.basename(output).split(".")[0]
        self.load(context, landcover, f"{stem} land cover", "LANDCOVER")
        return {"OUTPUT": output, "LANDCOVER": landcover, "POLYGONS": result.get("polygons")}


class BatchAlgorithm(_GeosegAlgorithm):
    MERGE = ("job", "yes", "no")

    def name(self):
        return "batch"

    def displayName(self):
        return "Run regional job"

    def shortHelpString(self):
        return (
            "Maps every scene of a regional job file (YAML: the scenes, the model, the output folder and the "
            "settings of <i>Map land cover</i>; see geoseg's workflows/region.yaml) and merges one regional "
            "land-cover layer, which is loaded into the project. Scenes whose outputs are current are skipped, an "
            "interrupted scene resumes, and a scene that fails is reported and the others go on: the log lists "
            "each scene's outcome and the job's manifest (JSON) records it. <b>Merge</b>: as the job file says, or "
            "override it. Runs <i>geoseg batch</i>."
        )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFile("JOB", "Job file", fileFilter="geoseg job (*.yaml *.yml);;All files (*.*)")
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "RETRIES",
                "Retries of a failed scene [default: the job's]",
                QgsProcessingParameterNumber.Integer,
                None,
                True,
                0,
                20,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "MERGE",
                "Merge the regional layer",
                options=list(self.MERGE),
                defaultValue="job",
                usesStaticStrings=True,
            )
        )
        self.addOutput(QgsProcessingOutputFile("MANIFEST", "Manifest"))
        self.addOutput(
            QgsProcessingOutputVectorLayer("REGIONAL", "Regional land cover", QgsProcessing.TypeVectorPolygon)
        )
        for name in ("DONE", "SKIPPED", "FAILED"):
            self.addOutput(QgsProcessingOutputNumber(name, f"Scenes {name.lower()}"))

    def accepts_partial(self, result):
        return bool(result.get("scenes"))

    def processAlgorithm(self, parameters, context, feedback):
        job = self.parameterAsFile(parameters, "JOB", context)
        if not job:
            raise QgsProcessingException("no job file given: choose a geoseg job YAML file")
        args = ["batch", os.path.abspath(job), "-q"]
        if _given(parameters, "RETRIES"):
            args += ["--retries", self.parameterAsInt(parameters, "RETRIES", context)]
        merge = self.parameterAsEnumString(parameters, "MERGE", context) or "job"
        if merge != "job":
            args.append("--merge" if merge == "yes" else "--no-merge")
        result = self.geoseg(args, feedback)
        scenes = result.get("scenes", {})  # each scene's outcome is in the log already, as geoseg said it
        outputs = result.get("outputs", {})
        regional = outputs.get("regional")
        results = {
            "MANIFEST": outputs.get("manifest"),
            "REGIONAL": f"{regional}|layername=landcover" if regional else None,
            **{name: sum(s == name.lower() for s in scenes.values()) for name in ("DONE", "SKIPPED", "FAILED")},
        }
        if regional:
            self.load(context, results["REGIONAL"], os.path.basename(regional).split(".")[0], "REGIONAL")
        return results
