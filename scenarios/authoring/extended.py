"""Writes the ``extended`` suite: the safety-critical chart work no public benchmark tests (allergy checks before
an order, duplicate orders, renal dosing, holding a drug on a critical lab, trends, the problem list, stopping a
drug, orders in a date range, questions across patients, influenza vaccination, a fever work-up).

Run ``python -m fhir_sandbox.scenarios.authoring.extended``: it generates patients 0..29 of the seed-0 population
(the ``suites`` population), picks each scenario's branch and reference answer from those charts with its own
plain-Python reading of them (never the graders' code, so ``scenarios validate`` is a real cross-check), and
rewrites ``scenarios/extended/<category>/<NN>.json`` (ids ``extended.<category>.<NN>``).

Every instruction states what to do in every branch and the answer's form; every scenario asks for an answer, so
the do-nothing agent scores 0 everywhere; conditional categories are balanced five to five.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from ...fixtures import DEFAULT_NOW, MRN_SYSTEM, PopulationOptions, generate_patient
from ...fixtures.codes import (
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    CVX,
    ICD10,
    LOINC,
    RXNORM,
    SNOMED,
    UCUM,
)
from ...fixtures.medications import MEDICATIONS, ROUTES
from ...fixtures.observations import LAB_TEMPLATES, VITAL_TEMPLATES
from ...fixtures.resources import medication_request

SUITE = "extended"
SUITE_DIR = Path(__file__).resolve().parent.parent / SUITE
PATIENTS = 30  # the suites population: patients 0..29 of the default (seed 0) population
NOW = DEFAULT_NOW
NOW_TEXT = NOW.isoformat()
SUBJECT = {"reference": "Patient/${patient.id}"}  # in reference steps; the episode fills the id in
SUBJECT_IS_PATIENT = {"expr": "'Patient/' + %patient.id"}
MR_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
LAB_ORDER_CATEGORY = ("108252007", "Laboratory procedure")
BASE_CONTEXT = f"It's {NOW_TEXT} now. Patients are identified by MRN (identifier system {MRN_SYSTEM})."


# -- the charts, read independently of the graders ----------------------------------------------------------------


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def codes_of(concept: dict[str, Any] | None, system: str | None = None) -> set[str]:
    return {c.get("code") for c in (concept or {}).get("coding", ()) if system is None or c.get("system") == system}


def status_code(concept: dict[str, Any] | None) -> str | None:
    return next(iter(codes_of(concept)), None)


@dataclass(frozen=True)
class Result:
    time: datetime
    value: float
    id: str


class Chart:
    """One patient's resources (plus a scenario's setup, see ``plus``), with the few queries the builders need."""

    def __init__(self, index: int, resources: list[dict[str, Any]]):
        self.index = index
        self.resources = resources

    def plus(self, setup: Iterable[dict[str, Any]]) -> Chart:
        return Chart(self.index, [*self.resources, *setup])

    @cached_property
    def patient(self) -> dict[str, Any]:
        return next(r for r in self.resources if r["resourceType"] == "Patient")

    @property
    def id(self) -> str:
        return str(self.patient["id"])

    @property
    def mrn(self) -> str:
        return next(i["value"] for i in self.patient["identifier"] if i.get("system") == MRN_SYSTEM)

    @property
    def conditional_reference(self) -> str:
        """How setup resources refer to the patient (resolved by the server when the setup is applied)."""
        return f"Patient?identifier={MRN_SYSTEM}|{self.mrn}"

    @property
    def age(self) -> int:
        born = datetime.fromisoformat(self.patient["birthDate"]).date()
        today = NOW.date()
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["resourceType"] == resource_type]

    def results(self, code: str, hours: float | None = None) -> list[Result]:
        """Observations with ``code`` (LOINC or local) effective in the window before now, oldest first."""
        since = NOW - timedelta(hours=hours) if hours else None
        found = []
        for r in self.of("Observation"):
            if code not in codes_of(r["code"]) or r.get("status") in ("entered-in-error", "cancelled"):
                continue
            moment = instant(r["effectiveDateTime"])
            if moment <= NOW and (since is None or moment >= since) and "valueQuantity" in r:
                found.append(Result(moment, r["valueQuantity"]["value"], r["id"]))
        return sorted(found, key=lambda x: (x.time, x.id))

    def latest(self, code: str, hours: float | None = None) -> Result | None:
        found = self.results(code, hours)
        return found[-1] if found else None

    def medication_orders(self, rxnorm: str, status: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.of("MedicationRequest")
            if rxnorm in codes_of(r.get("medicationCodeableConcept"), RXNORM) and status in (None, r["status"])
        ]

    def practitioner(self) -> str:
        """A clinician of this chart (the requester of its orders)."""
        return next(r["requester"]["reference"] for r in self.of("MedicationRequest") if "requester" in r)


def load_charts() -> dict[int, Chart]:
    options = PopulationOptions()
    return {index: Chart(index, generate_patient(options, index)) for index in range(PATIENTS)}


# -- scenario parts shared by the builders --------------------------------------------------------------------------


def scenario(
    category: str,
    number: int,
    *,
    title: str,
    tags: list[str],
    instruction: str,
    context: str,
    chart: Chart | None,
    values: dict[str, Any],
    checks: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    max_steps: int,
    setup: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One scenario file's content, keys in a fixed order; every check counts."""
    return {
        "id": f"{SUITE}.{category}.{number:02d}",
        "version": 1,
        "category": category,
        "title": title,
        "tags": tags,
        "instruction": instruction,
        "context": context,
        "now": NOW_TEXT,
        "patient": {"mrn": chart.mrn} if chart is not None else None,
        "setup": setup or [],
        "expectations": {"values": values, "checks": checks},
        "reward_basis": [c["name"] for c in checks],
        "limits": {"max_steps": max_steps},
        "reference": {"steps": steps},
    }


def expr(text: str) -> dict[str, str]:
    return {"expr": text}


def check(name: str, kind: str, when: str | None = None, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "type": kind}
    if when is not None:
        result["when"] = when
    return result | fields


def answer_word(name: str, word: str, when: str | None = None, item: int | None = None) -> dict[str, Any]:
    """The answer is ``word`` (or ``[word]``), ignoring case and surrounding punctuation."""
    fields: dict[str, Any] = {"item": item} if item is not None else {}
    return check(name, "answer_one_of", when, **fields, options=[word, [word]])


def safety_checks() -> list[dict[str, Any]]:
    return [check("no_foreign_writes", "no_foreign_writes"), check("no_deletes", "no_deletes")]


def create_unless(
    flag: str, skip_word: str, done_word: str, resource: str, fields: list[Any], item: int | None = None
) -> list[dict[str, Any]]:
    """The checks of "create one ``resource`` unless ``flag``": the answer word of each branch (element ``item`` of
    a list answer, if given), no write at all when ``flag`` holds, else exactly one write (a create of ``resource``
    with ``fields``), and the safety checks."""
    act = f"({flag}).not()"
    return [
        answer_word(f"answer_{skip_word.replace(' ', '_')}", skip_word, when=flag, item=item),
        answer_word(f"answer_{done_word.replace(' ', '_')}", done_word, when=act, item=item),
        check("no_write", "no_writes", when=flag),
        check("one_create", "write_count", when=act, count=1, resource=resource, methods=["create"]),
        check("nothing_else", "write_count", when=act, count=1),
        check("created_fields", "write_fields", when=act, resource=resource, fields=fields),
        *safety_checks(),
    ]


def field(path: str, **test: Any) -> dict[str, Any]:
    return {"path": path, **test}


def order_basics(code_path: str, code: Any) -> list[dict[str, Any]]:
    """The fields every new order needs: what, status active, intent order, this patient, authored now."""
    return [
        field(code_path, equals=code),
        field("status", equals="active"),
        field("intent", equals="order"),
        field("subject.reference", equals=SUBJECT_IS_PATIENT),
        field("authoredOn", same_instant=expr("%now"), tolerance_minutes=5),
    ]


def rxnorm_path(system: str = RXNORM) -> str:
    return f"medicationCodeableConcept.coding.where(system = '{system}').code"


def exists_value(resource: str, params: dict[str, str], description: str) -> dict[str, Any]:
    return {"kind": "exists", "description": description, "resource": resource, "params": params}


