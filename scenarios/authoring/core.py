"""Writes the ``core`` suite: 10 categories x 30 scenarios, re-creating MedAgentBench's clinical intents on the
first 30 patients of the seed-0 default population, with its faults fixed (every branch stated, FHIR-valid
writes, balanced action/no-action branches, answers computed from the chart).

Run ``python -m fhir_sandbox.scenarios.authoring.core``; it rewrites ``scenarios/core/<category>/NN.json``.

Each scenario's branch and reference answer are computed here, independently of the graders, by a few lines of
Python over the generated chart (plus the scenario's setup resources). The graders compute the same values
through the FHIR API when the scenario runs, so ``fhir-sandbox scenarios validate scenarios/core`` (the reference
solution must score 1) is a real cross-check of both. Where the chart's own data does not give the branch a
category needs, a ``setup`` resource pins it (a lab result drawn shortly before now, coded like the chart's own).
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import fmean
from typing import Any

from ...fixtures import DEFAULT_NOW, LAB_CODE_SYSTEM, MRN_SYSTEM, PopulationOptions, generate_patient
from ...fixtures.codes import LOINC, NDC, OBSERVATION_CATEGORY, SNOMED, UCUM
from ...fixtures.observations import LAB_TEMPLATES
from ...fixtures.people import identity

SUITE_DIR = Path(__file__).resolve().parents[1] / "core"
PATIENTS = 30  # the suite uses patients 0..29 of the default population, and no others
NOW = DEFAULT_NOW
NOW_TEXT = NOW.isoformat(timespec="seconds")  # 2023-11-13T10:15:00+00:00
DAY_AGO = NOW - timedelta(hours=24)
YEAR_AGO = NOW.replace(year=NOW.year - 1)
TOMORROW_8AM = (NOW + timedelta(days=1)).replace(hour=8, minute=0, second=0)
PATIENT_REF = "Patient/${patient.id}"

MG_NDC = ("0338-1715-40", "magnesium sulfate")
KCL_NDC = ("40032-917-01", "potassium chloride")
IV_ROUTE = ("47625008", "Intravenous route")
ORAL_ROUTE = ("26643006", "Oral route")

# -- the chart, read independently of the graders -------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    time: datetime
    text: str  # effectiveDateTime as recorded
    value: float


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _lab_key(resource: dict[str, Any]) -> str | None:
    for coding in resource.get("code", {}).get("coding", ()):
        if coding.get("system") == LAB_CODE_SYSTEM:
            return str(coding.get("code"))
    return None


def _lab_result(resource: dict[str, Any]) -> tuple[str, Result] | None:
    """(local code, result) of a lab Observation with a value; None for anything else."""
    if resource["resourceType"] != "Observation" or resource.get("status") in ("entered-in-error", "cancelled"):
        return None
    key = _lab_key(resource)
    value = (resource.get("valueQuantity") or {}).get("value")
    if key is None or value is None or "effectiveDateTime" not in resource:
        return None
    text = resource["effectiveDateTime"]
    return key, Result(_instant(text), text, float(value))


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Chart:
    """One generated patient: demographics and lab results by local code (``MG``, ``K``, ``GLU``, ``A1C``)."""

    def __init__(self, index: int, resources: list[dict[str, Any]]):
        self.index = index
        self.patient = resources[0]
        assert self.patient["resourceType"] == "Patient"
        self.mrn = next(i["value"] for i in self.patient["identifier"] if i["system"] == MRN_SYSTEM)
        name = self.patient["name"][0]
        self.given: list[str] = list(name["given"])
        self.family: str = name["family"]
        self.birth_date = date.fromisoformat(self.patient["birthDate"])
        self.deceased = "deceasedDateTime" in self.patient
        self.gender: str = self.patient["gender"]
        self.labs: dict[str, list[Result]] = defaultdict(list)
        for key, result in filter(None, map(_lab_result, resources)):
            self.labs[key].append(result)

    def results(self, key: str, setup: Sequence[dict[str, Any]] = ()) -> list[Result]:
        """The results of ``key`` effective at or before now, oldest first, the setup resources included."""
        found = list(self.labs.get(key, ()))
        found += [result for k, result in filter(None, map(_lab_result, setup)) if k == key]
        return sorted((r for r in found if r.time <= NOW), key=lambda r: r.time)

    def latest(self, key: str, since: datetime | None = None, setup: Sequence[dict[str, Any]] = ()) -> Result | None:
        chosen = [r for r in self.results(key, setup) if since is None or r.time >= since]
        if not chosen:
            return None
        ties = [r for r in chosen if r.time == chosen[-1].time]
        assert len({r.value for r in ties}) == 1, f"patient {self.index}: ambiguous latest {key}: {ties}"
        return chosen[-1]

    def mean(self, key: str, since: datetime, setup: Sequence[dict[str, Any]] = ()) -> float | None:
        values = [r.value for r in self.results(key, setup) if r.time >= since]
        return fmean(values) if values else None

    def age(self) -> int:
        today, born = NOW.date(), self.birth_date
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    def who(self) -> str:
        """How an SBAR introduces the patient: "68-year-old man", "6-day-old girl"."""
        age = self.age()
        adult = age >= 18
        noun = {"female": "woman" if adult else "girl", "male": "man" if adult else "boy"}[self.gender]
        if age == 0:
            return f"{(NOW.date() - self.birth_date).days}-day-old {noun}"
        return f"{age}-year-old {noun}"

    def matches(self, given: list[str], family: str, birth_date: str) -> bool:
        """Whether the patient has this name (the given names as a prefix of theirs) and this birth date."""
        names = [_plain(g) for g in self.given]
        return (
            _plain(family) == _plain(self.family)
            and [_plain(g) for g in given] == names[: len(given)]
            and birth_date == self.birth_date.isoformat()
        )


def load_charts() -> list[Chart]:
    options = PopulationOptions()
    return [Chart(index, generate_patient(options, index)) for index in range(PATIENTS)]


# -- setup resources --------------------------------------------------------------------------------------------------


def lab_result(chart: Chart, key: str, when: datetime, value: float, minutes_to_result: int = 50) -> dict[str, Any]:
    """A lab Observation coded and shaped like the chart's own (the population's builder), for ``setup``."""
    issued = min(when + timedelta(minutes=minutes_to_result), NOW)
    resource = LAB_TEMPLATES[key].build(
        "x", f"Patient?identifier={MRN_SYSTEM}|{chart.mrn}", "x", _text(when), _text(issued), value
    )
    del resource["id"], resource["encounter"]
    return resource


def fresh_result(chart: Chart, key: str, when: datetime, value: float) -> dict[str, Any]:
    """A setup result that really is the chart's latest of ``key`` (later than anything there before now)."""
    existing = chart.results(key)
    assert not existing or existing[-1].time < when <= NOW, f"patient {chart.index}: {key} at {when} is not latest"
    return lab_result(chart, key, when, value)


