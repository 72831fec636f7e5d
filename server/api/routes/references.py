"""``GET /v1/references`` and ``GET /v1/references/{number}``: the review's reference list."""

from __future__ import annotations

from fastapi import APIRouter

from nenqa.types import Reference
from server.api.deps import ServiceDep
from server.api.docs import COMMON, PARAMETERS, error_responses
from server.errors import NotFoundError
from server.schemas import QuoteOut, ReferenceList, ReferenceOut
from server.state import ServiceState

router = APIRouter(tags=["references"])


def reference_out(service: ServiceState, reference: Reference) -> ReferenceOut:
    bank = service.bank
    cited_in = [
        QuoteOut(chunk_id=s.chunk_ids[0], text=s.text, section=s.section)
        for s in (bank.sentences[i] for i in bank.citing(reference.number))
    ]
    return ReferenceOut(
        number=reference.number,
        text=reference.text,
        authors=list(reference.authors),
        title=reference.title,
        journal=reference.journal,
        year=reference.year,
        volume_pages=reference.volume_pages,
        alternate=reference.alternate,
        cited_in=cited_in,
    )


@router.get(
    "/references",
    response_model=ReferenceList,
    summary="All references of the review",
    responses=error_responses(*COMMON),
)
def list_references(service: ServiceDep) -> ReferenceList:
    references = [reference_out(service, r) for _, r in sorted(service.references.items())]
    return ReferenceList(count=len(references), references=references)


@router.get(
    "/references/{number}",
    response_model=ReferenceOut,
    summary="One reference and the review's sentences that cite it",
    responses=error_responses(404, *PARAMETERS, *COMMON),
)
def get_reference(number: int, service: ServiceDep) -> ReferenceOut:
    reference = service.references.get(number)
    if reference is None:
        raise NotFoundError(
            f"the review has no reference [{number}]; its references are numbered "
            f"1-{max(service.references, default=0)}"
        )
    return reference_out(service, reference)
