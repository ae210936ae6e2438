"""The engine reads as one straight line: imports go one way, no module reaches into another's private names,
no module grows past what one reader holds in mind, and model analysis and inference share one measurement."""

import ast
import re
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import MODEL, PAN, XS, seed_sources

from seamless_inference.engine import InferenceRequest, analyse_model, plan_inference

ENGINE = Path(__file__).resolve().parents[1] / "engine"
ARCHITECTURE = ENGINE.parent / "docs" / "architecture.md"
MAX_LINES = 450


def engine_modules() -> dict:
    """{dotted name: path} of every engine module ('engine', 'engine.graph.ops', ...)."""
    modules = {}
    for path in ENGINE.rglob("*.py"):
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def engine_imports(modules: dict) -> list:
    """(importer, imported module, imported name or None, line) for every engine-internal import, at module level
    and inside functions alike."""
    found = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(name, a.name, None, node.lineno) for a in node.names if a.name in modules]
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    if child in modules:  # `from . import grid`: the module itself
                        found.append((name, child, None, node.lineno))
                    elif target in modules:
                        found.append((name, target, alias.name, node.lineno))
    return found


def test_the_engine_import_graph_is_acyclic():
    modules = engine_modules()
    edges = {m: set() for m in modules}
    for importer, imported, _, _ in engine_imports(modules):
        if imported != importer:
            edges[importer].add(imported)
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
    assert len(modules) > 15 and sum(len(e) for e in edges.values()) > 30  # the walk saw the real package


