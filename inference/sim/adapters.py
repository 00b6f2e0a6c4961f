"""LoRA adapters loaded on the sim, with vLLM's rules for load and unload.

vLLM (``OpenAIServingModels``) answers: both names given or 400; a name that is
the base model's 400; a name already loaded 400 unless ``load_inplace``; a path
with no adapter 404 (``Loading lora NAME failed: No adapter found for PATH``);
any other failure to load 500; unloading an unknown name 404. The sim loads no
weights: a path "has an adapter" when it exists, and its
``adapter_config.json``, when present, must be JSON with a rank ``r`` within
``max_lora_rank``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from inference.sim.errors import ApiError, not_found


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    path: str
    created: int


class AdapterRegistry:
    def __init__(self, *, base_name: str, max_lora_rank: int) -> None:
        self.base_name = base_name
        self.max_lora_rank = max_lora_rank
        self._adapters: dict[str, Adapter] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __len__(self) -> int:
        return len(self._adapters)

    def list(self) -> list[Adapter]:
        return list(self._adapters.values())

    def get(self, name: str) -> Adapter | None:
        return self._adapters.get(name)

    def load(self, name: str, path: str, *, load_inplace: bool = False) -> str:
        """Load ``name`` from ``path``; returns vLLM's success text or raises ApiError."""
        if not name or not path:
            raise ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.",
                           type_="InvalidUserInput")
        if name == self.base_name:
            raise ApiError(400, f"The lora adapter '{name}' conflicts with a served base model.",
                           type_="InvalidUserInput")
        if name in self._adapters and not load_inplace:
            raise ApiError(
                400, f"The lora adapter '{name}' has already been loaded. If you want to load "
                "the adapter in place, set 'load_inplace' to True.", type_="InvalidUserInput",
            )
        self._check_path(name, path)
        self._adapters[name] = Adapter(name=name, path=path, created=int(time.time()))
        return f"Success: LoRA adapter '{name}' added successfully."

    def unload(self, name: str) -> str:
        if not name:
            raise ApiError(400, "'lora_name' needs to be provided to unload a LoRA adapter.",
                           type_="InvalidUserInput")
        if name not in self._adapters:
            raise not_found(f"The lora adapter '{name}' cannot be found.")
        del self._adapters[name]
        return f"Success: LoRA adapter '{name}' removed successfully."

    def _check_path(self, name: str, path: str) -> None:
        root = Path(path)
        if not root.exists():
            raise not_found(f"Loading lora {name} failed: No adapter found for {path}")
        config = root / "adapter_config.json"
        if not config.is_file():
            return
        try:
            rank = json.loads(config.read_text(encoding="utf-8")).get("r")
        except (OSError, ValueError, AttributeError) as exc:
            raise ApiError(500, f"Loading lora {name} failed: unreadable adapter_config.json "
                           f"({exc})", type_="InternalServerError") from None
        if isinstance(rank, int) and rank > self.max_lora_rank:
            raise ApiError(500, f"LoRA rank {rank} is greater than max_lora_rank "
                           f"{self.max_lora_rank}.", type_="InternalServerError")


def check_model(name: str | None, *, base: str, adapters: AdapterRegistry) -> str | None:
    """The adapter a request's ``model`` names (None for the base), or 404 as vLLM does."""
    if not name or name == base:
        return None
    if name in adapters:
        return name
    raise not_found(f"The model `{name}` does not exist. Valid aliases: {base}.", param="model")

