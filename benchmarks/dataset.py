"""A deterministic synthetic population sized for benchmarks (not the project's population generator).

Each patient gets a chart shaped like an inpatient EHR's: labs and vital signs spread over five years of
outpatient visits, plus dense recent inpatient stays (vitals every 4 h, labs twice a day), some of them still
running at ``DATASET_NOW`` so that "vitals in the last 24 h" finds rows. Everything comes from
``random.Random`` seeded per patient, so a patient's chart does not depend on how many others are generated.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "CONDITIONS",
    "DATASET_NOW",
    "LABS",
    "MEDICATIONS",
    "VITALS",
    "Dataset",
    "LabTest",
    "PatientSummary",
    "generate",
    "lab_observation",
    "transaction_bundles",
]

DATASET_NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HISTORY_YEARS = 5

LOINC = "http://loinc.org"
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab-codes"
UCUM = "http://unitsofmeasure.org"
MRN_SYSTEM = "http://hospital.example.org/fhir/NamingSystem/mrn"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


@dataclass(frozen=True)
class LabTest:
    """One coded measurement: LOINC code, the hospital's local code, UCUM unit, typical value."""

    loinc: str
    local: str
    display: str
    unit: str
    mean: float
    sd: float
    decimals: int


LABS: dict[str, LabTest] = {
    t.local: t
    for t in (
        LabTest("2951-2", "NA", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 139, 3, 0),
        LabTest("2823-3", "K", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 4.2, 0.4, 1),
        LabTest("2075-0", "CL", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 102, 3, 0),
        LabTest("2028-9", "CO2", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 25, 2, 0),
        LabTest("3094-0", "BUN", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 16, 5, 0),
        LabTest("2160-0", "CREAT", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 1.0, 0.3, 2),
        LabTest("2345-7", "GLU", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 108, 25, 0),
        LabTest("17861-6", "CA", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 9.3, 0.4, 1),
        LabTest("2601-3", "MG", "Magnesium [Moles/volume] in Serum or Plasma", "mg/dL", 2.0, 0.25, 1),
        LabTest("6690-2", "WBC", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7.5, 2.2, 1),
        LabTest("718-7", "HGB", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.2, 1.6, 1),
        LabTest("4544-3", "HCT", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 40, 4, 1),
        LabTest("777-3", "PLT", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 250, 60, 0),
        LabTest("4548-4", "A1C", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 6.1, 0.9, 1),
        LabTest("2093-3", "CHOL", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 190, 32, 0),
        LabTest(
            "1742-6", "ALT", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 26, 9, 0
        ),
        LabTest(
            "1920-8",
            "AST",
            "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L",
            24,
            8,
            0,
        ),
        LabTest("1751-7", "ALB", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 4.0, 0.4, 1),
        LabTest("2524-7", "LACT", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", 1.3, 0.5, 1),
        LabTest("10839-9", "TROP", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", "ng/mL", 0.02, 0.01, 2),
    )
}

PANELS: dict[str, tuple[str, ...]] = {
    "BMP": ("NA", "K", "CL", "CO2", "BUN", "CREAT", "GLU", "CA"),
    "CBC": ("WBC", "HGB", "HCT", "PLT"),
    "MG": ("MG",),
    "A1C": ("A1C",),
    "LIPID": ("CHOL",),
    "LFT": ("ALT", "AST", "ALB"),
    "ACUTE": ("LACT", "TROP"),
}

# Vital signs carry LOINC only; blood pressure is a panel with two components (as US Core has it)
VITALS: dict[str, LabTest] = {
    t.local: t
    for t in (
        LabTest("8867-4", "HR", "Heart rate", "/min", 78, 12, 0),
        LabTest("9279-1", "RR", "Respiratory rate", "/min", 16, 2.5, 0),
        LabTest("8310-5", "TEMP", "Body temperature", "Cel", 36.9, 0.4, 1),
        LabTest("59408-5", "SPO2", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 96, 2, 0),
        LabTest("29463-7", "WT", "Body weight", "kg", 78, 15, 1),
    )
}
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
BP_SYSTOLIC = ("8480-6", "Systolic blood pressure", 128, 16)
BP_DIASTOLIC = ("8462-4", "Diastolic blood pressure", 78, 10)

INPATIENT_VITALS = ("HR", "RR", "TEMP", "SPO2", "BP")
OUTPATIENT_VITALS = ("HR", "BP", "WT", "TEMP")
# (panel, chance it is drawn at an outpatient visit)
_OUTPATIENT_PANELS = (("BMP", 0.7), ("CBC", 0.5), ("A1C", 0.3), ("LIPID", 0.2), ("LFT", 0.2), ("MG", 0.2))

MEDICATIONS: tuple[tuple[str, str, str], ...] = (
    ("860975", "metformin hydrochloride 500 MG Oral Tablet", "500 mg by mouth twice daily"),
    ("314076", "lisinopril 10 MG Oral Tablet", "10 mg by mouth daily"),
    ("617312", "atorvastatin 40 MG Oral Tablet", "40 mg by mouth at bedtime"),
    ("197361", "amlodipine 5 MG Oral Tablet", "5 mg by mouth daily"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet", "25 mg by mouth daily"),
    ("855332", "warfarin sodium 5 MG Oral Tablet", "5 mg by mouth daily"),
    ("313782", "acetaminophen 325 MG Oral Tablet", "650 mg by mouth every 6 hours as needed"),
    ("197806", "ibuprofen 600 MG Oral Tablet", "600 mg by mouth every 8 hours as needed"),
    ("866924", "metoprolol tartrate 25 MG Oral Tablet", "25 mg by mouth twice daily"),
    ("311989", "nitrofurantoin 100 MG Oral Capsule", "100 mg by mouth twice daily"),
    ("1719286", "potassium chloride 10 MEQ Extended Release Oral Tablet", "20 mEq by mouth daily"),
    ("1361615", "insulin glargine 100 UNT/ML Injectable Solution", "20 units subcutaneously at bedtime"),
)

CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("44054006", "Diabetes mellitus type 2", "E11.9", "Type 2 diabetes mellitus without complications"),
    ("38341003", "Hypertensive disorder", "I10", "Essential (primary) hypertension"),
    ("55822004", "Hyperlipidemia", "E78.5", "Hyperlipidemia, unspecified"),
    ("49436004", "Atrial fibrillation", "I48.91", "Unspecified atrial fibrillation"),
    ("433144002", "Chronic kidney disease stage 3", "N18.30", "Chronic kidney disease, stage 3 unspecified"),
    ("84114007", "Heart failure", "I50.9", "Heart failure, unspecified"),
    ("13645005", "Chronic obstructive lung disease", "J44.9", "Chronic obstructive pulmonary disease, unspecified"),
    ("68566005", "Urinary tract infectious disease", "N39.0", "Urinary tract infection, site not specified"),
    ("233604007", "Pneumonia", "J18.9", "Pneumonia, unspecified organism"),
    ("35489007", "Depressive disorder", "F32.A", "Depression, unspecified"),
)

# str.split keeps these lists readable; the formatter would put each name on a line of its own
FAMILY_NAMES = (  # noqa: SIM905
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera "
    "Campbell Mitchell Carter Roberts"
).split()
GIVEN_NAMES = {
    "female": "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Maria Ana Grace".split(),  # noqa: SIM905
    "male": "James Robert John Michael David William Richard Joseph Thomas Charles Carlos Wei Omar".split(),  # noqa: SIM905
}


@dataclass(frozen=True)
class PatientSummary:
    """What the query mix needs to know about a generated patient."""

    id: str
    family: str
    birth_date: str
    observation_ids: tuple[str, ...]
    condition_ids: tuple[str, ...]
    lab_codes: tuple[str, ...]  # local codes of the labs in the chart (LABS has their LOINC codes)
    inpatient_now: bool


@dataclass
class Dataset:
    """The generated resources (in load order) and a summary of each patient."""

    resources: list[dict[str, Any]]
    patients: list[PatientSummary]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for resource in self.resources:
            out[resource["resourceType"]] = out.get(resource["resourceType"], 0) + 1
        return out


def generate(patients: int, observations_per_patient: int, seed: int, id_prefix: str = "") -> Dataset:
    """``patients`` charts of exactly ``observations_per_patient`` Observations each, deterministic in ``seed``."""
    resources: list[dict[str, Any]] = []
    summaries: list[PatientSummary] = []
    for index in range(patients):
        chart = _Chart(
            random.Random(f"{seed}:{index}"), f"{id_prefix}pat-{index:05d}", f"Patient/{id_prefix}pat-{index:05d}"
        )
        chart_resources = chart.resources(observations_per_patient)
        resources.extend(chart_resources)
        summaries.append(chart.summary(chart_resources))
    return Dataset(resources, summaries)


def transaction_bundles(total: int, per_bundle: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """Entries of transaction Bundles holding ``total`` new resources: each Bundle is one new patient (an
    ``urn:uuid:`` fullUrl that the other entries reference) and ``per_bundle - 1`` resources of its chart."""
    rng = random.Random(f"{seed}:transactions")
    written = 0
    bundle_index = 0
    while written < total:
        size = min(per_bundle, total - written)
        patient_urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        chart = _Chart(random.Random(f"{seed}:tx:{bundle_index}"), f"tx-{bundle_index:05d}", patient_urn)
        chart_resources = chart.resources(size)  # more than enough: trimmed to size below
        patient = next(r for r in chart_resources if r["resourceType"] == "Patient")
        others = [r for r in chart_resources if r["resourceType"] != "Patient"][: size - 1]
        entries = [_post_entry(patient, patient_urn)]
        for resource in others:
            urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            entries.append(_post_entry(resource, urn))
        yield entries
        written += len(entries)
        bundle_index += 1


def lab_observation(patient_id: str, rng: random.Random, moment: datetime) -> dict[str, Any]:
    """A new lab Observation (no id) for ``patient_id``, as an agent or a test would write one."""
    chart = _Chart(rng, patient_id, f"Patient/{patient_id}")
    return chart.lab(LABS[rng.choice(sorted(LABS))], moment)


def _post_entry(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    body = {k: v for k, v in resource.items() if k != "id"}
    return {"fullUrl": full_url, "resource": body, "request": {"method": "POST", "url": resource["resourceType"]}}


class _Chart:
    """One patient's resources."""

    def __init__(self, rng: random.Random, patient_id: str, patient_ref: str):
        self.rng = rng
        self.patient_id = patient_id
        self.subject = {"reference": patient_ref}
        self.inpatient_now = rng.random() < 0.35
        self.obs_count = 0

    # -- the patient --------------------------------------------------------------------------------------------

    def patient(self) -> dict[str, Any]:
        rng = self.rng
        gender = rng.choice(("female", "male"))
        self.family = rng.choice(FAMILY_NAMES)
        birth = date(1935, 1, 1) + timedelta(days=rng.randrange(70 * 365))
        self.birth_date = birth.isoformat()
        return {
            "resourceType": "Patient",
            "id": self.patient_id,
            "identifier": [
                {
                    "use": "usual",
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                                "display": "Medical record number",
                            }
                        ]
                    },
                    "system": MRN_SYSTEM,
                    "value": f"MRN{rng.randrange(10**7):07d}",
                }
            ],
            "active": True,
            "name": [{"use": "official", "family": self.family, "given": [rng.choice(GIVEN_NAMES[gender])]}],
            "telecom": [{"system": "phone", "value": f"555-{rng.randrange(10**4):04d}", "use": "home"}],
            "gender": gender,
            "birthDate": self.birth_date,
            "address": [
                {
                    "use": "home",
                    "line": [f"{rng.randrange(1, 999)} {rng.choice(FAMILY_NAMES)} Street"],
                    "city": "Springfield",
                    "state": "MA",
                    "postalCode": f"0{rng.randrange(1000, 2800)}",
                    "country": "US",
                }
            ],
        }

    # -- observations -------------------------------------------------------------------------------------------

    def observation_times(self, count: int) -> list[tuple[datetime, tuple[str, ...], tuple[str, ...]]]:
        """(moment, vital codes, lab panels) events adding up to at least ``count`` Observations: inpatient stays
        first (recent, dense), then outpatient visits over five years until the count is reached."""
        rng = self.rng
        events: list[tuple[datetime, tuple[str, ...], tuple[str, ...]]] = []
        size = 0
        inpatient_budget = int(count * rng.uniform(0.4, 0.6))
        end = DATASET_NOW if self.inpatient_now else DATASET_NOW - timedelta(days=rng.randrange(5, 60))
        while size < inpatient_budget:
            start = end - timedelta(days=rng.randrange(3, 11))
            moment = end - timedelta(hours=1, minutes=rng.randrange(60))
            while moment > start and size < inpatient_budget:
                panels: tuple[str, ...] = ()
                if moment.hour in (5, 6, 7, 8) or rng.random() < 0.08:  # morning labs, plus the odd stat draw
                    panels = ("BMP", "MG")
                    panels += ("CBC",) if rng.random() < 0.7 else ()
                    panels += ("ACUTE",) if rng.random() < 0.1 else ()
                events.append((moment, INPATIENT_VITALS, panels))
                size += _size(INPATIENT_VITALS, panels)
                moment -= timedelta(hours=4, minutes=rng.randrange(-20, 21))
            end = start - timedelta(days=rng.randrange(20, 200))
        earliest = DATASET_NOW - timedelta(days=365 * HISTORY_YEARS)
        span = int((DATASET_NOW - earliest).total_seconds())
        while size < count:
            moment = earliest + timedelta(seconds=rng.randrange(span))
            moment = moment.replace(hour=rng.randrange(8, 17), minute=rng.randrange(60), second=0)
            panels = tuple(p for p, chance in _OUTPATIENT_PANELS if rng.random() < chance)
            events.append((moment, OUTPATIENT_VITALS, panels))
            size += _size(OUTPATIENT_VITALS, panels)
        events.sort(key=lambda e: e[0])
        return events

    def observations(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        # keep the most recent ``count``: trimming the oldest preserves the dense recent stretches
        for moment, vitals, panels in reversed(self.observation_times(count)):
            for code in vitals:
                out.append(self.vital(code, moment))
            lab_moment = moment + timedelta(minutes=self.rng.randrange(5, 40))
            for panel in panels:
                for code in PANELS[panel]:
                    out.append(self.lab(LABS[code], lab_moment))
            if len(out) >= count:
                break
        out = out[:count]
        out.reverse()
        for number, resource in enumerate(out):
            resource["id"] = f"{self.patient_id}-obs-{number:05d}"
        return out

    def _value(self, test: LabTest) -> float:
        value = max(self.rng.gauss(test.mean, test.sd), test.mean / 10)
        return round(value, test.decimals) if test.decimals else float(round(value))

    def lab(self, test: LabTest, moment: datetime) -> dict[str, Any]:
        value = self._value(test)
        low, high = round(test.mean - 2 * test.sd, test.decimals), round(test.mean + 2 * test.sd, test.decimals)
        interpretation = "H" if value > high else "L" if value < low else "N"
        return {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
            "code": {
                "coding": [
                    {"system": LOINC, "code": test.loinc, "display": test.display},
                    {"system": LOCAL_LAB, "code": test.local},
                ],
                "text": test.display,
            },
            "subject": self.subject,
            "effectiveDateTime": _instant(moment),
            "issued": _instant(moment + timedelta(minutes=45)),
            "valueQuantity": {"value": value, "unit": test.unit, "system": UCUM, "code": test.unit},
            "interpretation": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                            "code": interpretation,
                        }
                    ]
                }
            ],
            "referenceRange": [
                {
                    "low": {"value": low, "unit": test.unit, "system": UCUM, "code": test.unit},
                    "high": {"value": high, "unit": test.unit, "system": UCUM, "code": test.unit},
                }
            ],
        }

    def vital(self, code: str, moment: datetime) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}],
            "subject": self.subject,
            "effectiveDateTime": _instant(moment),
        }
        if code == "BP":
            loinc, display = BP_PANEL
            resource["code"] = {
                "coding": [{"system": LOINC, "code": loinc, "display": display}],
                "text": "Blood pressure",
            }
            resource["component"] = [
                {
                    "code": {"coding": [{"system": LOINC, "code": c_code, "display": c_display}]},
                    "valueQuantity": {
                        "value": float(round(self.rng.gauss(mean, sd))),
                        "unit": "mm[Hg]",
                        "system": UCUM,
                        "code": "mm[Hg]",
                    },
                }
                for c_code, c_display, mean, sd in (BP_SYSTOLIC, BP_DIASTOLIC)
            ]
            return resource
        test = VITALS[code]
        resource["code"] = {
            "coding": [{"system": LOINC, "code": test.loinc, "display": test.display}],
            "text": test.display,
        }
        resource["valueQuantity"] = {"value": self._value(test), "unit": test.unit, "system": UCUM, "code": test.unit}
        return resource

    # -- medications and problems -------------------------------------------------------------------------------

    def medication_requests(self) -> list[dict[str, Any]]:
        rng = self.rng
        out = []
        for number, (code, display, dosage) in enumerate(rng.sample(MEDICATIONS, rng.randrange(3, 9))):
            authored = DATASET_NOW - timedelta(days=rng.randrange(1, 365 * HISTORY_YEARS))
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{self.patient_id}-med-{number:03d}",
                    "status": "active" if rng.random() < 0.5 else "stopped",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": code, "display": display}],
                        "text": display,
                    },
                    "subject": self.subject,
                    "authoredOn": _instant(authored),
                    "dosageInstruction": [{"text": dosage}],
                }
            )
        return out

    def conditions(self) -> list[dict[str, Any]]:
        rng = self.rng
        out = []
        for number, (snomed, display, icd, icd_display) in enumerate(rng.sample(CONDITIONS, rng.randrange(2, 7))):
            onset = DATASET_NOW - timedelta(days=rng.randrange(30, 365 * 15))
            active = rng.random() < 0.7
            out.append(
                {
                    "resourceType": "Condition",
                    "id": f"{self.patient_id}-cond-{number:03d}",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active" if active else "resolved",
                            }
                        ]
                    },
                    "verificationStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                "code": "confirmed",
                            }
                        ]
                    },
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                    "code": "problem-list-item",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {"system": SNOMED, "code": snomed, "display": display},
                            {"system": ICD10, "code": icd, "display": icd_display},
                        ],
                        "text": display,
                    },
                    "subject": self.subject,
                    "onsetDateTime": _instant(onset),
                    "recordedDate": _instant(onset + timedelta(days=rng.randrange(0, 30))),
                }
            )
        return out

    def resources(self, observations: int) -> list[dict[str, Any]]:
        return [self.patient(), *self.conditions(), *self.medication_requests(), *self.observations(observations)]

    def summary(self, resources: list[dict[str, Any]]) -> PatientSummary:
        return PatientSummary(
            id=self.patient_id,
            family=self.family,
            birth_date=self.birth_date,
            observation_ids=tuple(r["id"] for r in resources if r["resourceType"] == "Observation"),
            condition_ids=tuple(r["id"] for r in resources if r["resourceType"] == "Condition"),
            lab_codes=tuple(
                sorted(
                    {
                        r["code"]["coding"][1]["code"]
                        for r in resources
                        if r["resourceType"] == "Observation" and len(r["code"]["coding"]) > 1
                    }
                )
            ),
            inpatient_now=self.inpatient_now,
        )


def _size(vitals: tuple[str, ...], panels: tuple[str, ...]) -> int:
    return len(vitals) + sum(len(PANELS[p]) for p in panels)


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
