"""A plan as plain JSON values and back: how a Dask worker gets the plan it runs (never pickle, so that a worker
turns only data into its plan). The request goes as request_to_json, the measurement as measurement.to_json, the
grid's values as their fields; everything else is refused."""

from dataclasses import asdict, fields

from . import grid as g
from .errors import EngineError
from .measurement import from_json as measurement_of
from .measurement import to_json as measurement_json
from .planning import Plan
from .request import plain, request_from_json, request_to_json


def plan_to_json(plan: Plan) -> dict:
    """The plan as plain JSON values, for a process that runs it as planned here (a Dask worker): the request as
    request_to_json, the measurement as measurement.to_json, the grid's values as their fields."""
    data = {f.name: getattr(plan, f.name) for f in fields(Plan)}
    data.update(request=request_to_json(plan.request), lattice=asdict(plan.lattice), out_x=asdict(plan.out_x),
                out_y=asdict(plan.out_y), reference_grid=asdict(plan.reference_grid),
                measurement=None if plan.measurement is None else measurement_json(plan.measurement))
    return data


def plan_from_json(data) -> Plan:
    """The plan from plan_to_json's form, JSON lists back to tuples; EngineError for anything else (a missing or
    unknown field, a value JSON does not hold, a damaged measurement)."""
    names = {f.name for f in fields(Plan)}
    if not isinstance(data, dict) or set(data) != names:
        raise EngineError("A plan read as JSON is not an object of Plan's fields "
                          f"({', '.join(sorted(set(data) ^ names)) if isinstance(data, dict) else 'not an object'}).",
                          "request")
    grids = {"request", "lattice", "out_x", "out_y", "reference_grid", "measurement"}
    values = {k: plain(v, "A plan") for k, v in data.items() if k not in grids}
    try:
        lattice = dict(data["lattice"])
        for key in ("sources_x", "sources_y"):
            lattice[key] = tuple(g.Axis(**axis) for axis in lattice[key])
        values.update(lattice=g.Lattice(**lattice), out_x=g.Axis(**data["out_x"]), out_y=g.Axis(**data["out_y"]),
                      reference_grid=g.RasterGrid(**data["reference_grid"]),
                      measurement=None if data["measurement"] is None else measurement_of(data["measurement"]))
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
        raise EngineError(f"A plan read as JSON has a damaged grid or measurement ({exc}).", "request") from exc
    return Plan(request=request_from_json(data["request"]), **values)
