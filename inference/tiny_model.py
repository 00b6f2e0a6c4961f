"""Make a tiny, random-weight Llama with a tokenizer and LoRA adapters, offline.

``python -m inference.tiny_model OUT_DIR --adapters N`` (console script
``brix-tiny-model``) writes a model that vLLM's CPU backend loads in seconds,
for machines with no model hub: tests, ``make up`` and CI use it. Everything
is made from fixed seeds, so two builds with the same parameters are the same
model and the same text comes out of it.

Layout of ``OUT_DIR``::

    config.json, generation_config.json   LlamaForCausalLM (hidden 64, 2 heads of 32,
                                          2 layers, vocab ~512), float32
    model.safetensors                     random weights (seeded)
    tokenizer.json, tokenizer_config.json byte-level BPE trained here on a generated
    (+ chat_template.jinja)               corpus, with a chat template
    adapters/<name>/                      PEFT LoRA adapters (q_proj, v_proj, rank 8),
      adapter_config.json                 named tiny-lora-1 .. tiny-lora-N; lora_B is
      adapter_model.safetensors           non-zero, so each one changes the outputs
    brix-tiny-model.json                  marker with the build parameters, written last

Caching: when ``OUT_DIR`` holds the marker with the same parameters, the
command does nothing and says so in one line. A build happens in a sibling
directory (``OUT_DIR.partial-<pid>``) that is renamed into place once
complete, so an interrupted build leaves no half model at ``OUT_DIR``; its
leftover is removed by the next run. A directory at ``OUT_DIR`` that is not a
tiny model made by this command is never deleted: the command stops instead.

Why these sizes: vLLM's CPU attention needs head_dim >= 32, so hidden 64 with
2 heads is the smallest shape it takes. The vocabulary is small so the model
and the tokenizer train and load in seconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

MARKER: Final = "brix-tiny-model.json"
# Bump when the output of a build with the same parameters changes.
FORMAT_VERSION: Final = 2
ADAPTER_PREFIX: Final = "tiny-lora-"
SEED: Final = 1234

CHAT_TEMPLATE: Final = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS: Final = (UNK, BOS, EOS, PAD)


@dataclass(frozen=True, kw_only=True)
class TinyModelSpec:
    """Everything that determines the output of a build (recorded in the marker)."""

    adapters: int = 2
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    lora_rank: int = 8
    seed: int = SEED
    format_version: int = FORMAT_VERSION

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def adapter_names(self) -> list[str]:
        return [f"{ADAPTER_PREFIX}{i}" for i in range(1, self.adapters + 1)]


def _lib(name: str) -> Any:
    """Import a heavy, partly typed library lazily (only a build needs it), as ``Any``."""
    return importlib.import_module(name)


# --- the corpus ------------------------------------------------------------

_WORDS: Final = (  # noqa: SIM905 - a paragraph reads better than 60 quoted words
    "the a an model serves tokens requests pods gateway adapter cluster engine queue "
    "scale replica prompt answer fast small large cache metric latency stream load "
    "unload route node kernel memory batch learn write read time first last every "
    "one two three four five red green blue river stone light cloud paper garden "
    "quiet bright morning evening city window bridge music story question reply"
).split()


def corpus(seed: int, lines: int = 4000) -> Iterator[str]:
    """Deterministic English-like text: enough for a byte-level BPE of a few hundred merges."""
    rng = random.Random(seed)  # noqa: S311 - reproducible text, not secrets
    for i in range(lines):
        n = rng.randint(4, 14)
        words = [rng.choice(_WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        end = rng.choice([".", ".", ".", "?", "!"])
        yield f"{' '.join(words)}{end} {i % 97} + {i % 13} = {i % 97 + i % 13}"


# --- the build -------------------------------------------------------------


def _build_tokenizer(spec: TinyModelSpec, out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    PreTrainedTokenizerFast = _lib("transformers").PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(spec.seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=2048,
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(out)
    return fast


def _build_model(spec: TinyModelSpec, tokenizer: Any, out: Path) -> None:
    import torch

    transformers = _lib("transformers")
    GenerationConfig = transformers.GenerationConfig
    LlamaConfig = transformers.LlamaConfig
    LlamaForCausalLM = transformers.LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=2048,
        # Larger than Llama's 0.02 so greedy decoding is not a flat argmax.
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)


def _build_adapter(spec: TinyModelSpec, base: Path, out: Path, index: int) -> None:
    import torch

    peft = _lib("peft")
    LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model
    LlamaForCausalLM = _lib("transformers").LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=2 * spec.lora_rank,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights="gaussian",
    )
    peft_model = get_peft_model(model, lora)
    # PEFT starts lora_B at zero (an adapter that changes nothing); fill A and B
    # from a seed per adapter so each adapter changes the outputs, differently.
    gen = torch.Generator().manual_seed(spec.seed + 1000 * index)
    with torch.no_grad():
        for name, param in sorted(peft_model.named_parameters()):
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    # PEFT's model card names the build directory; it is not needed to load the adapter.
    (out / "README.md").unlink(missing_ok=True)
    # PEFT records where the base came from; a relative name keeps the output
    # independent of the build directory. It keeps target_modules as a set, whose
    # order changes with the hash seed: sort it so two builds are byte-identical.
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "tiny-llama"
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build(spec: TinyModelSpec, out: Path) -> None:
    """Write the complete model into ``out`` (a new, empty directory); marker last."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is made here; never ask a hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _lib("transformers").utils.logging.disable_progress_bar()
    out.mkdir(parents=True)
    tokenizer = _build_tokenizer(spec, out)
    _build_model(spec, tokenizer, out)
    for i, name in enumerate(spec.adapter_names(), start=1):
        _build_adapter(spec, out, out / "adapters" / name, i)
    _make_readable(out)
    (out / MARKER).write_text(json.dumps(asdict(spec), indent=2, sort_keys=True) + "\n")


