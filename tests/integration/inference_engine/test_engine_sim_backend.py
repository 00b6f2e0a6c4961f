"""``python -m inference.engine --backend sim`` runs the simulator with the rest of the flags."""

from __future__ import annotations

import openai

from tests.helpers.procs import ProcessGroup
from tests.helpers.sim import FAST


def test_sim_backend_serves_the_model_under_its_name(procs: ProcessGroup) -> None:
    engine = procs.start(
        ["-m", "inference.engine", "--backend", "sim", "--model", "/models/m",
         "--served-model-name", "via-engine", "--port", "0", *FAST],
        name="engine-sim", env={"BIND_HOST": "127.0.0.1"},
    )
    assert engine.url is not None
    api = openai.OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in api.models.list().data] == ["via-engine"]
    out = api.completions.create(model="via-engine", prompt="hi", max_tokens=4)
    assert out.usage is not None
    assert out.usage.completion_tokens == 4
    api.close()


def test_backend_from_the_environment(procs: ProcessGroup) -> None:
    engine = procs.start(
        ["-m", "inference.engine", "--served-model-name", "env-backend", "--port", "0", *FAST],
        name="engine-sim", env={"BIND_HOST": "127.0.0.1", "BRIX_BACKEND": "sim"},
    )
    assert engine.url is not None
    api = openai.OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in api.models.list().data] == ["env-backend"]
    api.close()
