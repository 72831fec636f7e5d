"""References, trials, search and health over HTTP (ASGI)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service.settings, service=service)) as test_client:
        yield test_client


def test_the_reference_list_has_all_fifty_entries(client):
    body = client.get("/v1/references").json()
    assert body["count"] == 50
    assert [r["number"] for r in body["references"]] == list(range(1, 51))
    twenty_one = body["references"][20]
    assert twenty_one["text"].startswith("中国抗癌协会") and "China Anti-Cancer" in (
        twenty_one["alternate"] or ""
    )


def test_one_reference_lists_the_sentences_that_cite_it(client):
    body = client.get("/v1/references/7").json()
    assert "SPINET" in body["title"] and body["year"] == 2021
    assert any("SPINET随机双盲" in quote["text"] for quote in body["cited_in"])


def test_every_reference_lists_each_passage_sentence_citing_it_once_in_reading_order(
    client, service
):
    listed = {r["number"]: r["cited_in"] for r in client.get("/v1/references").json()["references"]}
    for number, cited_in in listed.items():
        expected = [
            s.text for s in service.bank.sentences if number in s.refs and s.kind == "passage"
        ]
        assert [quote["text"] for quote in cited_in] == expected
    assert sum(map(len, listed.values())) >= 50  # every reference is cited somewhere


@pytest.mark.parametrize("number", [0, 51, 999, -3])
def test_an_unknown_reference_number_is_404(client, number):
    response = client.get(f"/v1/references/{number}")
    assert response.status_code == 404
    assert f"no reference [{number}]" in response.json()["detail"]


def test_trials_filter_by_phase_site_drug_and_reference(client):
    def ids(**params):
        return {t["id"] for t in client.get("/v1/trials", params=params).json()["trials"]}

    everything = ids()
    assert len(everything) >= 35
    assert "spinet" in ids(phase="III") and "spinet" in ids(phase="Ⅲ")
    assert ids(drug="兰瑞肽") >= {"spinet", "reminet"} and ids(drug="lanreotide") >= {"spinet"}
    assert "spinet" in ids(site="lung")
    assert ids(ref=7) == {
        t for t in everything if 7 in client.get(f"/v1/trials/{t}").json()["refs"]
    }
    assert ids(phase="III", drug="lanreotide") <= ids(phase="III")


def test_a_trial_by_id_and_an_unknown_one(client):
    spinet = client.get("/v1/trials/spinet").json()
    assert spinet["name"] == "SPINET" and spinet["refs"] == [7]
    missing = client.get("/v1/trials/no-such-trial")
    assert missing.status_code == 404 and "no-such-trial" in missing.json()["detail"]


def test_search_returns_evidence_and_honours_filters(client):
    body = client.post("/v1/search", json={"question": "lanreotide lung carcinoid", "top_k": 3})
    results = body.json()["results"]
    assert len(results) == 3 and any(7 in r["refs"] for r in results)
    trials = client.post(
        "/v1/search",
        json={"question": "兰瑞肽", "top_k": 5, "filters": {"kind": "trial"}},
    ).json()["results"]
    assert trials and all(r["kind"] == "trial" for r in trials)


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["chunks"] > 100 and ready["modes"] == ["extractive"]
    # Rendering chunks are counted apart from the chunks they render: the default corpus has
    # 139 chunks, 90 of them with an English (or, for the English abstract, Chinese) rendering.
    assert ready["chunks"] == 139 and ready["renderings"] == 90


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/chat",
        "/v1/chat/completions",
        "/v1/search",
        "/v1/references",
        "/v1/references/{number}",
        "/v1/trials",
        "/v1/trials/{trial_id}",
        "/healthz",
        "/readyz",
    } <= set(paths)
    assert client.get("/docs").status_code == 200