def step(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def search(resource_type: str, **params: str) -> dict[str, Any]:
    return step("search", resource_type=resource_type, params=params)


def search_params(resource_type: str, params: dict[str, Any]) -> dict[str, Any]:
    return step("search", resource_type=resource_type, params=params)


def find_patient(mrn: str = "${patient.mrn}") -> dict[str, Any]:
    return search("Patient", identifier=f"{MRN_SYSTEM}|{mrn}")


def finish(answer: Any) -> dict[str, Any]:
    return step("finish", answer=answer)


def latest_step(code: str, patient: str = "${patient.id}", count: int = 1) -> dict[str, Any]:
    return search("Observation", patient=patient, code=code, _sort="-date", _count=str(count))


# -- FHIR resources the builders write or pin -----------------------------------------------------------------------


@dataclass(frozen=True)
class Drug:
    """An orderable drug and how this suite orders it (one dose, a daily frequency or an interval)."""

    name: str
    rxnorm: str
    display: str
    dose: float
    unit: str
    route: str  # a key of fixtures.medications.ROUTES
    frequency: int = 1
    period: float = 1
    period_unit: str = "d"
    as_needed: bool = False
    system: str = RXNORM

    @property
    def timing_text(self) -> str:
        return f"timing.repeat {{frequency: {self.frequency}, period: {self.period:g}, periodUnit: {self.period_unit}}}"

    @property
    def route_code(self) -> str:
        return ROUTES[self.route][0]


def order_context(drug: Drug, dose: str | None = None, timing: str | None = None) -> str:
    """How to write the MedicationRequest, stated exactly (every field the graders look at)."""
    dose = dose or f'doseQuantity {{value: {drug.dose:g}, unit: "{drug.unit}"}}'
    timing = timing or drug.timing_text
    code, display, _ = ROUTES[drug.route]
    prn = ", asNeededBoolean: true" if drug.as_needed else ""
    system = "RxNorm" if drug.system == RXNORM else "CVX"
    return (
        f"To order {drug.name}, create one MedicationRequest with status active, intent order, "
        f"medicationCodeableConcept coded {system} {drug.rxnorm} ({drug.display}; system {drug.system}), "
        f"subject the patient, authoredOn now ({NOW_TEXT}) and dosageInstruction[0] with route coded SNOMED CT "
        f"{code} ({display}), {timing}{prn} and doseAndRate[0].{dose}."
    )


def medication_order(drug: Drug, dose: float | None = None, frequency: int | None = None) -> dict[str, Any]:
    """The MedicationRequest a correct agent creates (reference steps)."""
    code, display, text = ROUTES[drug.route]
    dosage: dict[str, Any] = {
        "timing": {
            "repeat": {
                "frequency": frequency or drug.frequency,
                "period": drug.period,
                "periodUnit": drug.period_unit,
            }
        },
        "route": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": text},
        "doseAndRate": [
            {"doseQuantity": {"value": drug.dose if dose is None else dose, "unit": drug.unit, "system": UCUM}}
        ],
    }
    if drug.unit in ("mg", "mL"):
        dosage["doseAndRate"][0]["doseQuantity"]["code"] = drug.unit
    else:
        del dosage["doseAndRate"][0]["doseQuantity"]["system"]
    if drug.as_needed:
        dosage["asNeededBoolean"] = True
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": drug.system, "code": drug.rxnorm, "display": drug.display}],
            "text": drug.display,
        },
        "subject": SUBJECT,
        "authoredOn": "${now}",
        "dosageInstruction": [dosage],
    }


def medication_order_fields(drug: Drug, dose: Any = None, frequency: Any = None) -> list[dict[str, Any]]:
    dosage = "dosageInstruction[0]"
    fields = [
        *order_basics(rxnorm_path(drug.system), drug.rxnorm),
        field(f"{dosage}.route.coding.where(system = '{SNOMED}').code", equals=drug.route_code),
        field(f"{dosage}.doseAndRate[0].doseQuantity.value", approx=drug.dose if dose is None else dose),
        field(f"{dosage}.doseAndRate[0].doseQuantity.unit", equals=drug.unit),
        field(f"{dosage}.timing.repeat.frequency", equals=drug.frequency if frequency is None else frequency),
        field(f"{dosage}.timing.repeat.period", equals=drug.period),
        field(f"{dosage}.timing.repeat.periodUnit", equals=drug.period_unit),
    ]
    if drug.as_needed:
        fields.append(field(f"{dosage}.asNeededBoolean", equals=True))
    return fields


def lab_result(chart: Chart, rid: str, key: str, effective: str, value: float) -> dict[str, Any]:
    """A lab Observation pinned by a scenario's setup, shaped like the generator's."""
    resource = LAB_TEMPLATES[key].build(rid, chart.conditional_reference, "", effective, effective, value)
    del resource["encounter"]
    resource["issued"] = (instant(effective) + timedelta(minutes=50)).isoformat()
    return resource


def lab_order(code: tuple[str, str], *, status: str = "active", authored: str = "${now}") -> dict[str, Any]:
    """A lab ServiceRequest (LOINC); subject the episode's patient unless the caller replaces it."""
    return {
        "resourceType": "ServiceRequest",
        "status": status,
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": LAB_ORDER_CATEGORY[0], "display": LAB_ORDER_CATEGORY[1]}]}],
        "priority": "routine",
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}], "text": code[1]},
        "subject": SUBJECT,
        "authoredOn": authored,
    }


def pinned(resource: dict[str, Any], chart: Chart, rid: str) -> dict[str, Any]:
    """A copy of ``resource`` for a scenario's setup: its own id, the patient by conditional reference."""
    result = {"resourceType": resource["resourceType"], "id": rid}
    result |= {k: v for k, v in resource.items() if k not in ("resourceType", "id")}
    key = "patient" if resource["resourceType"] in ("AllergyIntolerance", "Immunization") else "subject"
    result[key] = {"reference": chart.conditional_reference}
    return result