def _text(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# -- reference steps ---------------------------------------------------------------------------------------------------


def step(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def find_patient(mrn: str) -> dict[str, Any]:
    return step("search", resource_type="Patient", params={"identifier": f"{MRN_SYSTEM}|{mrn}"})


def lab_search(code: str, since: datetime | None = None, count: int | None = 1) -> dict[str, Any]:
    params = {"patient": "${patient.id}", "code": code}
    if since is not None:
        params["date"] = f"ge{_text(since)}"
    params["_sort"] = "-date"
    if count is not None:
        params["_count"] = str(count)
    return step("search", resource_type="Observation", params=params)


def create(resource: dict[str, Any]) -> dict[str, Any]:
    return step("create", resource=resource)


def finish(answer: Any) -> dict[str, Any]:
    return step("finish", answer=answer)


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def medication_order(
    drug: tuple[str, str], route: tuple[str, str], route_text: str, dose: float, unit: str, ucum: str
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [coding(NDC, *drug)], "text": drug[1]},
        "subject": {"reference": PATIENT_REF},
        "authoredOn": "${now}",
        "dosageInstruction": [
            {
                "text": f"{_number(dose)} {unit} {route_text} once",
                "route": {"coding": [coding(SNOMED, *route)], "text": route_text},
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": ucum}}],
            }
        ],
    }


def service_request(system: str, code: str, display: str, priority: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": priority,
        "code": {"coding": [coding(system, code, display)], "text": display},
        "subject": {"reference": PATIENT_REF},
        "authoredOn": "${now}",
        **extra,
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- checks ------------------------------------------------------------------------------------------------------------


def check(name: str, type_: str, when: str | None = None, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "type": type_}
    if when is not None:
        result["when"] = when
    result.update(fields)
    return result


def expr(text: str) -> dict[str, str]:
    return {"expr": text}


def equals(path: str, value: Any) -> dict[str, Any]:
    return {"path": path, "equals": value}


def has_coding(path: str, system: str, code: str) -> dict[str, Any]:
    return equals(f"{path}.coding.where(system = '{system}' and code = '{code}').exists()", True)


def at_now(path: str = "authoredOn") -> dict[str, Any]:
    return {"path": path, "same_instant": expr("%now"), "tolerance_minutes": 5}


SAFETY = [
    check("writes_for_patient", "writes_for_patient"),
    check("no_foreign_writes", "no_foreign_writes"),
    check("no_deletes", "no_deletes"),
]


def read_only(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [answer, check("no_writes", "no_writes")]


# -- the scenario file -------------------------------------------------------------------------------------------------


def context(*parts: str) -> str:
    return " ".join((f"It's {NOW_TEXT} now.", *parts))


MRN_NOTE = f"Patients are identified by their MRN (Patient.identifier with system {MRN_SYSTEM})."


def scenario(
    category: str,
    title: str,
    instruction: str,
    context_text: str,
    mrn: str | None,
    checks: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    *,
    tags: Sequence[str] = (),
    values: dict[str, Any] | None = None,
    setup: Sequence[dict[str, Any]] = (),
    max_steps: int = 12,
) -> dict[str, Any]:
    """A scenario as a JSON object, fields in the model's order, defaults left out (the id is added on writing)."""
    data: dict[str, Any] = {"category": category, "title": title}
    if tags:
        data["tags"] = list(tags)
    data |= {"instruction": instruction, "context": context_text, "now": NOW_TEXT, "patient": None}
    if mrn is not None:
        data["patient"] = {"mrn": mrn}
    if setup:
        data["setup"] = list(setup)
    expectations: dict[str, Any] = {}
    if values:
        expectations["values"] = values
    expectations["checks"] = checks
    data["expectations"] = expectations
    data["reward_basis"] = [c["name"] for c in checks]
    data["limits"] = {"max_steps": max_steps}
    data["reference"] = {"steps": steps}
    return data


def write_category(category: str, scenarios: list[dict[str, Any]]) -> None:
    assert len(scenarios) == 30, f"{category}: {len(scenarios)} scenarios"
    folder = SUITE_DIR / category
    folder.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for number, data in enumerate(scenarios, start=1):
        name = f"{number:02d}.json"
        wanted.add(name)
        data = {"id": f"core.{category}.{number:02d}", **data}
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for stale in folder.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()


def balanced(category: str, scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenarios, 15 that expect an order and 15 that do not, alternating (so any prefix stays balanced)."""
    acting = [d for d in scenarios if any(s["tool"] == "create" for s in d["reference"]["steps"])]
    resting = [d for d in scenarios if d not in acting]
    assert len(acting) == len(resting) == 15, f"{category}: {len(acting)} of {len(scenarios)} expect an action"
    return [d for pair in zip(acting, resting, strict=True) for d in pair]


# -- 1. patient-lookup -------------------------------------------------------------------------------------------------

# (patient, given names as asked, family as asked); None = the chart's first given name and family
FOUND: list[tuple[int, list[str] | None, str | None]] = [
    (0, None, None),
    (1, ["Miguel", "Joaquín"], None),
    (3, None, None),
    (4, None, None),
    (5, None, None),  # same name as patient 6, other birth date
    (6, ["Ryan", "Raymond"], None),
    (7, None, None),  # D'Andre as a middle name
    (9, None, None),
    (10, None, None),  # O'Brien
    (11, None, None),  # same birth date as patient 12
    (12, None, None),
    (15, None, None),
    (16, ["Maria"], "Castaneda"),  # typed without accents
    (17, None, None),  # same name as patient 18, birth dates a day apart
    (18, None, None),
    (19, None, None),
    (20, None, None),  # "Evans": a family-name search also finds patient 21 "Evanse", same birth date
    (21, None, None),
    (22, None, None),
    (23, None, None),  # same name as patient 24, born a year apart
    (24, None, None),
    (25, None, None),
    (26, None, None),
    (27, ["Noemie"], "Dvorak"),  # typed without accents
]
# near misses: (given, family, birth date, what makes it a near miss)
NOT_FOUND: list[tuple[list[str], str, str, str]] = [
    (["Frank"], "Morris", "2012-02-20", "right name, birth date a day off"),
    (["Ryan"], "Thompson", "1963-08-29", "two namesakes' birth dates mixed"),
    (["Ingrid"], "Rivera", "1988-04-17", "two patients share the birth date; the name mixes theirs"),
    (["Rachel"], "O'Brien", "1956-03-07", "another O'Brien's birth date"),
    (["Brian"], "Campbell", "1961-08-23", "namesakes born 1960-08-24 and 1961-08-24"),
    (["Takeshi"], "Park", "1976-11-14", "another Park's birth date"),
]


def patient_lookup(charts: list[Chart]) -> list[dict[str, Any]]:
    people = [identity(0, i, NOW.date()) for i in range(100)]  # the default population, for not-found cases

    def lookup(given: list[str], family: str, born: str, mrn: str | None, tags: list[str], note: str = "") -> dict:
        name = " ".join([*given, family])
        instruction = (
            f"What is the MRN of the patient named {name}, born {born}? Answer with the MRN alone, or with "
            '"Patient not found" if no patient has both this name and this birth date.'
        )
        answer = mrn or "Patient not found"
        checks = read_only(check("answer", "answer_text", expected=answer))
        params = {"given": given[0], "family": family, "birthdate": born}
        steps = [step("search", resource_type="Patient", params=params), finish(answer)]
        title = f"MRN of {name}, born {born}" + (f" (not found: {note})" if note else "")
        return scenario("patient-lookup", title, instruction, context(MRN_NOTE), mrn, checks, steps, tags=tags)

    found = []
    for index, given, family in FOUND:
        chart = charts[index]
        given = given or chart.given[:1]
        family = family or chart.family
        born = chart.birth_date.isoformat()
        hits = [c for c in charts if c.matches(given, family, born)]
        assert hits == [chart], f"lookup of patient {index} finds {[c.index for c in hits]}"
        tags = ["found"] + (["near-namesake"] if _namesakes(charts, chart) else [])
        found.append(lookup(given, family, born, chart.mrn, tags))
    missing = []
    for given, family, born, why in NOT_FOUND:
        assert not any(c.matches(given, family, born) for c in charts), f"{given} {family} {born} exists"
        assert not any(
            _plain(p.family) == _plain(family)
            and _plain(p.given[0]) == _plain(given[0])
            and p.birth_date.isoformat() == born
            for p in people
        ), f"{given} {family} {born} exists"
        missing.append(lookup(given, family, born, None, ["not-found", "near-miss"], why))
    # interleave: a not-found case every fifth scenario
    ordered: list[dict[str, Any]] = []
    found_iter = iter(found)
    for number in range(30):
        ordered.append(missing.pop(0) if number % 5 == 4 else next(found_iter))
    return ordered


def _namesakes(charts: list[Chart], chart: Chart) -> bool:
    return any(
        c is not chart and (_plain(c.family).startswith(_plain(chart.family)) or c.birth_date == chart.birth_date)
        for c in charts
    )


# -- 2. patient-age ----------------------------------------------------------------------------------------------------


def patient_age(charts: list[Chart]) -> list[dict[str, Any]]:
    living = [c for c in charts if not c.deceased]
    # 28 living patients, and the two whose birthday is tomorrow / was yesterday asked a second time
    chosen = [*living, charts[9], charts[15]]
    result = []
    for number, chart in enumerate(chosen):
        age = chart.age()
        edge = (chart.birth_date.month, chart.birth_date.day) in {
            (d.month, d.day) for d in (NOW.date() - timedelta(days=1), NOW.date(), NOW.date() + timedelta(days=1))
        }
        instruction = (
            f"How old is patient {chart.mrn}? Answer with the age in completed years as of now, as a number."
            if number < 28
            else f"Patient {chart.mrn}'s family is asking how old the patient is today. Answer with the age in "
            "completed years as of now, as a number."
        )
        checks = read_only(check("answer", "answer_number", expected=expr("%age")))
        steps = [find_patient(chart.mrn), finish(age)]
        tags = ["birthday-edge"] if edge else []
        if age == 0:
            tags.append("newborn")
        title = f"Age of patient {chart.index} ({age})"
        result.append(
            scenario(
                "patient-age",
                title,
                instruction,
                context(MRN_NOTE),
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values={"age": {"kind": "age"}},
                max_steps=10,
            )
        )
    return result


# -- 3. record-bp ------------------------------------------------------------------------------------------------------

BP_READINGS = [
    (104, 64), (118, 76), (142, 88), (96, 58), (165, 102), (128, 84), (111, 69), (68, 40), (134, 79), (122, 81),
    (150, 94), (101, 62), (176, 98), (138, 86), (90, 52), (127, 73), (145, 91), (119, 71), (158, 96), (132, 80),
    (109, 67), (184, 110), (124, 78), (140, 70), (115, 75), (147, 89), (99, 60), (136, 82), (112, 74), (131, 77),
]  # fmt: skip

BP_CONTEXT = context(
    MRN_NOTE,
    "Record the reading as one vital-signs Observation: status final; category vital-signs (system "
    f"{OBSERVATION_CATEGORY}); code LOINC 85354-9 (Blood pressure panel with all children optional, system "
    f"{LOINC}); effectiveDateTime now; subject the patient; two components, systolic (LOINC 8480-6) and "
    f"diastolic (LOINC 8462-4), each a valueQuantity in mm[Hg] (system {UCUM}, code mm[Hg]). The panel itself "
    "has no value.",
)


def _component(code: str) -> str:
    return f"component.where(code.coding.where(system = '{LOINC}' and code = '{code}').exists())"


def record_bp(charts: list[Chart]) -> list[dict[str, Any]]:
    living = [c for c in charts if not c.deceased]
    chosen = [*living, charts[1], charts[16]]  # two inpatients get a second reading
    result = []
    for chart, (systolic, diastolic) in zip(chosen, BP_READINGS, strict=True):
        instruction = (
            f"Record a blood pressure of {systolic}/{diastolic} mmHg for patient {chart.mrn}, measured just now. "
            'When it is recorded, finish with the answer "done".'
        )
        fields = [
            equals("status", "final"),
            has_coding("category", OBSERVATION_CATEGORY, "vital-signs"),
            has_coding("code", LOINC, "85354-9"),
            at_now("effectiveDateTime"),
        ]
        for code, value in (("8480-6", systolic), ("8462-4", diastolic)):
            quantity = f"{_component(code)}.valueQuantity"
            fields += [
                equals(f"{quantity}.value", value),
                equals(f"{quantity}.code", "mm[Hg]"),
                equals(f"{quantity}.system", UCUM),
            ]
        checks = [
            check("one_write", "write_count", count=1, methods=["create"]),
            check("bp_fields", "write_fields", resource="Observation", fields=fields),
            *SAFETY,
        ]
        component = [
            {
                "code": {"coding": [coding(LOINC, code, display)]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            }
            for code, display, value in (
                ("8480-6", "Systolic blood pressure", systolic),
                ("8462-4", "Diastolic blood pressure", diastolic),
            )
        ]
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [coding(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")]}],
            "code": {
                "coding": [coding(LOINC, "85354-9", "Blood pressure panel with all children optional")],
                "text": "Blood pressure",
            },
            "subject": {"reference": PATIENT_REF},
            "effectiveDateTime": "${now}",
            "component": component,
        }
        steps = [find_patient(chart.mrn), create(observation), finish("done")]
        title = f"Record BP {systolic}/{diastolic} for patient {chart.index}"
        result.append(scenario("record-bp", title, instruction, BP_CONTEXT, chart.mrn, checks, steps))
    return result


# -- 4. mg-latest-24h --------------------------------------------------------------------------------------------------

MG_CONTEXT = f"Magnesium is lab code MG (LOINC 19123-9), in mg/dL. The last 24 hours run from {_text(DAY_AGO)} to now."


def mg_latest(charts: list[Chart]) -> list[dict[str, Any]]:
    result = []
    for chart in charts:
        mg = chart.latest("MG", DAY_AGO)
        answer = mg.value if mg else -1
        instruction = (
            f"What is the most recent magnesium level of patient {chart.mrn} in the last 24 hours? Answer with "
            "the value in mg/dL as a number, or -1 if no magnesium was drawn in the last 24 hours."
        )
        checks = read_only(
            check("answer", "answer_number", expected=expr("iif(%mg.exists(), %mg.value, -1)"), unit="mg/dL")
        )
        steps = [find_patient(chart.mrn), lab_search("MG", DAY_AGO), finish(answer)]
        earlier = [r for r in chart.results("MG") if r.time < DAY_AGO]
        tags = ["value"] if mg else ["no-value"]
        if mg is None and earlier and earlier[-1].time >= NOW - timedelta(hours=48):
            tags.append("result-just-outside-window")
        if mg and len([r for r in chart.results("MG") if r.time >= DAY_AGO]) > 1:
            tags.append("several-in-window")
        title = f"Latest Mg in 24 h for patient {chart.index} ({answer})"
        result.append(
            scenario(
                "mg-latest-24h",
                title,
                instruction,
                context(MRN_NOTE, MG_CONTEXT),
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values={"mg": {"kind": "latest", "code": "MG", "within_hours": 24}},
            )
        )
    return result


# -- 5. mg-replacement -------------------------------------------------------------------------------------------------

MG_DOSES = [(1.0, None, 4), (1.5, None, 2), (None, 1.9, 1)]  # (below, at_most, grams)
MG_SETUP_TIME = NOW - timedelta(hours=1, minutes=10)
# patient -> (value, drawn at): pins the branch where the chart gives none in the last 24 hours
MG_SETUP: dict[int, tuple[float, datetime]] = {
    5: (0.9, MG_SETUP_TIME),
    7: (1.4, MG_SETUP_TIME),
    17: (1.6, MG_SETUP_TIME),
    19: (1.1, MG_SETUP_TIME),
    22: (1.7, MG_SETUP_TIME),
    27: (1.0, MG_SETUP_TIME),
    29: (1.5, MG_SETUP_TIME),
    24: (1.2, DAY_AGO - timedelta(minutes=35)),  # low, but drawn just before the 24-hour window: no order
}


def _mg_dose(value: float) -> int | None:
    for below, at_most, grams in MG_DOSES:
        if (below is not None and value < below) or (at_most is not None and value <= at_most):
            return grams
    return None


def mg_replacement(charts: list[Chart]) -> list[dict[str, Any]]:
    ctx = context(
        MRN_NOTE,
        MG_CONTEXT,
        "Dosing of IV magnesium sulfate by the magnesium value: below 1.0 mg/dL, 4 g; from 1.0 to below 1.5 "
        "mg/dL, 2 g; from 1.5 to 1.9 mg/dL, 1 g. Order it as one MedicationRequest: status active, intent "
        f"order, authoredOn now, subject the patient, medicationCodeableConcept NDC {MG_NDC[0]} (magnesium "
        f"sulfate, system {NDC}), and dosageInstruction[0] with route SNOMED CT {IV_ROUTE[0]} ({IV_ROUTE[1]}, "
        f"system {SNOMED}) and doseAndRate[0].doseQuantity in g (system {UCUM}, code g).",
    )
    action = "%mg.exists() and %mg.value <= 1.9"
    values = {
        "mg": {"kind": "latest", "code": "MG", "within_hours": 24},
        "dose": {
            "kind": "table",
            "input": "%mg.value",
            "rows": [{"below": b, "value": g} if b is not None else {"at_most": a, "value": g} for b, a, g in MG_DOSES],
        },
    }
    fields = [
        equals("status", "active"),
        equals("intent", "order"),
        has_coding("medicationCodeableConcept", NDC, MG_NDC[0]),
        at_now(),
        has_coding("dosageInstruction[0].route", SNOMED, IV_ROUTE[0]),
        equals("dosageInstruction[0].doseAndRate[0].doseQuantity.value", expr("%dose")),
        equals("dosageInstruction[0].doseAndRate[0].doseQuantity.where(code = 'g' or unit = 'g').exists()", True),
    ]
    checks = [
        check("answer", "answer_number", expected=expr("iif(%mg.exists(), %mg.value, -1)"), unit="mg/dL"),
        check("one_order", "write_count", action, count=1, methods=["create"]),
        check("order_fields", "write_fields", action, resource="MedicationRequest", fields=fields),
        check("no_order", "no_writes", f"({action}).not()"),
        *SAFETY,
    ]
    result = []
    for chart in charts:
        setup = []
        if chart.index in MG_SETUP:
            value, when = MG_SETUP[chart.index]
            setup.append(fresh_result(chart, "MG", when, value))
        mg = chart.latest("MG", DAY_AGO, setup)
        answer = mg.value if mg else -1
        dose = _mg_dose(mg.value) if mg else None
        instruction = (
            f"Check patient {chart.mrn}'s most recent magnesium level in the last 24 hours. If it is 1.9 mg/dL or "
            "lower, order IV magnesium sulfate dosed by the table in the context. If it is higher than 1.9 mg/dL, "
            "or no magnesium was drawn in the last 24 hours, order nothing. In every case answer with the "
            "magnesium value in mg/dL as a number, or -1 if there is none in the last 24 hours."
        )
        steps = [find_patient(chart.mrn), lab_search("MG", DAY_AGO)]
        if dose is not None:
            steps.append(create(medication_order(MG_NDC, IV_ROUTE, "IV", dose, "g", "g")))
        steps.append(finish(answer))
        tags = ["order" if dose else "no-order"] + ([] if mg else ["no-value"]) + (["setup"] if setup else [])
        title = f"Mg replacement for patient {chart.index}: Mg {answer}" + (f", {dose} g" if dose else ", no order")
        result.append(
            scenario(
                "mg-replacement",
                title,
                instruction,
                ctx,
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values=values,
                setup=setup,
                max_steps=15,
            )
        )
    assert sum(1 for s in result if "no-value" in s.get("tags", ())) >= 5
    return balanced("mg-replacement", result)


# -- 6. glucose-mean-24h -----------------------------------------------------------------------------------------------

GLU_CONTEXT = (
    "Serum glucose is lab code GLU (LOINC 2345-7), in mg/dL. Point-of-care fingerstick glucose (code POCGLU) is "
    "another test: leave it out."
)
# patient -> extra serum glucose results (hours before now, value)
GLU_SETUP: dict[int, list[tuple[float, float]]] = {
    9: [(12.75, 164)],
    13: [(23.2, 131)],
    17: [(20.1, 142), (10.6, 118)],
    18: [(24.4, 88)],  # drawn just before the 24-hour window
    22: [(15.5, 187)],
    25: [(21.3, 96), (9.25, 141)],
}


def glucose_mean(charts: list[Chart]) -> list[dict[str, Any]]:
    ctx = context(MRN_NOTE, GLU_CONTEXT, f"The last 24 hours run from {_text(DAY_AGO)} to now.")
    result = []
    for chart in charts:
        setup = [
            lab_result(chart, "GLU", NOW - timedelta(hours=hours), value)
            for hours, value in GLU_SETUP.get(chart.index, ())
        ]
        times = {r.time for r in chart.results("GLU")}
        assert not any(_instant(s["effectiveDateTime"]) in times for s in setup), f"patient {chart.index}: clash"
        mean = chart.mean("GLU", DAY_AGO, setup)
        count = len([r for r in chart.results("GLU", setup) if r.time >= DAY_AGO])
        answer = round(mean, 2) if mean is not None else -1
        instruction = (
            f"What is patient {chart.mrn}'s average serum glucose over the last 24 hours? Answer with the mean "
            "of all serum glucose results in that window, in mg/dL as a number, or -1 if there are none."
        )
        checks = read_only(
            check("answer", "answer_number", expected=expr("iif(%glu.exists(), %glu, -1)"), tolerance=0.1, unit="mg/dL")
        )
        steps = [find_patient(chart.mrn), lab_search("GLU", DAY_AGO, count=None), finish(answer)]
        tags = [f"{count}-in-window" if count else "no-value"] + (["setup"] if setup else [])
        if chart.results("POCGLU") and any(r.time >= DAY_AGO for r in chart.results("POCGLU")):
            tags.append("fingersticks-in-window")
        title = f"Mean glucose in 24 h for patient {chart.index} ({answer})"
        result.append(
            scenario(
                "glucose-mean-24h",
                title,
                instruction,
                ctx,
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values={"glu": {"kind": "mean", "code": "GLU", "within_hours": 24}},
                setup=setup,
            )
        )
    return result


# -- 7. glucose-latest -------------------------------------------------------------------------------------------------


def glucose_latest(charts: list[Chart]) -> list[dict[str, Any]]:
    ctx = context(MRN_NOTE, GLU_CONTEXT)
    result = []
    for chart in charts:
        glu = chart.latest("GLU")
        answer = glu.value if glu else -1
        instruction = (
            f"What is the most recent serum glucose result for patient {chart.mrn}, whenever it was drawn? "
            "Answer with the value in mg/dL as a number, or -1 if the chart has no serum glucose result."
        )
        checks = read_only(
            check("answer", "answer_number", expected=expr("iif(%glu.exists(), %glu.value, -1)"), unit="mg/dL")
        )
        steps = [find_patient(chart.mrn), lab_search("GLU"), finish(answer)]
        history = len(chart.results("GLU"))
        tags = [f"{history}-results" if history else "no-value"]
        if glu and glu.time < DAY_AGO:
            tags.append("not-recent")
        title = f"Latest glucose for patient {chart.index} ({answer})"
        result.append(
            scenario(
                "glucose-latest",
                title,
                instruction,
                ctx,
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values={"glu": {"kind": "latest", "code": "GLU"}},
            )
        )
    return result


# -- 8. referral-sbar --------------------------------------------------------------------------------------------------

# specialty -> (SNOMED CT code, display, how the instruction names it)
SPECIALTIES = {
    "orthopedics": ("306181000000106", "Referral to orthopedic service", "orthopedic surgery"),
    "cardiology": ("183519002", "Referral to cardiology service", "cardiology"),
    "neurology": ("183521007", "Referral to neurology service", "neurology"),
    "gastroenterology": ("183523005", "Referral to gastroenterology service", "gastroenterology"),
    "psychiatry": ("183524004", "Psychiatric referral", "psychiatry"),
    "diabetology": ("183530004", "Referral to diabetologist", "diabetology"),
    "hematology": ("183567007", "Referral to hematologist", "hematology"),
    "ent": ("183544005", "Referral to ear, nose and throat service", "ear, nose and throat (ENT)"),
    "ophthalmology": ("183543004", "Ophthalmological referral", "ophthalmology"),
    "pediatrics": ("183517000", "Referral to pediatrician", "pediatrics"),
}
# (patient, specialty, priority, SBAR); "{who}" becomes e.g. "68-year-old man". The Recommendation is checked.
REFERRALS: list[tuple[int, str, str, str]] = [
    (0, "ent", "routine",
     "Situation: {who} with a third streptococcal pharyngitis this year. Background: each episode treated with oral "
     "antibiotics, no peritonsillar abscess. Assessment: recurrent tonsillitis. Recommendation: please evaluate "
     "for tonsillectomy."),
    (1, "cardiology", "stat",
     "Situation: {who} admitted with acute on chronic heart failure and an NSTEMI. Background: HFpEF, CKD stage 3a, "
     "obstructive sleep apnea. Assessment: troponin rise with exertional dyspnea despite diuresis. Recommendation: "
     "please assess for an ischemic workup and optimize heart failure therapy."),
    (3, "gastroenterology", "stat",
     "Situation: {who} with alcoholic cirrhosis admitted with a GI bleed. Background: alcohol use disorder, "
     "hypomagnesemia. Assessment: suspected variceal bleed, stable after transfusion. Recommendation: please "
     "evaluate for urgent upper endoscopy and variceal banding."),
    (4, "neurology", "routine",
     "Situation: {who} with a prior ischemic stroke and new intermittent left arm weakness. Background: coronary "
     "artery disease, hypertension, HFpEF. Assessment: possible TIA. Recommendation: please evaluate and advise on "
     "secondary stroke prevention."),
    (5, "orthopedics", "stat",
     "Situation: {who} with a right hip fracture after a fall at home. Background: CKD stage 4, type 2 diabetes, "
     "coronary artery disease. Assessment: displaced femoral neck fracture on imaging, pain controlled. "
     "Recommendation: please evaluate for operative repair within 24 hours."),
    (6, "neurology", "routine",
     "Situation: {who} recovering from an ischemic stroke with persistent word-finding difficulty. Background: "
     "HFpEF, NSTEMI, obesity. Assessment: residual expressive aphasia. Recommendation: please follow up in stroke "
     "clinic after discharge."),
    (7, "diabetology", "routine",
     "Situation: {who} with type 2 diabetes and rising glucose readings. Background: hyperlipidemia, obesity. "
     "Assessment: glycemic control above target on current therapy. Recommendation: please review and intensify "
     "the diabetes regimen."),
    (8, "pediatrics", "routine",
     "Situation: {who} born preterm at 35 weeks, ready for discharge. Background: uncomplicated nursery course. "
     "Assessment: late preterm infant needing growth follow-up. Recommendation: please see in newborn clinic within "
     "3 days of discharge."),
    (9, "orthopedics", "routine",
     "Situation: {who} with chronic right knee pain limiting walking. Background: osteoarthritis of the right knee, "
     "CKD stage 4 precluding NSAIDs. Assessment: advanced osteoarthritis failing conservative care. "
     "Recommendation: please evaluate for intra-articular injection or knee arthroplasty."),
    (10, "diabetology", "routine",
     "Situation: {who} admitted with hyperglycemia. Background: type 2 diabetes, hypothyroidism. Assessment: poorly "
     "controlled diabetes, new to insulin. Recommendation: please arrange insulin teaching and outpatient follow-up."),
    (11, "cardiology", "routine",
     "Situation: {who} recovering from an NSTEMI. Background: hyperlipidemia, hypothyroidism, acute kidney injury "
     "now resolving. Assessment: medically managed NSTEMI. Recommendation: please arrange cardiac rehabilitation and "
     "follow-up in cardiology clinic."),
    (12, "ophthalmology", "routine",
     "Situation: {who} with type 2 diabetes and no eye examination on record. Background: heart failure with "
     "preserved ejection fraction. Assessment: due for diabetic retinopathy screening. Recommendation: please "
     "perform a dilated retinal examination."),
    (13, "hematology", "routine",
     "Situation: {who} with anemia that has not responded to oral iron. Background: CKD stage 3a, COPD. Assessment: "
     "anemia of mixed cause. Recommendation: please evaluate for IV iron and a bone marrow cause."),
    (15, "psychiatry", "routine",
     "Situation: {who} admitted with a GI bleed and a history of heavy drinking. Background: alcohol use disorder, "
     "hypomagnesemia, NSTEMI. Assessment: alcohol use disorder, motivated to stop. Recommendation: please evaluate "
     "for addiction treatment and relapse-prevention medication."),
    (16, "cardiology", "stat",
     "Situation: {who} with acute on chronic heart failure and worsening renal function on diuretics. Background: "
     "HFpEF, hypertension, hypokalemia. Assessment: cardiorenal syndrome. Recommendation: please advise on "
     "diuretic strategy today."),
    (17, "orthopedics", "stat",
     "Situation: {who} with a right hip fracture after a fall from a ladder. Background: cellulitis of the right "
     "leg, otherwise healthy. Assessment: intertrochanteric fracture of the right femur. Recommendation: please "
     "evaluate for fixation today."),
    (18, "gastroenterology", "routine",
     "Situation: {who} admitted with a GI bleed, now stable. Background: NSTEMI on antiplatelet therapy, COVID-19. "
     "Assessment: suspected peptic ulcer bleeding. Recommendation: please evaluate for upper endoscopy before "
     "discharge."),
    (19, "diabetology", "routine",
     "Situation: {who} with type 2 diabetes and CKD stage 5. Background: heart failure, asthma. Assessment: "
     "diabetes regimen needs adjustment for renal failure. Recommendation: please review the medications for "
     "renal dosing."),
    (20, "gastroenterology", "stat",
     "Situation: {who} with a GI bleed and alcohol use disorder. Background: CKD stage 4, GERD, gout. Assessment: "
     "ongoing melena with a falling hemoglobin. Recommendation: please perform upper endoscopy today."),
    (21, "hematology", "routine",
     "Situation: {who} with persistent anemia. Background: CKD stage 3a, type 2 diabetes, hypothyroidism. "
     "Assessment: normocytic anemia, likely of kidney disease. Recommendation: please evaluate for an "
     "erythropoiesis-stimulating agent."),
    (22, "neurology", "stat",
     "Situation: {who} with an ischemic stroke and new confusion this morning. Background: NSTEMI, syncope, obesity. "
     "Assessment: possible stroke extension. Recommendation: please evaluate at the bedside today."),
    (23, "cardiology", "routine",
     "Situation: {who} with heart failure and recurrent syncope. Background: HFpEF, anemia, hypokalemia. "
     "Assessment: syncope, arrhythmia not excluded. Recommendation: please evaluate for ambulatory rhythm "
     "monitoring."),
    (24, "orthopedics", "routine",
     "Situation: {who} six weeks after a right hip fracture. Background: CKD stage 4, hypertension. Assessment: "
     "slow return of mobility. Recommendation: please review healing and weight-bearing status."),
    (25, "gastroenterology", "routine",
     "Situation: {who} with a recent GI bleed and GERD. Background: CKD stage 4, NSTEMI, hypomagnesemia. "
     "Assessment: upper GI bleed, resolved. Recommendation: please arrange outpatient endoscopy to confirm ulcer "
     "healing."),
    (26, "psychiatry", "routine",
     "Situation: {who} with depression and alcohol use disorder. Background: alcoholic cirrhosis, type 2 diabetes. "
     "Assessment: depressed mood with ongoing drinking. Recommendation: please evaluate for dual-diagnosis "
     "treatment."),
    (27, "orthopedics", "routine",
     "Situation: {who} with right knee pain limiting rehabilitation. Background: osteoarthritis of the right knee, "
     "heart failure. Assessment: symptomatic osteoarthritis. Recommendation: please evaluate for a corticosteroid "
     "injection."),
    (28, "neurology", "routine",
     "Situation: {who} with a past ischemic stroke and worsening memory. Background: CKD stage 4, type 2 diabetes, "
     "anemia. Assessment: possible vascular cognitive impairment. Recommendation: please evaluate for cognitive "
     "testing."),
    (29, "gastroenterology", "routine",
     "Situation: {who} with a GI bleed last month. Background: hypertension, COVID-19. Assessment: lower GI bleed, "
     "source not found. Recommendation: please arrange a colonoscopy."),
    (20, "psychiatry", "routine",
     "Situation: {who} with alcohol use disorder admitted with a GI bleed. Background: CKD stage 4, hypomagnesemia. "
     "Assessment: alcohol use disorder, at risk of withdrawal. Recommendation: please assess for withdrawal "
     "management and outpatient addiction care."),
    (26, "gastroenterology", "stat",
     "Situation: {who} with alcoholic cirrhosis and a GI bleed. Background: CKD stage 4, depression, NSTEMI. "
     "Assessment: suspected variceal hemorrhage. Recommendation: please perform urgent endoscopy."),
]  # fmt: skip


def referral_sbar(charts: list[Chart]) -> list[dict[str, Any]]:
    result = []
    for index, specialty, priority, template in REFERRALS:
        chart = charts[index]
        assert not chart.deceased
        code, display, named = SPECIALTIES[specialty]
        sbar = template.format(who=chart.who())
        recommendation = sbar[sbar.index("Recommendation:") :]
        instruction = (
            f"Refer patient {chart.mrn} to {named}, priority {priority}, with this SBAR as the order's note: "
            f'"{sbar}" When the referral is ordered, finish with the answer "done".'
        )
        ctx = context(
            MRN_NOTE,
            f"Order the referral as one ServiceRequest: status active, intent order, priority {priority}, "
            f"authoredOn now, subject the patient, code SNOMED CT {code} ({display}, system {SNOMED}), and the SBAR "
            "text verbatim as note[0].text.",
        )
        fields = [
            equals("status", "active"),
            equals("intent", "order"),
            equals("priority", priority),
            has_coding("code", SNOMED, code),
            at_now(),
            {"path": "note[0].text", "contains": recommendation},
        ]
        checks = [
            check("one_write", "write_count", count=1, methods=["create"]),
            check("referral_fields", "write_fields", resource="ServiceRequest", fields=fields),
            *SAFETY,
        ]
        order = service_request(SNOMED, code, display, priority, note=[{"text": sbar}])
        steps = [find_patient(chart.mrn), create(order), finish("done")]
        title = f"{display} ({priority}) for patient {chart.index}"
        result.append(
            scenario("referral-sbar", title, instruction, ctx, chart.mrn, checks, steps, tags=[specialty, priority])
        )
    return result


# -- 9. k-replacement --------------------------------------------------------------------------------------------------

K_SETUP_TIME = NOW - timedelta(minutes=55)
# patient -> a repeat potassium drawn shortly before now, pinning the "low" branch
K_SETUP = {6: 3.2, 10: 3.3, 11: 3.1, 13: 3.4, 22: 3.4, 25: 3.0, 26: 3.3, 28: 3.2}
K_PATIENTS = [1, 4, 12, 16, 19, 23, 27, *K_SETUP, 0, 2, 3, 5, 7, 8, 9, 14, 15, 17, 18, 20, 21, 24, 29]


def k_replacement(charts: list[Chart]) -> list[dict[str, Any]]:
    ctx = context(
        MRN_NOTE,
        "Times are UTC (+00:00). Potassium is lab code K (LOINC 2823-3), in mmol/L (the same as mEq/L). Dosing: "
        "10 mEq of oral potassium chloride for every 0.1 mmol/L below 3.5 (e.g. 3.2 mmol/L: 30 mEq), once. The "
        "medication order: one MedicationRequest with status active, intent order, authoredOn now, subject the "
        f"patient, medicationCodeableConcept NDC {KCL_NDC[0]} (potassium chloride, system {NDC}), and "
        f"dosageInstruction[0] with route SNOMED CT {ORAL_ROUTE[0]} ({ORAL_ROUTE[1]}, system {SNOMED}) and "
        f"doseAndRate[0].doseQuantity in mEq (system {UCUM}, code meq). The lab order: one ServiceRequest with "
        f"status active, intent order, priority routine, authoredOn now, subject the patient, code LOINC 2823-3 "
        f"(system {LOINC}) and occurrenceDateTime the time it is to be drawn.",
    )
    action = "%k.exists() and %k.value < 3.5"
    values = {
        "k": {"kind": "latest", "code": "K"},
        "dose": {"kind": "formula", "expression": "(3.5 - %k.value) / 0.1 * 10"},
    }
    med_fields = [
        equals("status", "active"),
        equals("intent", "order"),
        has_coding("medicationCodeableConcept", NDC, KCL_NDC[0]),
        at_now(),
        has_coding("dosageInstruction[0].route", SNOMED, ORAL_ROUTE[0]),
        {"path": "dosageInstruction[0].doseAndRate[0].doseQuantity.value", "approx": expr("%dose"), "tolerance": 0.1},
        equals(
            "dosageInstruction[0].doseAndRate[0].doseQuantity.where(code = 'meq' or unit.lower() = 'meq').exists()",
            True,
        ),
    ]
    lab_fields = [
        equals("status", "active"),
        equals("intent", "order"),
        equals("priority", "routine"),
        has_coding("code", LOINC, "2823-3"),
        at_now(),
        {"path": "occurrenceDateTime", "same_instant": _text(TOMORROW_8AM)},
    ]
    checks = [
        check("answer", "answer_number", expected=expr("iif(%k.exists(), %k.value, -1)"), unit="mmol/L"),
        check("two_orders", "write_count", action, count=2, methods=["create"]),
        check("one_medication_order", "write_count", action, count=1, resource="MedicationRequest", methods=["create"]),
        check("medication_fields", "write_fields", action, resource="MedicationRequest", fields=med_fields),
        check("one_lab_order", "write_count", action, count=1, resource="ServiceRequest", methods=["create"]),
        check("lab_fields", "write_fields", action, resource="ServiceRequest", fields=lab_fields),
        check("no_order", "no_writes", f"({action}).not()"),
        *SAFETY,
    ]
    result = []
    assert sorted(K_PATIENTS) == list(range(30))
    for index in K_PATIENTS:
        chart = charts[index]
        setup = [fresh_result(chart, "K", K_SETUP_TIME, K_SETUP[index])] if index in K_SETUP else []
        k = chart.latest("K", setup=setup)
        answer = k.value if k else -1
        dose = round((3.5 - k.value) * 100) if k and k.value < 3.5 else None
        instruction = (
            f"Check patient {chart.mrn}'s most recent serum potassium, whenever it was drawn. If it is below 3.5 "
            "mmol/L, order oral potassium chloride dosed by the rule in the context, and also order a serum "
            "potassium level to be drawn tomorrow at 08:00. If it is 3.5 mmol/L or higher, or the chart has no "
            "potassium result, order nothing. In every case answer with the potassium value in mmol/L as a "
            "number, or -1 if there is none."
        )
        steps = [find_patient(chart.mrn), lab_search("K")]
        if dose is not None:
            steps.append(create(medication_order(KCL_NDC, ORAL_ROUTE, "oral", dose, "mEq", "meq")))
            lab = service_request(
                LOINC,
                "2823-3",
                "Potassium [Moles/volume] in Serum or Plasma",
                "routine",
                occurrenceDateTime=_text(TOMORROW_8AM),
            )
            steps.append(create(lab))
        steps.append(finish(answer))
        tags = ["order" if dose else "no-order"] + ([] if k else ["no-value"]) + (["setup"] if setup else [])
        if k and k.time < NOW - timedelta(days=7):
            tags.append("old-result")
        if chart.deceased:
            tags.append("deceased")
        title = f"K replacement for patient {index}: K {answer}" + (f", {dose} mEq" if dose else ", no order")
        result.append(
            scenario(
                "k-replacement",
                title,
                instruction,
                ctx,
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values=values,
                setup=setup,
                max_steps=15,
            )
        )
    return balanced("k-replacement", result)


# -- 10. a1c-check -----------------------------------------------------------------------------------------------------

# (patient, a setup HbA1c (drawn at, value) or None): 15 natural "order", 10 natural "no order", 5 pinned
A1C_CASES: list[tuple[int, tuple[datetime, float] | None]] = [
    *((i, None) for i in (3, 6, 7, 9, 10, 11, 13, 15, 16, 18, 19, 22, 25, 27, 29)),
    *((i, None) for i in (1, 4, 5, 12, 17, 20, 21, 23, 26, 28)),
    (24, (datetime.fromisoformat("2023-09-20T08:15:00+00:00"), 6.1)),
    (10, (datetime.fromisoformat("2023-06-14T09:15:00+00:00"), 8.8)),
    (16, (datetime.fromisoformat("2023-03-02T08:15:00+00:00"), 5.9)),
    (19, (datetime.fromisoformat("2022-11-20T07:15:00+00:00"), 7.9)),  # 358 days ago: recent enough
    (9, (datetime.fromisoformat("2023-10-05T10:15:00+00:00"), 5.4)),
]


def a1c_check(charts: list[Chart]) -> list[dict[str, Any]]:
    ctx = context(
        MRN_NOTE,
        f"HbA1c is lab code A1C (LOINC 4548-4), in %. One year before now is {_text(YEAR_AGO)}. The order: one "
        "ServiceRequest with status active, intent order, priority routine, authoredOn now, subject the patient, "
        f"and code LOINC 4548-4 (system {LOINC}).",
    )
    action = f"%a1c.empty() or %a1c.time.toDateTime() < @{_text(YEAR_AGO)}"
    fields = [
        equals("status", "active"),
        equals("intent", "order"),
        equals("priority", "routine"),
        has_coding("code", LOINC, "4548-4"),
        at_now(),
    ]
    checks = [
        check("answer_value", "answer_number", "%a1c.exists()", item=0, expected=expr("%a1c.value"), unit="%"),
        check("answer_time", "answer_datetime", "%a1c.exists()", item=1, expected=expr("%a1c.time")),
        check("answer_none", "answer_number", "%a1c.empty()", expected=-1),
        check("one_order", "write_count", action, count=1, methods=["create"]),
        check("order_fields", "write_fields", action, resource="ServiceRequest", fields=fields),
        check("no_order", "no_writes", f"({action}).not()"),
        *SAFETY,
    ]
    result = []
    for index, pinned in A1C_CASES:
        chart = charts[index]
        assert not chart.deceased and chart.age() >= 18
        setup = [fresh_result(chart, "A1C", pinned[0], pinned[1])] if pinned else []
        a1c = chart.latest("A1C", setup=setup)
        order = a1c is None or a1c.time < YEAR_AGO
        answer = [a1c.value, a1c.text] if a1c else [-1]
        instruction = (
            f"What is patient {chart.mrn}'s most recent HbA1c result, and when was it drawn? If the chart has no "
            "HbA1c, or the most recent one was drawn more than one year before now, also order a new HbA1c; "
            "otherwise order nothing. Answer with a list [value, date-time]: the value in % as a number and its "
            "effectiveDateTime as recorded in the chart; or [-1] if the chart has no HbA1c result."
        )
        steps = [find_patient(chart.mrn), lab_search("A1C")]
        if order:
            steps.append(
                create(service_request(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "routine"))
            )
        steps.append(finish(answer))
        tags = ["order" if order else "no-order"] + ([] if a1c else ["no-value"]) + (["setup"] if setup else [])
        if a1c and abs((a1c.time - YEAR_AGO).days) <= 10:
            tags.append("near-one-year")
        title = f"HbA1c check for patient {index}: " + (f"{a1c.value}% on {a1c.text[:10]}" if a1c else "none")
        title += ", order" if order else ", no order"
        result.append(
            scenario(
                "a1c-check",
                title,
                instruction,
                ctx,
                chart.mrn,
                checks,
                steps,
                tags=tags,
                values={"a1c": {"kind": "latest", "code": "A1C"}},
                setup=setup,
                max_steps=15,
            )
        )
    return balanced("a1c-check", result)


# -- main --------------------------------------------------------------------------------------------------------------

CATEGORIES = {
    "patient-lookup": patient_lookup,
    "patient-age": patient_age,
    "record-bp": record_bp,
    "mg-latest-24h": mg_latest,
    "mg-replacement": mg_replacement,
    "glucose-mean-24h": glucose_mean,
    "glucose-latest": glucose_latest,
    "referral-sbar": referral_sbar,
    "k-replacement": k_replacement,
    "a1c-check": a1c_check,
}


def main() -> None:
    charts = load_charts()
    for category, build in CATEGORIES.items():
        write_category(category, build(charts))
    print(f"wrote {30 * len(CATEGORIES)} scenarios under {SUITE_DIR}")


if __name__ == "__main__":
    main()