def documented_layers() -> list:
    """The engine's entries in the order docs/architecture.md lists them: 'errors', ..., 'graph', ..., '__init__'."""
    return re.findall(r"^  (\w+)(?:\.py|/) ", ARCHITECTURE.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_each_engine_module_imports_only_modules_listed_above_it_in_the_architecture_doc():
    order = documented_layers()

    def entry(module):  # 'engine.graph.ops' -> 'graph', 'engine' -> '__init__'
        return module.split(".")[1] if "." in module else "__init__"

    modules = engine_modules()
    unlisted = sorted({entry(m) for m in modules} - set(order))
    assert not unlisted, f"docs/architecture.md does not list {unlisted}"
    upward = [f"{importer}:{line} imports {imported}" for importer, imported, _, line in engine_imports(modules)
              if order.index(entry(imported)) > order.index(entry(importer))]
    assert not upward, f"imports of modules listed below their importer in docs/architecture.md: {upward}"


def test_no_engine_module_imports_a_private_name_of_another():
    private = [f"{importer}:{line} imports {imported}.{name}" for importer, imported, name, line
               in engine_imports(engine_modules()) if name and name.startswith("_") and imported != importer]
    assert not private, private


def test_no_engine_module_is_over_450_lines():
    sizes = {str(path.relative_to(ENGINE.parent)): len(path.read_text(encoding="utf-8").splitlines())
             for path in engine_modules().values()}
    assert max(sizes.values()) <= MAX_LINES, {k: v for k, v in sizes.items() if v > MAX_LINES}


def agreement(model_dir: str, sources, sizes) -> tuple:
    """Model analysis and a valid-part plan of the same setup: (analysis, plan)."""
    analysis = analyse_model(model_dir, sizes)
    plan = plan_inference(InferenceRequest(model_dir, sources, valid_part=True))
    return analysis, plan


def assert_one_measurement(analysis, plan):
    """Both report the same margins, stride and crop, and the very same measurement object: one call."""
    assert plan.measurement is analysis.measurement
    assert plan.measurement.lost == analysis.measurement.lost
    assert plan.measurement.stride == analysis.measurement.stride
    assert plan.crop == analysis.recommended_crop()
    assert (plan.output_names[0], plan.request.crop) == (
        (analysis.recommended_output, 0) if analysis.recommended_output != analysis.output_name
        else (analysis.output_name, analysis.recommended_crop()))


def test_model_analysis_and_valid_part_inference_share_one_measurement_on_the_sample():
    analysis, plan = agreement(str(MODEL), seed_sources(), [128, 32])
    assert_one_measurement(analysis, plan)
    assert (analysis.measurement.lost, analysis.total_stride, plan.output_names) == (
        (31, 31, 16, 16), 16, ("estimated_crop32",))


@pytest.fixture(scope="module")
def single_input_models(tmp_path_factory):
    """Two hold-out models with one 1-band input: asymmetric margins and total stride 32, with `_cropN` outputs;
    and the same without any `_cropN` output (the engine crops the raw output itself)."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()
    keras = tf.keras
    folders = {}
    for name, crops in (("stride32", (16, 32, 64, 96)), ("no_crop", ())):
        tf.random.set_seed(3)
        inputs = keras.Input((None, None, 1), name="x_pan")
        x = inputs
        for filters in (4, 8, 8, 8, 8):  # five stride-2 "same" convolutions: total stride 32, odd pixel after
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        for filters in (8, 8, 8, 8, 3):
            x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(x)
        outputs = {"scores": x}
        for crop in crops:
            outputs[f"scores_crop{crop}"] = keras.layers.Cropping2D(crop)(x)
        folder = tmp_path_factory.mktemp(name) / "model"
        keras.Model(inputs, outputs).export(str(folder), format="tf_saved_model", verbose=False)
        folders[name] = str(folder)
    return folders


def test_a_stride_32_model_with_asymmetric_margins_gets_one_answer(single_input_models):
    from seamless_inference.engine import Source

    analysis, plan = agreement(single_input_models["stride32"], (Source((str(PAN),), (256, 256)),), [256])
    assert_one_measurement(analysis, plan)
    lost = analysis.measurement.lost
    assert analysis.total_stride == 32 and lost[0] != lost[2]  # the odd padding pixel goes after the data
    assert plan.exact and plan.output_names[0].startswith("scores_crop")


def test_a_model_without_crop_outputs_gets_the_engine_crop_from_the_same_measurement(single_input_models):
    from seamless_inference.engine import Source

    analysis, plan = agreement(single_input_models["no_crop"], (Source((str(PAN),), (256, 256)),), [256])
    assert_one_measurement(analysis, plan)
    assert plan.output_names == ("scores",) and plan.request.crop == analysis.recommended_crop() > 0
    assert plan.exact


def test_the_measurement_does_not_depend_on_the_rasters_given_to_model_analysis():
    with_rasters = analyse_model(str(MODEL), [128, 0], rasters=[str(PAN), str(XS)])
    assert with_rasters.measurement is analyse_model(str(MODEL), [128, 32]).measurement


COUNTED_ANALYSIS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from seamless_inference.engine import analyse_model
from seamless_inference.engine.model import SavedModel
calls = []
run = SavedModel.run
SavedModel.run = lambda self, feeds, names: calls.append(1) or run(self, feeds, names)
analysis = analyse_model(sys.argv[2], [128, 32])
print(json.dumps({"calls": len(calls), "lost": analysis.measurement.lost, "stride": analysis.total_stride,
                  "layers": len(analysis.theory.layers), "crop": analysis.recommended_crop()}))
"""


def analysis_in_a_new_process(cache, model=MODEL) -> dict:
    import json
    import os
    import subprocess
    import sys

    from conftest import PLUGINS

    run = subprocess.run([sys.executable, "-c", COUNTED_ANALYSIS, str(PLUGINS), str(model)], capture_output=True,
                         text=True, timeout=300, check=True, env=dict(os.environ, SEAMLESS_CACHE_DIR=str(cache)))
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture()
def cardless_model(tmp_path):
    """The sample model without its card (whose measurement would answer first)."""
    import shutil

    target = tmp_path / "cardless"
    shutil.copytree(MODEL, target, ignore=shutil.ignore_patterns("assets.extra"))
    return target


def test_a_new_process_reads_the_measurement_back_instead_of_running_the_model(tmp_path, cardless_model):
    cache = tmp_path / "cache"
    first = analysis_in_a_new_process(cache, cardless_model)
    assert first["calls"] > 10 and len(list(cache.iterdir())) == 1  # measured, and kept
    again = analysis_in_a_new_process(cache, cardless_model)
    assert again == dict(first, calls=0)  # the same answer, without running the model
    for stored in cache.iterdir():  # a damaged file only means measuring again
        stored.write_bytes(b"not a measurement")
    assert analysis_in_a_new_process(cache, cardless_model) == first


def test_the_sample_card_answers_a_new_process_with_no_probe(tmp_path, cardless_model):
    from_card = analysis_in_a_new_process(tmp_path / "empty-cache")
    assert from_card["calls"] == 0 and not (tmp_path / "empty-cache").exists()
    assert from_card == dict(analysis_in_a_new_process(tmp_path / "cache", cardless_model), calls=0)


CRAFTED_PICKLE = b"cos\nsystem\n(S'touch {marker}'\ntR."


def test_a_crafted_cache_file_never_runs_anything(tmp_path, cardless_model):
    """A team's shared cache folder holding a pickle that calls os.system (the old format's attack, by its old
    name and by the new one) or a JSON file of the right name with other content: ignored, nothing runs, the model
    is measured."""
    import hashlib
    import json

    from seamless_inference.engine import measure_cache
    from seamless_inference.engine.analysis import Setup
    from seamless_inference.engine.measurement import setup_json

    cache, marker = tmp_path / "cache", tmp_path / "ran"
    cache.mkdir()
    payload = CRAFTED_PICKLE.replace(b"{marker}", str(marker).encode())
    for name in ("measurement-0123456789abcdef01234567.pickle", "measurement-0123456789abcdef01234567.json"):
        (cache / name).write_bytes(payload)
    from seamless_inference.engine.model import fingerprint

    setup = Setup("estimated", ("input_p", "input_xs"), ((128, 128), (32, 32)),
                  ((Fraction(1), Fraction(1)), (Fraction(4), Fraction(4))))
    header = {"version": measure_cache.VERSION, "fingerprint": fingerprint(str(cardless_model)), "tolerance": 1e-5,
              "setup": setup_json(setup)}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:24]
    crafted = {**header, "measurement": {"__reduce__": "os.system", "args": [f"touch {marker}"]}}
    (cache / f"measurement-{digest}.json").write_text(json.dumps(crafted))
    result = analysis_in_a_new_process(cache, cardless_model)
    assert not marker.exists() and result["calls"] > 10 and result["crop"] == 32