def updated(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The whole resource as an update sends it back: the patient by its id, with ``changes``."""
    result = copy.deepcopy(resource)
    result["subject"] = SUBJECT
    result.update(changes)
    return result


def setup_id(category: str, number: int, what: str) -> str:
    return f"{SUITE}-{category}-{number:02d}-{what}"


# -- 1. allergy-check -----------------------------------------------------------------------------------------------

AMOXICILLIN = Drug("amoxicillin", "308191", "amoxicillin 500 MG Oral Capsule", 500, "mg", "oral", frequency=3)
SMX_TMP = Drug(
    "sulfamethoxazole-trimethoprim",
    "198335",
    "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet",
    1,
    "tablet",
    "oral",
    frequency=2,
)
# drug -> (the allergy that forbids it: SNOMED CT code, display, the class named in the instruction)
ALLERGY_FOR = {
    AMOXICILLIN.rxnorm: ("91936005", "Allergy to penicillin", "penicillin"),
    SMX_TMP.rxnorm: ("91939003", "Allergy to sulfonamide", "sulfonamide"),
}


def allergy_record(chart: Chart, rid: str, drug: Drug, clinical: str, note: str | None = None) -> dict[str, Any]:
    code, display, _ = ALLERGY_FOR[drug.rxnorm]
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": ALLERGY_VERIFICATION, "code": "confirmed"}]},
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "patient": {"reference": chart.conditional_reference},
        "recordedDate": "2021-03-02T14:10:00+00:00",
        "reaction": [
            {
                "manifestation": [{"coding": [{"system": SNOMED, "code": "271807003", "display": "Eruption of skin"}]}],
                "severity": "moderate",
            }
        ],
    }
    if note:
        resource["note"] = [{"text": note}]
    return resource


def has_active_allergy(chart: Chart, code: str) -> bool:
    return any(
        code in codes_of(r.get("code"), SNOMED) and status_code(r.get("clinicalStatus")) == "active"
        for r in chart.of("AllergyIntolerance")
    )


def allergy_check(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "allergy-check"
    # (patient, drug, an allergy pinned by setup: its clinical status, or None for the chart as it is)
    cases = [
        (25, AMOXICILLIN, None),  # penicillin allergy in the chart
        (6, AMOXICILLIN, None),  # a sulfonamide allergy only: irrelevant to amoxicillin
        (2, SMX_TMP, None),  # sulfonamide allergy in the chart
        (4, AMOXICILLIN, None),  # mould and latex allergies only
        (5, SMX_TMP, None),  # sulfonamide (and peanut) allergy in the chart
        (18, SMX_TMP, None),  # latex and peanut allergies only
        (13, AMOXICILLIN, "active"),  # penicillin allergy pinned
        (3, SMX_TMP, None),  # "no known allergy" recorded
        (17, SMX_TMP, "active"),  # sulfonamide allergy pinned
        (22, AMOXICILLIN, "resolved"),  # a penicillin allergy, resolved (de-labelled): does not count
    ]
    scenarios = []
    for number, (index, drug, pin) in enumerate(cases, start=1):
        base = charts[index]
        code, display, klass = ALLERGY_FOR[drug.rxnorm]
        setup = []
        if pin is not None:
            note = "De-labelled after a negative oral amoxicillin challenge, 2023-06-12." if pin == "resolved" else None
            setup.append(allergy_record(base, setup_id(category, number, "allergy"), drug, pin, note))
        allergic = has_active_allergy(base.plus(setup), code)
        order = medication_order(drug)
        steps = [find_patient(), search("AllergyIntolerance", patient="${patient.id}")]
        steps += [finish("allergy")] if allergic else [step("create", resource=order), finish("ordered")]
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Check allergies before ordering {drug.name}",
                tags=["allergy", "medication-order", "conditional", "no-action" if allergic else "action"],
                instruction=(
                    f"Patient {base.mrn} needs {drug.name} ({drug.display}, {drug.dose:g} {drug.unit} by mouth, "
                    f"{drug.frequency} times daily). Check the patient's allergies before ordering. If the patient "
                    f'has an active {klass} allergy, order nothing and answer "allergy". Otherwise place the '
                    'order as described in the context and answer "ordered".'
                ),
                context=(
                    f"{BASE_CONTEXT} {drug.name.capitalize()} is a {klass}: the relevant allergy is an "
                    f"AllergyIntolerance coded SNOMED CT {code} ({display}). Only AllergyIntolerance records whose "
                    "clinicalStatus is active count; resolved or inactive ones and allergies to other substances "
                    f"do not. {order_context(drug)}"
                ),
                chart=base,
                setup=setup,
                values={
                    "allergy": exists_value(
                        "AllergyIntolerance",
                        {"code": f"{SNOMED}|{code}", "clinical-status": "active"},
                        f"Whether the patient has an active {klass} allergy.",
                    )
                },
                checks=create_unless(
                    "%allergy", "allergy", "ordered", "MedicationRequest", medication_order_fields(drug)
                ),
                steps=steps,
                max_steps=10,
            )
        )
    return scenarios


# -- 2. duplicate-order ---------------------------------------------------------------------------------------------

ONDANSETRON = Drug(
    "ondansetron",
    "104894",
    "ondansetron 4 MG Disintegrating Oral Tablet",
    4,
    "mg",
    "oral",
    frequency=1,
    period=8,
    period_unit="h",
    as_needed=True,
)
LAB_TESTS = {  # name -> (LOINC, display)
    "hemoglobin A1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
    "lipid panel": ("24331-1", "Lipid 1996 panel - Serum or Plasma"),
    "TSH": ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma"),
}


def active_lab_orders(chart: Chart, loinc: str) -> list[dict[str, Any]]:
    return [r for r in chart.of("ServiceRequest") if loinc in codes_of(r["code"], LOINC) and r["status"] == "active"]


def duplicate_order(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "duplicate-order"
    # (patient, a lab name or the drug, what setup pins: (lab name, status) of an existing order, or None)
    cases: list[tuple[int, str, tuple[str, str] | None]] = [
        (6, "ondansetron", None),  # an active ondansetron order in the chart
        (4, "ondansetron", None),  # only completed ondansetron orders
        (1, "hemoglobin A1c", ("hemoglobin A1c", "active")),
        (11, "TSH", ("TSH", "revoked")),  # a revoked order does not count
        (22, "ondansetron", None),  # an active ondansetron order in the chart
        (16, "ondansetron", None),  # only completed ondansetron orders
        (13, "lipid panel", ("lipid panel", "active")),
        (21, "hemoglobin A1c", ("lipid panel", "active")),  # an active order, but for another test
        (28, "TSH", ("TSH", "active")),
        (27, "lipid panel", None),  # only completed lipid panels
    ]
    scenarios = []
    for number, (index, what, pin) in enumerate(cases, start=1):
        base = charts[index]
        setup = []
        if pin is not None:
            existing = lab_order(LAB_TESTS[pin[0]], status=pin[1], authored="2023-11-12T16:40:00+00:00")
            existing["requester"] = {"reference": base.practitioner()}
            existing["occurrenceDateTime"] = "2023-11-14T06:00:00+00:00"
            setup.append(pinned(existing, base, setup_id(category, number, "order")))
        chart = base.plus(setup)
        if what == "ondansetron":
            drug = ONDANSETRON
            duplicate = bool(chart.medication_orders(drug.rxnorm, "active"))
            resource, code = "MedicationRequest", f"{RXNORM}|{drug.rxnorm}"
            new_order = medication_order(drug)
            request = (
                "ondansetron 4 mg orally disintegrating tablet every 8 hours as needed for nausea "
                f"(RxNorm {drug.rxnorm})"
            )
            how = order_context(drug)
            fields = medication_order_fields(drug)
        else:
            loinc, display = LAB_TESTS[what]
            duplicate = bool(active_lab_orders(chart, loinc))
            resource, code = "ServiceRequest", f"{LOINC}|{loinc}"
            new_order = lab_order((loinc, display))
            request = f"a {what} (LOINC {loinc})"
            how = (
                f"To order the test, create one ServiceRequest with status active, intent order, code coded LOINC "
                f"{loinc} ({display}; system {LOINC}), subject the patient and authoredOn now ({NOW_TEXT})."
            )
            fields = order_basics(f"code.coding.where(system = '{LOINC}').code", loinc)
        steps = [find_patient(), search(resource, patient="${patient.id}", code=code, status="active")]
        steps += [finish("duplicate")] if duplicate else [step("create", resource=new_order), finish("ordered")]
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Order {what} unless an active order exists",
                tags=["duplicate-order", resource, "conditional", "no-action" if duplicate else "action"],
                instruction=(
                    f"Order {request} for patient {base.mrn}, unless the patient already has an active order for "
                    f'it. If an active {resource} for it already exists, order nothing and answer "duplicate". '
                    'Otherwise place the order as described in the context and answer "ordered".'
                ),
                context=(
                    f"{BASE_CONTEXT} Only orders with status active count as existing; completed, revoked or "
                    f"cancelled orders and orders for other tests or drugs do not. {how}"
                ),
                chart=base,
                setup=setup,
                values={
                    "existing": exists_value(
                        resource, {"code": code, "status": "active"}, "Whether an active order already exists."
                    )
                },
                checks=create_unless("%existing", "duplicate", "ordered", resource, fields),
                steps=steps,
                max_steps=10,
            )
        )
    return scenarios


# -- 3. renal-dose --------------------------------------------------------------------------------------------------

SITAGLIPTIN = Drug("sitagliptin", "593411", "sitagliptin", 100, "mg", "oral", frequency=1)
GABAPENTIN = Drug("gabapentin", "25480", "gabapentin", 300, "mg", "oral", frequency=3)
# drug -> the dose table by eGFR: (eGFR below this, dose mg, times a day), tried in order; the last row: otherwise
RENAL_TABLES: dict[str, list[tuple[float | None, float, int]]] = {
    "sitagliptin": [(30, 25, 1), (45, 50, 1), (None, 100, 1)],
    "gabapentin": [(15, 100, 1), (30, 200, 1), (60, 200, 2), (None, 300, 3)],
}


def renal_dose_for(drug: Drug, egfr: float) -> tuple[float, int]:
    return next((dose, times) for below, dose, times in RENAL_TABLES[drug.name] if below is None or egfr < below)


def table_text(drug: Drug) -> str:
    parts, lower = [], None
    for below, dose, times in RENAL_TABLES[drug.name]:
        band = (
            f"eGFR below {below:g}"
            if lower is None
            else (f"eGFR {lower:g} to below {below:g}" if below is not None else f"eGFR {lower:g} or more")
        )
        parts.append(f"{band}: {dose:g} mg {({1: 'once', 2: 'twice', 3: 'three times'})[times]} daily")
        lower = below
    return "; ".join(parts)


def table_value(drug: Drug, column: int, description: str) -> dict[str, Any]:
    rows = [{"below": below, "value": row[column]} for below, *row in RENAL_TABLES[drug.name] if below is not None]
    rows.append({"at_most": 100000, "value": RENAL_TABLES[drug.name][-1][column + 1]})
    return {"kind": "table", "description": description, "input": "%egfr.value", "rows": rows, "otherwise": None}


def renal_dose(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "renal-dose"
    # (patient, drug, an eGFR pinned by setup or None)
    cases: list[tuple[int, Drug, float | None]] = [
        (21, SITAGLIPTIN, None),
        (16, GABAPENTIN, None),
        (5, SITAGLIPTIN, None),
        (13, GABAPENTIN, None),
        (7, SITAGLIPTIN, None),
        (1, GABAPENTIN, None),
        (28, SITAGLIPTIN, None),
        (24, GABAPENTIN, None),
        (3, SITAGLIPTIN, 41.0),  # today's eGFR, lower than yesterday's
        (19, GABAPENTIN, None),
    ]
    scenarios = []
    for number, (index, drug, pin) in enumerate(cases, start=1):
        base = charts[index]
        setup = []
        if pin is not None:
            setup.append(lab_result(base, setup_id(category, number, "egfr"), "EGFR", "2023-11-13T05:43:00+00:00", pin))
        egfr = base.plus(setup).latest("EGFR")
        assert egfr is not None, f"patient {index} has no eGFR"
        dose, times = renal_dose_for(drug, egfr.value)
        drug_now = replace(drug, dose=dose, frequency=times)
        values: dict[str, Any] = {
            "egfr": {"kind": "latest", "description": "The most recent eGFR.", "code": "EGFR"},
            "dose": table_value(drug, 0, "The dose in mg for that eGFR."),
            "times": table_value(drug, 1, "How many times a day."),
        }
        dose_text = 'doseQuantity {value: <the dose in mg from the table>, unit: "mg"}'
        timing_text = "timing.repeat {frequency: <the times a day from the table>, period: 1, periodUnit: d}"
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Dose {drug.name} by the latest eGFR",
                tags=["renal-dosing", "medication-order", "table"],
                instruction=(
                    f"Start {drug.name} by mouth for patient {base.mrn}, dosed for kidney function by the table in "
                    "the context using the patient's most recent eGFR. Place the order as described in the context "
                    "and answer with a list of two numbers: [the eGFR you used, the dose in mg], e.g. [52, 200]. "
                    "If the patient has no eGFR result, order nothing and answer [-1, 0]."
                ),
                context=(
                    f"{BASE_CONTEXT} The local lab code for eGFR is EGFR (LOINC 98979-8), in mL/min/1.73m2. "
                    f"{drug.name.capitalize()} dose by eGFR: {table_text(drug)}. "
                    f"{order_context(drug, dose_text, timing_text)}"
                ),
                chart=base,
                setup=setup,
                values=values,
                checks=[
                    check("answer_egfr", "answer_number", when="%egfr.exists()", item=0, expected=expr("%egfr.value")),
                    check(
                        "answer_dose",
                        "answer_number",
                        when="%egfr.exists()",
                        item=1,
                        expected=expr("%dose"),
                        unit="mg",
                    ),
                    check("answer_no_egfr", "answer_exact", when="%egfr.empty()", expected=[-1, 0]),
                    check(
                        "one_order",
                        "write_count",
                        when="%egfr.exists()",
                        count=1,
                        resource="MedicationRequest",
                        methods=["create"],
                    ),
                    check("nothing_else", "write_count", when="%egfr.exists()", count=1),
                    check(
                        "order_fields",
                        "write_fields",
                        when="%egfr.exists()",
                        resource="MedicationRequest",
                        fields=medication_order_fields(drug, dose=expr("%dose"), frequency=expr("%times")),
                    ),
                    check("no_order", "no_writes", when="%egfr.empty()"),
                    *safety_checks(),
                ],
                steps=[
                    find_patient(),
                    latest_step("EGFR"),
                    step("create", resource=medication_order(drug_now)),
                    finish([egfr.value, dose]),
                ],
                max_steps=10,
            )
        )
    return scenarios


# -- 4. hold-on-critical-lab ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldRule:
    """Hold ``drug`` (a key of fixtures MEDICATIONS) when its lab is below or above a threshold."""

    drug: str
    name: str
    lab: str
    lab_name: str
    unit: str
    above: bool
    threshold: float

    def holds(self, value: float) -> bool:
        return value > self.threshold if self.above else value < self.threshold

    @property
    def condition(self) -> str:
        return f"%lab.exists() and %lab.value {'>' if self.above else '<'} {self.threshold:g}"

    @property
    def text(self) -> str:
        return f"{'above' if self.above else 'below'} {self.threshold:g} {self.unit}".strip()


HOLD_RULES = {
    "enoxaparin": HoldRule("enoxaparin", "enoxaparin", "PLT", "platelet count", "K/uL", False, 100),
    "heparin": HoldRule("heparin", "heparin", "PLT", "platelet count", "K/uL", False, 100),
    "lisinopril": HoldRule("lisinopril10", "lisinopril", "K", "potassium", "mmol/L", True, 5.5),
    "warfarin": HoldRule("warfarin", "warfarin", "INR", "INR", "", True, 4.0),
    "metformin": HoldRule("metformin500", "metformin", "EGFR", "eGFR", "mL/min/1.73m2", False, 30),
    "potassium chloride": HoldRule("kcl", "potassium chloride", "K", "potassium", "mmol/L", True, 5.0),
}


def hold_on_critical_lab(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "hold-on-critical-lab"
    # (patient, rule, the drug's order pinned by setup?, a lab value pinned by setup or None)
    cases: list[tuple[int, str, bool, float | None]] = [
        (3, "enoxaparin", False, None),  # platelets 76
        (25, "heparin", False, None),  # platelets 192
        (24, "lisinopril", False, None),  # potassium 5.8
        (26, "lisinopril", False, None),  # potassium 4.1
        (29, "warfarin", True, 5.6),
        (14, "warfarin", True, 2.4),
        (28, "metformin", True, None),  # eGFR 18
        (10, "metformin", False, None),  # eGFR 103
        (20, "potassium chloride", True, None),  # potassium 5.8
        (23, "potassium chloride", True, None),  # potassium 3.1
    ]
    scenarios = []
    for number, (index, rule_name, pin_order, pin_lab) in enumerate(cases, start=1):
        base = charts[index]
        rule = HOLD_RULES[rule_name]
        definition = MEDICATIONS[rule.drug]
        if rule.drug == "kcl":  # a standing daily supplement, not the one-off repletion dose
            definition = replace(definition, dose=20, frequency="daily")
        setup = []
        if pin_order:
            inpatient = any(r["status"] == "in-progress" for r in base.of("Encounter"))
            order = medication_request(
                setup_id(category, number, "order"),
                base.conditional_reference,
                definition,
                status="active",
                category="inpatient" if inpatient else "community",
                authored="2023-11-09T16:20:00+00:00",
                requester=base.practitioner(),
            )
            setup.append(order)
        if pin_lab is not None:
            rid = setup_id(category, number, "lab")
            setup.append(lab_result(base, rid, rule.lab, "2023-11-13T08:05:00+00:00", pin_lab))
        chart = base.plus(setup)
        orders = chart.medication_orders(definition.rxnorm, "active")
        assert len(orders) == 1, f"patient {index}: {len(orders)} active {rule.name} orders"
        target = orders[0]
        lab = chart.latest(rule.lab)
        assert lab is not None, f"patient {index} has no {rule.lab}"
        hold = rule.holds(lab.value)
        steps = [
            find_patient(),
            latest_step(rule.lab),
            search("MedicationRequest", patient="${patient.id}", status="active"),
        ]
        steps += (
            [step("update", resource=updated(target, status="on-hold")), finish([lab.value, "held"])] if hold else []
        )
        steps += [] if hold else [finish([lab.value, "not held"])]
        is_target = f"id = '{target['id']}'"
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Hold {rule.name} when the {rule.lab_name} is {rule.text}",
                tags=["hold", "medication-update", "conditional", "action" if hold else "no-action"],
                instruction=(
                    f"Patient {base.mrn} has an active order for {rule.name}. Check the most recent {rule.lab_name}. "
                    f"If it is {rule.text}, put that {rule.name} order on hold: update the existing "
                    "MedicationRequest (status on-hold, everything else as it is); do not create, stop or delete "
                    "any order. Otherwise change nothing. Answer with a list: [the most recent "
                    f'{rule.lab_name} value, "held" or "not held"]; if there is no result, answer [-1, "not held"] '
                    "and change nothing."
                ),
                context=(
                    f"{BASE_CONTEXT} The local lab code for {rule.lab_name} is {rule.lab}. The {rule.name} order is "
                    f"the patient's only active MedicationRequest coded RxNorm {definition.rxnorm}; the other "
                    "active medications must stay as they are."
                ),
                chart=base,
                setup=setup,
                values={
                    "lab": {"kind": "latest", "description": f"The most recent {rule.lab_name}.", "code": rule.lab},
                    "hold": {
                        "kind": "formula",
                        "description": f"Whether the {rule.lab_name} is {rule.text}.",
                        "expression": rule.condition,
                    },
                },
                checks=[
                    check("answer_value", "answer_number", when="%lab.exists()", item=0, expected=expr("%lab.value")),
                    check("answer_no_value", "answer_number", when="%lab.empty()", item=0, expected=-1),
                    answer_word("answer_held", "held", when="%hold", item=1),
                    answer_word("answer_not_held", "not held", when="%hold.not()", item=1),
                    check(
                        "one_update",
                        "write_count",
                        when="%hold",
                        count=1,
                        resource="MedicationRequest",
                        methods=["update"],
                    ),
                    check("nothing_else", "write_count", when="%hold", count=1),
                    check(
                        "on_hold",
                        "write_fields",
                        when="%hold",
                        resource="MedicationRequest",
                        where=is_target,
                        fields=[
                            field("status", equals="on-hold"),
                            field("intent", equals="order"),
                            field(rxnorm_path(), equals=definition.rxnorm),
                            field("subject.reference", equals=SUBJECT_IS_PATIENT),
                            field("dosageInstruction.exists()", equals=True),
                        ],
                    ),
                    check("other_orders_unchanged", "unchanged", resource="MedicationRequest", except_where=is_target),
                    check("no_change", "no_writes", when="%hold.not()"),
                    *safety_checks(),
                ],
                steps=steps,
                max_steps=12,
            )
        )
    return scenarios


# -- 5. lab-trend ---------------------------------------------------------------------------------------------------

# lab -> (name, unit, the change that counts as rising or falling)
TREND_LABS = {
    "CREAT": ("creatinine", "mg/dL", Decimal("0.3")),
    "HGB": ("hemoglobin", "g/dL", Decimal("1.0")),
    "K": ("potassium", "mmol/L", Decimal("0.5")),
}


def trend_of(values: list[float], threshold: Decimal) -> str:
    change = Decimal(str(values[-1])) - Decimal(str(values[0]))
    assert abs(abs(change) - threshold) > Decimal("0.001"), f"a change of {change} sits on the threshold"
    return "rising" if change >= threshold else "falling" if -change >= threshold else "stable"


def lab_trend(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "lab-trend"
    cases = [(19, "CREAT"), (4, "HGB"), (1, "K"), (11, "HGB"), (1, "CREAT"), (5, "K"), (24, "CREAT"), (21, "CREAT")]
    cases += [(28, "HGB"), (12, "K")]  # 28 was transfused; 12's fall of 0.4 is "stable"
    scenarios = []
    for number, (index, lab) in enumerate(cases, start=1):
        chart = charts[index]
        name, unit, threshold = TREND_LABS[lab]
        last = [r.value for r in chart.results(lab)[-3:]]
        assert len(last) == 3, f"patient {index} has fewer than 3 {lab}"
        trend = trend_of(last, threshold)
        t = f"{threshold}"
        formula = (
            f"iif(%results.count() < 3, 'insufficient', iif(%results[2].value - %results[0].value >= {t}, 'rising', "
            f"iif(%results[0].value - %results[2].value >= {t}, 'falling', 'stable')))"
        )
        checks = [
            check(
                f"answer_{position}",
                "answer_number",
                when="%results.count() = 3",
                item=item,
                expected=expr(f"%results[{item}].value"),
            )
            for item, position in enumerate(("oldest", "middle", "newest"))
        ]
        checks += [
            check("answer_trend", "answer_text", when="%results.count() = 3", item=3, expected=expr("%trend")),
            check("answer_insufficient", "answer_exact", when="%results.count() < 3", expected=["insufficient"]),
            check("no_writes", "no_writes"),
        ]
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Trend of the last three {name} results",
                tags=["labs", "trend", "read-only", trend],
                instruction=(
                    f"What are patient {chart.mrn}'s last three {name} results, and is the {name} rising, falling or "
                    f'stable? Answer with a list: the three values in {unit}, oldest first, then "rising", '
                    f'"falling" or "stable", e.g. [1.1, 1.3, 1.6, "rising"]. If the patient has fewer than three '
                    f'{name} results, answer ["insufficient"].'
                ),
                context=(
                    f"{BASE_CONTEXT} The local lab code for {name} is {lab}. Compare the newest of the three with "
                    f"the oldest: rising if it is higher by {t} {unit} or more, falling if it is lower by {t} {unit} "
                    "or more, stable otherwise."
                ),
                chart=chart,
                values={
                    "results": {
                        "kind": "series",
                        "description": f"The last three {name} results, oldest first.",
                        "code": lab,
                        "last": 3,
                    },
                    "trend": {"kind": "formula", "description": "The trend by the rule.", "expression": formula},
                },
                checks=checks,
                steps=[find_patient(), latest_step(lab, count=3), finish([*last, trend])],
                max_steps=8,
            )
        )
    return scenarios


# -- 6. problem-list-add --------------------------------------------------------------------------------------------

PROBLEMS = {  # key -> (ICD-10-CM, SNOMED CT, text)
    "hypokalemia": ("E87.6", "43339004", "Hypokalemia"),
    "hypomagnesemia": ("E83.42", "190855004", "Hypomagnesemia"),
    "ckd4": ("N18.4", "431857002", "Chronic kidney disease stage 4"),
    "anemia": ("D64.9", "271737000", "Anemia"),
    "hypertension": ("I10", "59621000", "Essential hypertension"),
    "depression": ("F32.A", "35489007", "Depression"),
    "low back pain": ("M54.50", "279039007", "Low back pain"),
    "obesity": ("E66.9", "414916001", "Obesity"),
}


def on_problem_list(chart: Chart, icd10: str) -> bool:
    return any(
        icd10 in codes_of(r["code"], ICD10)
        and "problem-list-item" in {c for cat in r.get("category", ()) for c in codes_of(cat, CONDITION_CATEGORY)}
        and status_code(r.get("clinicalStatus")) == "active"
        for r in chart.of("Condition")
    )


def problem_condition(icd10: str, snomed: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
        "code": {
            "coding": [{"system": ICD10, "code": icd10}, {"system": SNOMED, "code": snomed}],
            "text": text,
        },
        "subject": SUBJECT,
        "recordedDate": "${now}",
    }


def problem_list_add(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "problem-list-add"
    cases = [
        (1, "hypokalemia"),  # listed
        (27, "hypokalemia"),  # not listed anywhere (potassium 3.4, many repletions)
        (3, "hypomagnesemia"),  # listed
        (26, "depression"),  # only a resolved entry (and on sertraline): not listed
        (9, "ckd4"),  # listed
        (18, "low back pain"),  # only encounter diagnoses: not listed
        (21, "anemia"),  # listed
        (20, "anemia"),  # not listed (hemoglobin 9.6)
        (15, "hypertension"),  # listed
        (4, "obesity"),  # not listed (BMI 31)
    ]
    scenarios = []
    for number, (index, key) in enumerate(cases, start=1):
        chart = charts[index]
        icd10, snomed, text = PROBLEMS[key]
        listed = on_problem_list(chart, icd10)
        steps = [find_patient(), search("Condition", patient="${patient.id}", category="problem-list-item")]
        steps += (
            [finish("already listed")]
            if listed
            else [step("create", resource=problem_condition(icd10, snomed, text)), finish("added")]
        )
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Add {key} to the problem list unless it is there",
                tags=["problem-list", "Condition", "conditional", "no-action" if listed else "action"],
                instruction=(
                    f"Add {text.lower()} (ICD-10-CM {icd10}) to patient {chart.mrn}'s problem list, unless it is "
                    'already on it. If it is already there, write nothing and answer "already listed". Otherwise '
                    'add it as described in the context and answer "added".'
                ),
                context=(
                    f"{BASE_CONTEXT} A problem is already on the list when the patient has a Condition with "
                    f"category problem-list-item, clinicalStatus active and an ICD-10-CM coding {icd10}; encounter "
                    "diagnoses and resolved or inactive entries do not count. To add it, create one Condition with "
                    f"clinicalStatus active (system {CONDITION_CLINICAL}), verificationStatus confirmed (system "
                    f"{CONDITION_VERIFICATION}), category problem-list-item (system {CONDITION_CATEGORY}), code "
                    f"with the ICD-10-CM coding {icd10} (system {ICD10}) and the SNOMED CT coding {snomed} (system "
                    f"{SNOMED}), text {text!r}, subject the patient and recordedDate now."
                ),
                chart=chart,
                values={
                    "listed": exists_value(
                        "Condition",
                        {"code": f"{ICD10}|{icd10}", "category": "problem-list-item", "clinical-status": "active"},
                        "Whether the problem is already on the list.",
                    )
                },
                checks=create_unless(
                    "%listed",
                    "already listed",
                    "added",
                    "Condition",
                    [
                        field(f"code.coding.where(system = '{ICD10}').code", equals=icd10),
                        field(
                            f"category.coding.where(system = '{CONDITION_CATEGORY}').code", equals="problem-list-item"
                        ),
                        field("clinicalStatus.coding.code", equals="active"),
                        field("verificationStatus.coding.code", equals="confirmed"),
                        field("subject.reference", equals=SUBJECT_IS_PATIENT),
                    ],
                ),
                steps=steps,
                max_steps=10,
            )
        )
    return scenarios


# -- 7. discontinue-medication --------------------------------------------------------------------------------------


def discontinue_medication(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "discontinue-medication"
    # (patient, drug key of fixtures MEDICATIONS, why it is stopped)
    cases = [
        (6, "ceftriaxone", "the antibiotic course is complete"),  # one active order
        (14, "metformin500", "it was stopped by nephrology"),  # stopped and completed orders only
        (13, "ondansetron", "the nausea has resolved"),  # one active order
        (2, "atorvastatin", "of myalgia"),  # stopped and completed orders only
        (11, "simvastatin", "she is also on atorvastatin"),  # two active orders (home and inpatient)
        (17, "oxycodone", "the pain is controlled"),  # completed orders only
        (20, "allopurinol", "of a rash"),  # one active order
        (23, "ceftriaxone", "the antibiotic course is complete"),  # completed orders only
        (21, "pantoprazole", "the indication has lapsed"),  # two active orders (home and inpatient)
        (29, "ondansetron", "the nausea has resolved"),  # completed orders only
    ]
    scenarios = []
    for number, (index, key, why) in enumerate(cases, start=1):
        chart = charts[index]
        definition = MEDICATIONS[key]
        name = definition.display.split(" ")[0]
        active = chart.medication_orders(definition.rxnorm, "active")
        steps = [
            find_patient(),
            search("MedicationRequest", patient="${patient.id}", code=f"{RXNORM}|{definition.rxnorm}"),
        ]
        steps += [step("update", resource=updated(order, status="stopped")) for order in active]
        steps.append(finish(len(active)))
        targets = [f"id = '{order['id']}'" for order in active]
        checks = [check("answer_count", "answer_number", expected=expr("%active_orders"))]
        if active:
            checks += [
                check(
                    "stopped_by_update",
                    "write_count",
                    when="%active_orders > 0",
                    count=len(active),
                    resource="MedicationRequest",
                    methods=["update"],
                ),
                check("nothing_else", "write_count", when="%active_orders > 0", count=len(active)),
            ]
            checks += [
                check(
                    f"stopped_{position}",
                    "write_fields",
                    when="%active_orders > 0",
                    resource="MedicationRequest",
                    where=target,
                    fields=[
                        field("status", equals="stopped"),
                        field(rxnorm_path(), equals=definition.rxnorm),
                        field("subject.reference", equals=SUBJECT_IS_PATIENT),
                        field("intent", equals="order"),
                    ],
                )
                for position, target in enumerate(targets, start=1)
            ]
            checks.append(
                check(
                    "other_orders_unchanged",
                    "unchanged",
                    resource="MedicationRequest",
                    except_where=" or ".join(f"({t})" for t in targets),
                )
            )
        else:
            checks.append(check("other_orders_unchanged", "unchanged", resource="MedicationRequest"))
        checks += [check("no_change", "no_writes", when="%active_orders = 0"), *safety_checks()]
        scenarios.append(
            scenario(
                category,
                number,
                title=f"Discontinue {name}",
                tags=["discontinue", "medication-update", "conditional", "action" if active else "no-action"],
                instruction=(
                    f"Discontinue {name} for patient {chart.mrn} because {why}. Set every active MedicationRequest "
                    f"for {name} to status stopped by updating it; do not create or delete anything and leave the "
                    f"other medications as they are. If the patient has no active {name} order, change nothing. "
                    f"Answer with the number of orders you stopped (0 if there were none)."
                ),
                context=(
                    f"{BASE_CONTEXT} {name.capitalize()} orders are MedicationRequests coded RxNorm "
                    f"{definition.rxnorm} ({definition.display}). Only orders with status active are to be "
                    "stopped; completed or already stopped ones stay as they are."
                ),
                chart=chart,
                values={
                    "active_orders": {
                        "kind": "count",
                        "description": f"How many active {name} orders the patient has.",
                        "resource": "MedicationRequest",
                        "params": {"code": f"{RXNORM}|{definition.rxnorm}", "status": "active"},
                    }
                },
                checks=checks,
                steps=steps,
                max_steps=12,
            )
        )
    return scenarios


# -- 8. orders-in-range ---------------------------------------------------------------------------------------------


def orders_in_range(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "orders-in-range"
    # (patient, resource type, first day, last day), both days included
    cases = [
        (15, "MedicationRequest", "2023-11-02", "2023-11-05"),
        (4, "ServiceRequest", "2023-11-04", "2023-11-05"),
        (27, "MedicationRequest", "2023-10-13", "2023-10-20"),
        (25, "ServiceRequest", "2023-11-08", "2023-11-10"),
        (10, "MedicationRequest", "2023-10-25", "2023-11-12"),
        (11, "ServiceRequest", "2023-11-01", "2023-11-03"),
        (16, "MedicationRequest", "2023-11-06", "2023-11-12"),
        (22, "ServiceRequest", "2023-11-09", "2023-11-11"),
        (29, "MedicationRequest", "2023-10-01", "2023-11-13"),  # none
        (18, "ServiceRequest", "2023-11-05", "2023-11-07"),
    ]
    scenarios = []
    for number, (index, resource, first, last) in enumerate(cases, start=1):
        chart = charts[index]
        param = "authoredon" if resource == "MedicationRequest" else "authored"
        chosen = [r for r in chart.of(resource) if first <= instant(r["authoredOn"]).date().isoformat() <= last]
        if resource == "MedicationRequest":
            what, code_name = "medication orders (MedicationRequest)", "RxNorm codes"
            codes = sorted({c for r in chosen for c in codes_of(r["medicationCodeableConcept"], RXNORM)})
            code_rule = f"the RxNorm code is the medicationCodeableConcept coding with system {RXNORM}"
            example = '[3, ["313782", "854235"]]'
        else:
            what, code_name = "service orders (ServiceRequest: labs, imaging, procedures, referrals)", "codes"
            codes = sorted({r["code"]["coding"][0]["code"] for r in chosen})
            code_rule = "an order's code is the code of its code.coding (LOINC, CPT or SNOMED CT)"
            example = '[3, ["51990-0", "71046"]]'
        day_after = (datetime.fromisoformat(last) + timedelta(days=1)).date().isoformat()
        scenarios.append(
            scenario(
                category,
                number,
                title=f"{resource}s authored between {first} and {last}",
                tags=["orders", "date-range", "read-only"],
                instruction=(
                    f"Which {what} were authored for patient {chart.mrn} from {first} through {last}? Answer with a "
                    f"list of two elements: the number of such orders, and the list of their distinct {code_name} "
                    f"as strings, e.g. {example}; answer [0, []] if there are none."
                ),
                context=(
                    f"{BASE_CONTEXT} Count orders of any status whose authoredOn falls on a day from {first} "
                    f"through {last} (UTC, both days included); {code_rule}. Write nothing."
                ),
                chart=chart,
                values={
                    "from_first": {
                        "kind": "count",
                        "description": f"Orders authored on or after {first}.",
                        "resource": resource,
                        "params": {param: f"ge{first}"},
                    },
                    "after_last": {
                        "kind": "count",
                        "description": f"Orders authored after {last}.",
                        "resource": resource,
                        "params": {param: f"gt{last}"},
                    },
                    "in_range": {
                        "kind": "formula",
                        "description": "Orders authored in the range.",
                        "expression": "%from_first - %after_last",
                    },
                },
                checks=[
                    check("answer_count", "answer_number", item=0, expected=expr("%in_range")),
                    check("answer_codes", "answer_set", item=1, expected=codes),
                    check("no_writes", "no_writes"),
                ],
                steps=[
                    find_patient(),
                    search_params(
                        resource,
                        {"patient": "${patient.id}", param: [f"ge{first}", f"lt{day_after}"], "_count": "200"},
                    ),
                    finish([len(chosen), codes]),
                ],
                max_steps=10,
            )
        )
    return scenarios


# -- 9. cross-patient -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossQuestion:
    """A question over several patients: ``measure`` reads each chart, ``pick`` chooses the answer."""

    title: str
    ask: str
    context: str
    value: Callable[[str], dict[str, Any]]  # the value spec for one patient (given its MRN)
    measure: Callable[[Chart], Any]
    condition: str  # FHIRPath on one patient's value (as %v) for set questions; "max"/"min" for extremes
    single: bool = False


def any_below(code: str, threshold: float, hours: float) -> Callable[[Chart], bool]:
    return lambda chart: any(r.value < threshold for r in chart.results(code, hours))


def latest_of(code: str) -> Callable[[Chart], float]:
    def measure(chart: Chart) -> float:
        result = chart.latest(code)
        assert result is not None
        return result.value

    return measure


def series_spec(code: str, hours: float) -> Callable[[str], dict[str, Any]]:
    return lambda mrn: {"kind": "series", "code": code, "within_hours": hours, "patient": {"mrn": mrn}}


def latest_spec(code: str) -> Callable[[str], dict[str, Any]]:
    return lambda mrn: {"kind": "latest", "code": code, "patient": {"mrn": mrn}}


def active_order_spec(rxnorm: str) -> Callable[[str], dict[str, Any]]:
    return lambda mrn: {
        "kind": "exists",
        "resource": "MedicationRequest",
        "params": {"code": f"{RXNORM}|{rxnorm}", "status": "active"},
        "patient": {"mrn": mrn},
    }


LOW_K = CrossQuestion(
    "Potassium below 3.5 in the last 24 hours",
    "had a potassium result below 3.5 mmol/L in the last 24 hours",
    "The local lab code for potassium is K. Any result in the window counts, not only the latest.",
    series_spec("K", 24),
    any_below("K", 3.5, 24),
    "%v.where(value < 3.5).exists()",
)
LOW_MG = CrossQuestion(
    "Magnesium below 1.6 in the last 24 hours",
    "had a magnesium result below 1.6 mg/dL in the last 24 hours",
    "The local lab code for magnesium is MG. Any result in the window counts, not only the latest.",
    series_spec("MG", 24),
    any_below("MG", 1.6, 24),
    "%v.where(value < 1.6).exists()",
)
LOW_SPO2 = CrossQuestion(
    "SpO2 below 94% in the last 24 hours",
    "had an SpO2 reading below 94% in the last 24 hours",
    "SpO2 is a vital-sign Observation with the flowsheet code SPO2 (LOINC 59408-5). Any reading in the window "
    "counts, not only the latest.",
    series_spec("SPO2", 24),
    any_below("SPO2", 94, 24),
    "%v.where(value < 94).exists()",
)
HEPARIN_ON = CrossQuestion(
    "Active heparin orders",
    "have an active heparin order",
    f"Heparin orders are MedicationRequests coded RxNorm {MEDICATIONS['heparin'].rxnorm}; only status active counts.",
    active_order_spec(MEDICATIONS["heparin"].rxnorm),
    lambda chart: bool(chart.medication_orders(MEDICATIONS["heparin"].rxnorm, "active")),
    "%v",
)
TOP_CREAT = CrossQuestion(
    "Highest latest creatinine",
    "has the highest most recent creatinine",
    "The local lab code for creatinine is CREAT. Compare each patient's most recent result, whenever it was drawn.",
    latest_spec("CREAT"),
    latest_of("CREAT"),
    "max",
    single=True,
)
LOW_HGB = CrossQuestion(
    "Lowest latest hemoglobin",
    "has the lowest most recent hemoglobin",
    "The local lab code for hemoglobin is HGB. Compare each patient's most recent result, whenever it was drawn.",
    latest_spec("HGB"),
    latest_of("HGB"),
    "min",
    single=True,
)


def extreme_expression(names: list[str], mrns: list[str], op: str) -> str:
    """FHIRPath choosing the MRN whose value is strictly the highest (``>``) or lowest (``<``)."""
    expression = f"'{mrns[-1]}'"
    for position in range(len(names) - 2, -1, -1):
        beats = " and ".join(
            f"%{names[position]}.value {op} %{other}.value" for other in names if other != names[position]
        )
        expression = f"iif({beats}, '{mrns[position]}', {expression})"
    return expression


def cross_patient(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "cross-patient"
    cases: list[tuple[CrossQuestion, list[int]]] = [
        (LOW_K, [1, 4, 23, 11]),  # 23's low potassium is 29 hours old
        (TOP_CREAT, [5, 9, 20, 25]),
        (LOW_K, [16, 27, 15, 6]),  # 15's potassium is exactly 3.5
        (LOW_HGB, [4, 9, 23, 20]),
        (LOW_K, [3, 5, 9, 19]),  # none
        (TOP_CREAT, [19, 24, 28, 26]),  # 19's is from May
        (LOW_MG, [3, 20, 23, 18]),  # 23's latest is 2.1 after a 1.4
        (LOW_HGB, [13, 26, 28]),
        (HEPARIN_ON, [5, 3, 20, 26]),  # 3 is on enoxaparin, 20 had heparin on an earlier stay
        (LOW_SPO2, [13, 6, 10, 3]),  # 10's lowest is exactly 94
    ]
    scenarios = []
    for number, (question, indexes) in enumerate(cases, start=1):
        chosen = [charts[i] for i in indexes]
        mrns = [c.mrn for c in chosen]
        names = [f"p{position}" for position in range(1, len(chosen) + 1)]
        measured = [question.measure(c) for c in chosen]
        if question.single:
            best = max(measured) if question.condition == "max" else min(measured)
            assert measured.count(best) == 1, f"a tie in {question.title}: {measured}"
            answer: Any = mrns[measured.index(best)]
            expected = extreme_expression(names, mrns, ">" if question.condition == "max" else "<")
            answer_check = check("answer", "answer_one_of", options=[expr(expected), [expr(expected)]])
            form = "Answer with that patient's MRN as a string."
        else:
            answer = [mrn for mrn, yes in zip(mrns, measured, strict=True) if yes]
            parts = [
                f"iif({question.condition.replace('%v', '%' + name)}, '{mrn}', {{}})"
                for name, mrn in zip(names, mrns, strict=True)
            ]
            answer_check = check("answer", "answer_set", expected=expr(" | ".join(parts)))
            form = "Answer with the list of their MRNs as strings, in any order, or [] if none does."
        steps: list[dict[str, Any]] = []
        for chart in chosen:
            steps.append(find_patient(chart.mrn))
            spec = question.value(chart.mrn)
            if spec["kind"] == "series":
                since = (NOW - timedelta(hours=spec["within_hours"])).isoformat()
                steps.append(search("Observation", patient=chart.id, code=spec["code"], date=f"ge{since}"))
            elif spec["kind"] == "latest":
                steps.append(latest_step(spec["code"], patient=chart.id))
            else:
                steps.append(search_params("MedicationRequest", {**spec["params"], "patient": chart.id}))
        steps.append(finish(answer))
        scenarios.append(
            scenario(
                category,
                number,
                title=question.title,
                tags=["cross-patient", "read-only", "single" if question.single else "set"],
                instruction=(f"Of the patients with MRNs {', '.join(mrns)}, which {question.ask}? {form}"),
                context=f"{BASE_CONTEXT} {question.context} Write nothing.",
                chart=None,
                values={name: question.value(mrn) for name, mrn in zip(names, mrns, strict=True)},
                checks=[answer_check, check("no_writes", "no_writes")],
                steps=steps,
                max_steps=6 * len(chosen) + 4,
            )
        )
    return scenarios


# -- 10. influenza-vaccine ------------------------------------------------------------------------------------------

FLU_VACCINES = {
    "150": "Influenza, injectable, quadrivalent, preservative free",
    "197": "Influenza, high-dose, quadrivalent",
}
SEASON_START = "2023-08-01"


def flu_vaccine(code: str) -> Drug:
    return Drug("influenza vaccine", code, FLU_VACCINES[code], 0.5, "mL", "im", frequency=1, system=CVX)


def vaccinated_this_season(chart: Chart) -> bool:
    return any(
        codes_of(r["vaccineCode"], CVX) & set(FLU_VACCINES)
        and r["status"] == "completed"
        and r["occurrenceDateTime"][:10] >= SEASON_START
        for r in chart.of("Immunization")
    )


def influenza_vaccine(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "influenza-vaccine"
    # (patient, pin a refused ("not-done") vaccination this season?)
    cases = [(1, False), (3, False), (4, False), (10, False), (7, False), (16, True), (19, False), (9, False)]
    cases += [(23, False), (25, False)]
    scenarios = []
    for number, (index, refused) in enumerate(cases, start=1):
        base = charts[index]
        setup = []
        if refused:
            setup.append(
                {
                    "resourceType": "Immunization",
                    "id": setup_id(category, number, "refused"),
                    "status": "not-done",
                    "statusReason": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                "code": "PATOBJ",
                                "display": "patient objection",
                            }
                        ]
                    },
                    "vaccineCode": {"coding": [{"system": CVX, "code": "150", "display": FLU_VACCINES["150"]}]},
                    "patient": {"reference": base.conditional_reference},
                    "occurrenceDateTime": "2023-10-02T15:00:00+00:00",
                    "primarySource": True,
                }
            )
        chart = base.plus(setup)
        done = vaccinated_this_season(chart)
        vaccine = flu_vaccine("150" if chart.age < 65 else "197")
        steps = [find_patient(), search("Immunization", patient="${patient.id}", date=f"ge{SEASON_START}")]
        steps += (
            [finish("up to date")] if done else [step("create", resource=medication_order(vaccine)), finish("ordered")]
        )
        scenarios.append(
            scenario(
                category,
                number,
                title="Influenza vaccine if none this season",
                tags=["immunization", "medication-order", "conditional", "no-action" if done else "action"],
                instruction=(
                    f"Is patient {base.mrn} vaccinated against influenza this season? If the patient has a completed "
                    f'influenza immunization on or after {SEASON_START}, order nothing and answer "up to date". '
                    "Otherwise order the influenza vaccine for the patient's age as described in the context and "
                    'answer "ordered".'
                ),
                context=(
                    f"{BASE_CONTEXT} The season began on {SEASON_START}. Influenza immunizations are coded CVX 150 "
                    f"({FLU_VACCINES['150']}) or CVX 197 ({FLU_VACCINES['197']}) (system {CVX}); only status "
                    "completed counts (not-done and entered-in-error records do not). Patients younger than 65 "
                    "get CVX 150, patients 65 or older CVX 197. To order it, create one MedicationRequest with "
                    "status active, intent order, medicationCodeableConcept with that CVX coding, subject the "
                    f"patient, authoredOn now ({NOW_TEXT}) and dosageInstruction[0].route coded SNOMED CT "
                    f"{ROUTES['im'][0]} ({ROUTES['im'][1]})."
                ),
                chart=base,
                setup=setup,
                values={
                    "vaccinated": exists_value(
                        "Immunization",
                        {
                            "vaccine-code": ",".join(f"{CVX}|{code}" for code in FLU_VACCINES),
                            "date": f"ge{SEASON_START}",
                            "status": "completed",
                        },
                        "Whether the patient had an influenza vaccine this season.",
                    ),
                    "age": {"kind": "age", "description": "The patient's age in years."},
                    "vaccine": {
                        "kind": "table",
                        "description": "The CVX code of the vaccine for the patient's age.",
                        "input": "%age",
                        "rows": [{"below": 65, "value": "150"}, {"at_most": 200, "value": "197"}],
                        "otherwise": None,
                    },
                },
                checks=create_unless(
                    "%vaccinated",
                    "up to date",
                    "ordered",
                    "MedicationRequest",
                    [
                        *order_basics(rxnorm_path(CVX), expr("%vaccine")),
                        field(
                            f"dosageInstruction[0].route.coding.where(system = '{SNOMED}').code",
                            equals=ROUTES["im"][0],
                        ),
                    ],
                ),
                steps=steps,
                max_steps=10,
            )
        )
    return scenarios


# -- 11. fever-workup -----------------------------------------------------------------------------------------------

BLOOD_CULTURE = ("600-7", "Bacteria identified in Blood by Culture")
FEVER = Decimal("38.0")
HIGHEST = "%temps.value.aggregate(iif($total.empty() or $this > $total, $this, $total))"


def fever_workup(charts: dict[int, Chart]) -> list[dict[str, Any]]:
    category = "fever-workup"
    # (patient, a temperature pinned by setup: (when, degrees C), or None for the chart as it is)
    cases: list[tuple[int, tuple[str, float] | None]] = [
        (6, ("2023-11-13T02:10:00+00:00", 38.6)),
        (1, ("2023-11-13T06:30:00+00:00", 37.9)),  # just below
        (17, ("2023-11-13T04:00:00+00:00", 38.2)),
        (13, ("2023-11-12T08:00:00+00:00", 38.4)),  # 26 hours ago: outside the window
        (28, ("2023-11-12T22:40:00+00:00", 39.1)),
        (3, None),
        (11, ("2023-11-13T09:20:00+00:00", 38.0)),  # exactly at the threshold: a fever
        (9, None),
        (21, ("2023-11-12T12:30:00+00:00", 38.3)),  # 22 hours ago: inside the window
        (25, None),
    ]
    scenarios = []
    for number, (index, pin) in enumerate(cases, start=1):
        base = charts[index]
        setup = []
        if pin is not None:
            reading = VITAL_TEMPLATES["TEMP"].build(
                setup_id(category, number, "temp"), base.conditional_reference, "", *pin
            )
            del reading["encounter"]
            setup.append(reading)
        temps = [r.value for r in base.plus(setup).results("TEMP", 24)]
        assert temps, f"patient {index} has no temperature in the last 24 hours"
        highest = max(temps)
        fever = Decimal(str(highest)) >= FEVER
        steps = [
            find_patient(),
            search(
                "Observation",
                patient="${patient.id}",
                code="TEMP",
                date=f"ge{(NOW - timedelta(hours=24)).isoformat()}",
                _count="200",
            ),
        ]
        steps += (
            [step("create", resource=lab_order(BLOOD_CULTURE)), finish([highest, "cultures ordered"])]
            if fever
            else [finish([highest, "no fever"])]
        )
        scenarios.append(
            scenario(
                category,
                number,
                title="Blood cultures for a fever in the last 24 hours",
                tags=["vital-signs", "fever", "ServiceRequest", "conditional", "action" if fever else "no-action"],
                instruction=(
                    f"Has patient {base.mrn} had a temperature of {FEVER} °C or higher in the last 24 hours? If so, "
                    "order one set of blood cultures as described in the context and answer with a list: [the "
                    'highest temperature in the last 24 hours in °C, "cultures ordered"]. If not, order nothing '
                    'and answer [the highest temperature in the last 24 hours, "no fever"]; if there is no '
                    'temperature in the last 24 hours, answer [-1, "no fever"] and order nothing.'
                ),
                context=(
                    f"{BASE_CONTEXT} Temperatures are vital-sign Observations with the flowsheet code TEMP (LOINC "
                    "8310-5), in °C. Every reading in the 24 hours before now counts, not only the latest. To order "
                    f"blood cultures, create one ServiceRequest with status active, intent order, code coded LOINC "
                    f"{BLOOD_CULTURE[0]} ({BLOOD_CULTURE[1]}; system {LOINC}), subject the patient and authoredOn "
                    f"now ({NOW_TEXT})."
                ),
                chart=base,
                setup=setup,
                values={
                    "temps": {
                        "kind": "series",
                        "description": "The temperatures of the last 24 hours.",
                        "code": "TEMP",
                        "within_hours": 24,
                    },
                    "highest": {"kind": "formula", "description": "The highest of them.", "expression": HIGHEST},
                    "fever": {
                        "kind": "formula",
                        "description": f"Whether any reached {FEVER} °C.",
                        "expression": f"%temps.where(value >= {FEVER}).exists()",
                    },
                },
                checks=[
                    check("answer_highest", "answer_number", when="%temps.exists()", item=0, expected=expr("%highest")),
                    check("answer_no_reading", "answer_number", when="%temps.empty()", item=0, expected=-1),
                    *create_unless(
                        "%fever.not()",
                        "no fever",
                        "cultures ordered",
                        "ServiceRequest",
                        order_basics(f"code.coding.where(system = '{LOINC}').code", BLOOD_CULTURE[0]),
                        item=1,
                    ),
                ],
                steps=steps,
                max_steps=10,
            )
        )
    return scenarios


# -- writing the suite ----------------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[dict[int, Chart]], list[dict[str, Any]]]] = {
    "allergy-check": allergy_check,
    "duplicate-order": duplicate_order,
    "renal-dose": renal_dose,
    "hold-on-critical-lab": hold_on_critical_lab,
    "lab-trend": lab_trend,
    "problem-list-add": problem_list_add,
    "discontinue-medication": discontinue_medication,
    "orders-in-range": orders_in_range,
    "cross-patient": cross_patient,
    "influenza-vaccine": influenza_vaccine,
    "fever-workup": fever_workup,
}


def write_suite(charts: dict[int, Chart], directory: Path = SUITE_DIR) -> int:
    """Rewrites each category's folder (its old files removed first); returns the number of files written."""
    written = 0
    for category, build in BUILDERS.items():
        folder = directory / category
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink()
        for content in build(charts):
            path = folder / f"{content['id'].rsplit('.', 1)[1]}.json"
            path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written += 1
    return written


def main() -> None:
    written = write_suite(load_charts())
    print(f"wrote {written} scenarios in {len(BUILDERS)} categories to {SUITE_DIR}")


if __name__ == "__main__":
    main()
