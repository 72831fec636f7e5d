"""``GET /v1/trials`` (filter by phase, site, drug, reference) and ``GET /v1/trials/{id}``."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from fastapi import APIRouter, Query

from nenqa.types import TrialRecord
from server.api.deps import ServiceDep
from server.api.docs import COMMON, PARAMETERS, error_responses
from server.errors import NotFoundError
from server.schemas import TrialList

router = APIRouter(tags=["trials"])


def _fold(text: str) -> str:
    # NFKC turns 'Ⅲ' into 'III' and full-width letters into ASCII.
    return unicodedata.normalize("NFKC", text).strip().lower()


def trial_matches(
    trial: TrialRecord, phase: str | None, site: str | None, drug: str | None, ref: int | None
) -> bool:
    """Phase exactly (``II/III`` is not ``III``); site and drug as a part of a name, any case."""
    if phase is not None and _fold(trial.phase or "") != _fold(phase):
        return False
    if site is not None and not any(_fold(site) in _fold(s) for s in trial.site):
        return False
    if drug is not None:
        names = [d for arm in trial.arms for d in (*arm.drugs_zh, *arm.drugs_en)]
        if not any(_fold(drug) in _fold(name) for name in names):
            return False
    return ref is None or ref in trial.refs


@router.get(
    "/trials",
    response_model=TrialList,
    summary="The studies the review discusses, filtered",
    responses=error_responses(*PARAMETERS, *COMMON),
)
def list_trials(
    service: ServiceDep,
    phase: Annotated[str | None, Query(max_length=20, description="e.g. 'III', 'II/III'")] = None,
    site: Annotated[str | None, Query(max_length=100, description="e.g. 'lung'")] = None,
    drug: Annotated[
        str | None, Query(max_length=100, description="'兰瑞肽' or 'lanreotide'")
    ] = None,
    ref: Annotated[int | None, Query(description="a reference number the trial cites")] = None,
) -> TrialList:
    trials = [t for t in service.trials if trial_matches(t, phase, site, drug, ref)]
    return TrialList(count=len(trials), trials=trials)


@router.get(
    "/trials/{trial_id}",
    response_model=TrialRecord,
    summary="One study by id (e.g. 'spinet')",
    responses=error_responses(404, *PARAMETERS, *COMMON),
)
def get_trial(trial_id: str, service: ServiceDep) -> TrialRecord:
    for trial in service.trials:
        if trial.id == trial_id:
            return trial
    raise NotFoundError(f"no trial with id {trial_id!r}; GET /v1/trials lists them")