def _make_readable(out: Path) -> None:
    """Random public weights: readable by every user (the safetensors writer makes its
    file 0600), so an engine container running as its own non-root user can read a
    model made on the host and mounted into it. What already is stays untouched, so
    a model in a cache shared with other users (theirs to chmod) is used as it is."""
    for path in [out, *out.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        wanted = mode | (0o555 if path.is_dir() else 0o444)
        if wanted != mode:
            path.chmod(wanted)


# --- caching ---------------------------------------------------------------


def read_marker(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(spec: TinyModelSpec, out: Path) -> bool:
    """Whether ``out`` holds a finished build with exactly these parameters."""
    if read_marker(out) != asdict(spec):
        return False
    needed = [out / "config.json", out / "model.safetensors", out / "tokenizer.json"]
    for name in spec.adapter_names():
        needed += [out / "adapters" / name / "adapter_config.json",
                   out / "adapters" / name / "adapter_model.safetensors"]
    return all(p.is_file() for p in needed)


def _is_ours_or_empty(out: Path) -> bool:
    return not any(out.iterdir()) or (out / MARKER).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_partials(out: Path) -> None:
    """Remove what interrupted builds left behind (not the partial of a build still running)."""
    for leftover in out.parent.glob(f"{out.name}.partial-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if leftover.is_dir() and not (pid.isdigit() and _pid_alive(int(pid))):
            shutil.rmtree(leftover, ignore_errors=True)


def ensure(spec: TinyModelSpec, out: Path) -> bool:
    """Make sure ``out`` holds the model for ``spec``; return False when it already did."""
    if is_complete(spec, out):
        _make_readable(out)  # a model made before the build did so
        return False
    if out.exists() and (not out.is_dir() or not _is_ours_or_empty(out)):
        raise FileExistsError(
            f"{out} exists and is not a tiny model made by brix: remove it or pick another OUT_DIR"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_partials(out)
    partial = out.parent / f"{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)  # left by an earlier process with our pid
    try:
        build(spec, partial)
        if out.exists():
            if is_complete(spec, out):  # someone else finished the same build meanwhile
                return False
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return True


# --- command line ----------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m inference.tiny_model",
        description="Make a tiny random-weight Llama, its tokenizer and LoRA adapters (offline).",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="Where to write the model.")
    p.add_argument("--adapters", type=int, default=2, help="How many LoRA adapters to make.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.adapters < 0:
        print("brix-tiny-model: --adapters must be 0 or more", file=sys.stderr)
        return 2
    spec = TinyModelSpec(adapters=args.adapters)
    out: Path = args.out_dir.resolve()
    try:
        made = ensure(spec, out)
    except FileExistsError as exc:
        print(f"brix-tiny-model: {exc}", file=sys.stderr)
        return 1
    if made:
        names = ", ".join(spec.adapter_names()) or "none"
        print(f"tiny model written to {out} (adapters: {names})")
    else:
        print(f"tiny model already at {out} with the same parameters: nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
