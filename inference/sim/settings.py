"""The sim engine's settings: one documented dataclass, loaded from flags and ``BRIX_*``.

The timing defaults describe a mid-sized model on one data-centre GPU (a few
thousand prompt tokens per second, ~15 ms per decode step for one sequence);
tests pass much faster values (see ``tests/helpers/sim.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from brix.config import setting

DEFAULT_SERVED_NAME = "sim-model"
# vLLM 0.32's --max-num-batched-tokens for its OpenAI server on the CPU and on GPUs
# other than H100/H200-class (vllm/engine/arg_utils.py, get_batch_defaults).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048


def batched_tokens(given: int | None, *, max_num_seqs: int, max_model_len: int,
                   chunked: bool, default: int = DEFAULT_MAX_NUM_BATCHED_TOKENS) -> int:
    """The token budget of a step: ``given``, else vLLM's default rule (``default``, at
    least ``max_num_seqs``, and without chunked prefill at least ``max_model_len``)."""
    if given is not None:
        return given
    return max(default, max_num_seqs, 0 if chunked else max_model_len)


PROFILE_NAMES: Final = ("max_num_batched_tokens", "max_num_seqs", "max_model_len")
FLAG_NAMES: Final = ("--max-num-batched-tokens", "--max-num-seqs", "--max-model-len")


def budget_problem(budget: int, *, max_num_seqs: int, max_model_len: int, chunked: bool,
                   names: tuple[str, str, str] = PROFILE_NAMES) -> str | None:
    """Why vLLM would refuse to start with this step budget, or None: it must hold a token
    of every running sequence and, without chunked prefill, a whole prompt. ``names``
    are the three settings' names as the caller's user writes them."""
    budget_name, seqs_name, len_name = names
    if budget < max_num_seqs:
        return f"{budget_name} ({budget}) must be at least {seqs_name} ({max_num_seqs})"
    if not chunked and budget < max_model_len:
        return (f"{budget_name} ({budget}) must be at least {len_name} ({max_model_len}) "
                "without chunked prefill")
    return None


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    """A vLLM-compatible simulator: vLLM's OpenAI API, metrics and LoRA routes, no model."""

    model: str | None = setting(
        None,
        help="Model path or name. The sim loads nothing; it is shown as the base model's "
        "`root` in /v1/models and is the default served name.",
    )
    served_model_name: str | None = setting(
        None, help=f"Name the base model is served under (default: --model, else "
        f"{DEFAULT_SERVED_NAME!r}).",
    )
    host: str | None = setting(
        None, help="Address to bind (default: $BIND_HOST, else 0.0.0.0).",
    )
    port: int = setting(8000, help="Port to listen on (0: any free port).")
    prefill_tokens_per_s: float = setting(
        5000.0, help="Prompt tokens processed per second in a step (prefill speed).",
    )
    decode_ms_per_token: float = setting(
        15.0, help="Milliseconds of a decode step (one token for each running sequence) "
        "when one sequence runs.",
    )
    decode_ms_per_token_per_seq: float = setting(
        0.1, help="Milliseconds a decode step grows by for each further sequence in the batch.",
    )
    max_num_seqs: int = setting(
        256, help="Sequences running at most at once (vLLM's --max-num-seqs); more wait.",
    )
    kv_cache_tokens: int = setting(
        65536, help="KV cache capacity in tokens. A sequence holds prompt + output tokens "
        "while it runs; requests that do not fit wait.",
    )
    enable_prefix_caching: bool = setting(
        True, help="vLLM's automatic prefix caching (on by default, as in vLLM's V1 engine): "
        "KV is held in blocks of --block-size tokens, and a prompt's leading blocks already "
        "in the cache (same tokens after the same prefix, same adapter) are shared and not "
        "prefilled again. --no-enable-prefix-caching counts KV in tokens, shares nothing.",
    )
    block_size: int = setting(
        16, help="Tokens per KV-cache block (vLLM's --block-size), the unit of prefix caching.",
    )
    enable_chunked_prefill: bool = setting(
        True, help="vLLM V1's chunked prefill (on by default, as in vLLM): a prompt that does "
        "not fit the step's token budget (--max-num-batched-tokens, after one token for each "
        "decoding sequence) is prefilled in chunks over several steps. "
        "--no-enable-chunked-prefill: a prompt waits until it fits a step whole.",
    )
    max_num_batched_tokens: int | None = setting(
        None, help="Tokens one step computes at most: decode tokens first, then prompt "
        "tokens (vLLM's --max-num-batched-tokens). Default as vLLM's OpenAI server on the "
        f"CPU and most GPUs: {DEFAULT_MAX_NUM_BATCHED_TOKENS}, at least --max-num-seqs, and "
        "without chunked prefill at least --max-model-len. The sim's behaviour before "
        "budgets (every admitted prompt whole in one step): --no-enable-chunked-prefill "
        "with this at --kv-cache-tokens.",
    )
    long_prefill_token_threshold: int = setting(
        0, help="With chunked prefill, prompt tokens one request takes in a step at most "
        "while another request runs or waits, so shorter prompts are admitted beside a long "
        "one (vLLM's --long-prefill-token-threshold). 0: no cap, as vLLM's default.",
    )
    max_model_len: int = setting(
        4096, help="Longest sequence (prompt + output) in tokens, as vLLM's --max-model-len.",
    )
    max_loras: int = setting(
        4, help="Distinct LoRA adapters in one running batch at most (vLLM's --max-loras); "
        "requests for a further adapter wait.",
    )
    max_lora_rank: int = setting(
        64, help="Largest adapter rank accepted (vLLM's --max-lora-rank), read from the "
        "adapter's adapter_config.json when it has one.",
    )
    min_output_tokens: int = setting(
        16, help="Without ignore_eos, a request ends ('stop') after a deterministic number "
        "of tokens between this and --max-output-tokens (or at max_tokens: 'length').",
    )
    max_output_tokens: int = setting(
        256, help="Upper end of the natural output length (see --min-output-tokens).",
    )
    seed: int = setting(0, help="Seed of the deterministic text; same seed, same text.")
    log_level: str = setting(
        "info", help="Log level.", choices=["debug", "info", "warning", "error"],
    )

    def __post_init__(self) -> None:
        positive = {
            "--prefill-tokens-per-s": self.prefill_tokens_per_s,
            "--max-num-seqs": self.max_num_seqs,
            "--kv-cache-tokens": self.kv_cache_tokens,
            "--max-model-len": self.max_model_len,
            "--max-loras": self.max_loras,
            "--block-size": self.block_size,
            "--max-lora-rank": self.max_lora_rank,
            "--min-output-tokens": self.min_output_tokens,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise ValueError(f"{flag} must be positive, got {value}")
        for flag, value in {
            "--decode-ms-per-token": self.decode_ms_per_token,
            "--decode-ms-per-token-per-seq": self.decode_ms_per_token_per_seq,
        }.items():
            if value < 0:
                raise ValueError(f"{flag} must not be negative, got {value}")
        problem = budget_problem(self.batched_tokens, max_num_seqs=self.max_num_seqs,
                                 max_model_len=self.max_model_len,
                                 chunked=self.enable_chunked_prefill, names=FLAG_NAMES)
        if problem is not None:
            raise ValueError(problem)
        if self.long_prefill_token_threshold < 0:
            raise ValueError("--long-prefill-token-threshold must not be negative, got "
                             f"{self.long_prefill_token_threshold}")
        if self.long_prefill_token_threshold and not self.enable_chunked_prefill:
            raise ValueError("--long-prefill-token-threshold needs chunked prefill")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be 0..65535, got {self.port}")
        if self.max_output_tokens < self.min_output_tokens:
            raise ValueError("--max-output-tokens must be at least --min-output-tokens")
        if self.kv_cache_tokens < self.max_model_len:
            raise ValueError(
                f"--kv-cache-tokens ({self.kv_cache_tokens}) must hold one sequence of "
                f"--max-model-len ({self.max_model_len}) tokens"
            )
        if self.enable_prefix_caching:
            bs = self.block_size
            blocks, needed = self.kv_cache_tokens // bs, -(-self.max_model_len // bs)
            if blocks < needed:
                raise ValueError(
                    f"--kv-cache-tokens ({self.kv_cache_tokens}) holds {blocks} blocks of "
                    f"--block-size {bs}; one sequence of --max-model-len ({self.max_model_len}) "
                    f"tokens needs {needed}"
                )

    @property
    def batched_tokens(self) -> int:
        """The step's token budget: --max-num-batched-tokens or vLLM's default."""
        return batched_tokens(self.max_num_batched_tokens, max_num_seqs=self.max_num_seqs,
                              max_model_len=self.max_model_len,
                              chunked=self.enable_chunked_prefill)

    @property
    def name(self) -> str:
        """The served name of the base model."""
        return self.served_model_name or self.model or DEFAULT_SERVED_NAME
