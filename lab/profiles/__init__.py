"""Timing profiles: how fast one replica is, as the sim engine's timing model says it.

A profile is a JSON object::

    {"name": "gpu-8b", "source": "where the numbers come from",
     "prefill_tokens_per_s": 20000, "decode_ms_per_token": 8.0,
     "decode_ms_per_token_per_seq": 0.06, "max_num_seqs": 256,
     "kv_cache_tokens": 400000, "max_model_len": 131072,
     "max_num_batched_tokens": 8192, "enable_chunked_prefill": true}

The last two are optional, and so is ``long_prefill_token_threshold``: the
step's token budget, chunked prefill and the cap on one prompt's chunk, as the
sim's flags of those names (``inference.sim.scheduler``); without them, vLLM's
defaults (no cap, chunked prefill on, a budget of 2,048 tokens, at least
``max_num_seqs``; without chunked prefill at least ``max_model_len``).

``--profile NAME`` reads a bundled one (``gpu-8b``, ``vllm-cpu-tiny``),
``--profile PATH`` a file (what ``lab calibrate`` writes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.sim.settings import batched_tokens, budget_problem
from inference.sim.timing import TimingModel

__all__ = ["BUNDLED", "Profile", "ProfileError", "load_profile"]

HERE = Path(__file__).parent
BUNDLED = {p.stem: p for p in sorted(HERE.glob("*.json"))}


class ProfileError(ValueError):
    """A profile that cannot be used; one line naming the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    name: str
    prefill_tokens_per_s: float
    decode_ms_per_token: float
    decode_ms_per_token_per_seq: float
    max_num_seqs: int
    kv_cache_tokens: int
    max_model_len: int
    source: str = ""
    max_num_batched_tokens: int | None = None
    """Tokens an engine step computes at most; None: vLLM's default (``batched_tokens``)."""
    enable_chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    """vLLM's --long-prefill-token-threshold (0: off, its default); needs chunked prefill."""

    def __post_init__(self) -> None:
        for key in ("prefill_tokens_per_s", "decode_ms_per_token"):
            if not getattr(self, key) > 0:
                raise ProfileError(f"profile {self.name}: {key} must be > 0")
        if self.decode_ms_per_token_per_seq < 0:
            raise ProfileError(f"profile {self.name}: decode_ms_per_token_per_seq must be >= 0")
        if self.max_num_seqs < 1 or self.max_model_len < 2:
            raise ProfileError(f"profile {self.name}: max_num_seqs must be >= 1 "
                               "and max_model_len >= 2")
        if self.kv_cache_tokens < self.max_model_len:
            raise ProfileError(
                f"profile {self.name} does not fit: kv_cache_tokens {self.kv_cache_tokens} < "
                f"max_model_len {self.max_model_len} (vLLM refuses to start so)")
        if self.long_prefill_token_threshold < 0 or (
                self.long_prefill_token_threshold and not self.enable_chunked_prefill):
            raise ProfileError(f"profile {self.name}: long_prefill_token_threshold must be "
                               ">= 0, and needs chunked prefill when > 0")
        problem = budget_problem(self.batched_tokens, max_num_seqs=self.max_num_seqs,
                                 max_model_len=self.max_model_len,
                                 chunked=self.enable_chunked_prefill)
        if problem is not None:
            raise ProfileError(f"profile {self.name}: {problem} (vLLM refuses to start so)")

    @property
    def batched_tokens(self) -> int:
        """The engines' token budget per step (given, else vLLM's default)."""
        return batched_tokens(self.max_num_batched_tokens, max_num_seqs=self.max_num_seqs,
                              max_model_len=self.max_model_len,
                              chunked=self.enable_chunked_prefill)

    @property
    def timing(self) -> TimingModel:
        return TimingModel(prefill_tokens_per_s=self.prefill_tokens_per_s,
                           decode_ms_per_token=self.decode_ms_per_token,
                           decode_ms_per_token_per_seq=self.decode_ms_per_token_per_seq)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Profile:
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: a profile is a JSON object")
        fields = {"name", "prefill_tokens_per_s", "decode_ms_per_token",
                  "decode_ms_per_token_per_seq", "max_num_seqs", "kv_cache_tokens",
                  "max_model_len", "source", "max_num_batched_tokens", "enable_chunked_prefill",
                  "long_prefill_token_threshold"}
        optional = {"source", "max_num_batched_tokens", "enable_chunked_prefill",
                    "long_prefill_token_threshold"}
        missing = sorted(fields - optional - set(data))
        if missing:
            raise ProfileError(f"{where}: missing {', '.join(missing)}")
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(
                name=str(data["name"]), source=str(data.get("source", "")),
                prefill_tokens_per_s=float(data["prefill_tokens_per_s"]),
                decode_ms_per_token=float(data["decode_ms_per_token"]),
                decode_ms_per_token_per_seq=float(data["decode_ms_per_token_per_seq"]),
                max_num_seqs=_int(data["max_num_seqs"]),
                kv_cache_tokens=_int(data["kv_cache_tokens"]),
                max_model_len=_int(data["max_model_len"]),
                max_num_batched_tokens=(None if data.get("max_num_batched_tokens") is None
                                        else _int(data["max_num_batched_tokens"])),
                enable_chunked_prefill=_bool(data.get("enable_chunked_prefill", True),
                                             "enable_chunked_prefill"),
                long_prefill_token_threshold=_int(data.get("long_prefill_token_threshold", 0)),
            )
        except (TypeError, ValueError) as e:
            if isinstance(e, ProfileError):
                raise
            raise ProfileError(f"{where}: {e}") from None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def load_profile(spec: str) -> Profile:
    """A bundled profile by name, else a JSON file by path."""
    path = BUNDLED.get(spec) or Path(spec)
    if not path.is_file():
        raise ProfileError(f"unknown profile {spec!r}: neither a bundled one "
                           f"({', '.join(BUNDLED)}) nor a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ProfileError(f"profile {path}: cannot read JSON ({e})") from None
    return Profile.from_json(data, where=f"profile {path}")
