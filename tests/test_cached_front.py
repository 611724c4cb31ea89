"""Issue 14: a repeated listing is answered in front of Quart (http/cached_front.py), with
the bytes and headers Quart would give it, and under every rule Quart applies."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine import PrivateEngine
from tests.support.processes import Stack
from tests.support.waiting import wait_until

TOKEN = "front-token-" + "x" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def answers(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.base_url}/metrics", headers=AUTH).text
    (family,) = (f for f in text_string_to_metric_families(text) if f.name.endswith("answers"))
    return {s.labels["answered_by"]: s.value for s in family.samples if s.name.endswith("_total")}


def listed(url: str, name: str) -> None:
    wait_until(
        lambda: name in {v["name"] for v in httpx.get(url, headers=AUTH).json()["data"]},
        10,
        message=f"{name} never listed",
    )


def comparable(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}


def test_a_repeated_listing_skips_quart_with_the_same_answer_and_rules(
    engine: PrivateEngine, stack: Stack
) -> None:
    engine.client.volumes.create("vv-front")
    stack.configure(VV_API_TOKEN=TOKEN)
    stack.start("watcher", "gateway")
    stack.wait_http_ready()
    url = f"{stack.base_url}/api/v1/volumes?page_size=5&sort=name"
    listed(url, "vv-front")
    base = answers(stack)
    first = httpx.get(url, headers=AUTH)  # kept already (by `listed`): before Quart
    second = httpx.get(url, headers=AUTH)
    assert first.status_code == second.status_code == 200
    assert answers(stack) == {**base, "front": base["front"] + 2}
    assert second.content == first.content
    # A query string not asked before: Quart encodes it, then the front answers it again.
    other = url + "&page=1"
    by_quart = httpx.get(other, headers=AUTH)
    by_front = httpx.get(other, headers=AUTH)
    assert by_front.content == by_quart.content
    assert comparable(by_front) == comparable(by_quart)  # headers as Quart writes them
    assert answers(stack)["encoded"] == base["encoded"] + 1
    base = {**base, "encoded": base["encoded"] + 1, "front": base["front"] + 1}
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    echoed = httpx.get(url, headers={**AUTH, "X-Request-ID": "dashboard-42"})
    assert echoed.headers["x-request-id"] == "dashboard-42"
    forged = httpx.get(url, headers={**AUTH, "X-Request-ID": "bad id\tinjected"})
    assert forged.headers["x-request-id"] != "bad id\tinjected"
    assert answers(stack)["front"] == base["front"] + 4

    # Every rule still applies to a body that is kept: each of these goes to Quart.
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    refused = httpx.get(url, headers={**AUTH, "Host": "attacker.example"})
    assert refused.status_code == 421 and refused.json()["code"] == "HOST_NOT_ALLOWED"
    foreign = httpx.get(url, headers={**AUTH, "Origin": "http://elsewhere.example"})
    assert foreign.status_code == 200 and "access-control-allow-origin" not in foreign.headers
    assert foreign.content == first.content  # through Quart, from the kept bytes
    assert comparable(foreign) == comparable(first)
    assert answers(stack) == {**base, "front": base["front"] + 4, "cached": base["cached"] + 1}
    front_before = base["front"] + 4

    # A change in the catalog: the next answer is a new page, then kept again.
    engine.client.volumes.create("vv-front-2")
    listed(url, "vv-front-2")
    changed = httpx.get(url, headers=AUTH)
    assert [v["name"] for v in changed.json()["data"]] == ["vv-front", "vv-front-2"]
    front_before = answers(stack)["front"]
    again = httpx.get(url, headers=AUTH)
    assert again.content == changed.content
    assert answers(stack)["front"] == front_before + 1
