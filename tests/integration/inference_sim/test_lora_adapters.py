"""LoRA adapters on the sim: vLLM's load/unload routes, /v1/models, serving by name."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers.procs import Proc
from tests.integration.inference_sim.conftest import MODEL


def _adapter_dir(root: Path, name: str, rank: int = 8) -> str:
    path = root / name
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return str(path)


def _load(url: str, name: str, path: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})


def _unload(url: str, name: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": name})


def test_adapter_lifecycle(fast_sim: Proc, client: openai.OpenAI, tmp_path: Path) -> None:
    url = str(fast_sim.url)
    path = _adapter_dir(tmp_path, "sql-lora")
    resp = _load(url, "sql-lora", path)
    assert resp.status_code == 200, resp.text
    assert "sql-lora" in resp.text
    try:
        cards = {m.id: m for m in client.models.list().data}
        assert set(cards) == {MODEL, "sql-lora"}
        extra = cards["sql-lora"].model_extra
        assert extra is not None
        assert extra["parent"] == MODEL
        assert extra["root"] == path

        prompt = "Translate to SQL: all users"
        base = client.completions.create(model=MODEL, prompt=prompt, max_tokens=10)
        lora = client.completions.create(model="sql-lora", prompt=prompt, max_tokens=10)
        assert lora.model == "sql-lora"
        assert lora.choices[0].text != base.choices[0].text
        chat = client.chat.completions.create(
            model="sql-lora", messages=[{"role": "user", "content": prompt}], max_tokens=3)
        assert chat.model == "sql-lora"

        dup = _load(url, "sql-lora", path)
        assert dup.status_code == 400
        assert dup.json()["error"]["code"] == 400
        assert "already been loaded" in dup.json()["error"]["message"]
    finally:
        resp = _unload(url, "sql-lora")
    assert resp.status_code == 200, resp.text
    assert [m.id for m in client.models.list().data] == [MODEL]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="sql-lora", prompt="x", max_tokens=2)


def test_unloading_an_unknown_adapter_is_404(fast_sim: Proc) -> None:
    resp = _unload(str(fast_sim.url), "never-loaded")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["type"] == "NotFoundError"
    assert "never-loaded" in error["message"]


def test_loading_from_a_missing_path_is_vllms_404(fast_sim: Proc, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    resp = _load(str(fast_sim.url), "ghost", missing)
    assert resp.status_code == 404
    assert resp.json()["error"]["message"] == (
        f"Loading lora ghost failed: No adapter found for {missing}")
    names = [m["id"] for m in httpx.get(f"{fast_sim.url}/v1/models").json()["data"]]
    assert "ghost" not in names


def test_an_adapter_cannot_take_the_base_models_name(fast_sim: Proc, tmp_path: Path) -> None:
    resp = _load(str(fast_sim.url), MODEL, _adapter_dir(tmp_path, "x"))
    assert resp.status_code == 400
    assert "conflicts with a served base model" in resp.json()["error"]["message"]


def test_a_rank_above_max_lora_rank_is_refused(fast_sim: Proc, tmp_path: Path) -> None:
    resp = _load(str(fast_sim.url), "too-big", _adapter_dir(tmp_path, "big", rank=512))
    assert resp.status_code == 500
    assert "max_lora_rank" in resp.json()["error"]["message"]
    assert _unload(str(fast_sim.url), "too-big").status_code == 404


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/load_lora_adapter", {"lora_name": "a"}),
        ("/v1/load_lora_adapter", {"lora_path": "/tmp"}),
        ("/v1/load_lora_adapter", {"lora_name": 3, "lora_path": "/tmp"}),
        ("/v1/unload_lora_adapter", {}),
        ("/v1/unload_lora_adapter", ["a"]),
    ],
)
def test_malformed_adapter_requests_are_400(fast_sim: Proc, route: str, body: object) -> None:
    resp = httpx.post(f"{fast_sim.url}{route}", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 400


def test_load_in_place_replaces_the_path(fast_sim: Proc, tmp_path: Path) -> None:
    url = str(fast_sim.url)
    first, second = _adapter_dir(tmp_path, "v1"), _adapter_dir(tmp_path, "v2")
    assert _load(url, "inplace", first).status_code == 200
    try:
        resp = httpx.post(f"{url}/v1/load_lora_adapter", json={
            "lora_name": "inplace", "lora_path": second, "load_inplace": True})
        assert resp.status_code == 200
        roots = {m["id"]: m["root"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
        assert roots["inplace"] == second
    finally:
        assert _unload(url, "inplace").status_code == 200
