"""The translate stage's config: one dataclass, loaded from a recipe with ``key=value`` overrides.

>>> cfg = load_config(TranslateConfig, None, ["input=pairs.jsonl", "output=out", "engine=openai",
...                                            "base_url=http://127.0.0.1:8000/v1"])
>>> cfg.engine, cfg.pack_units
('openai', 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jprefs.config import check_ranges, load_config  # noqa: F401  (load_config re-exported for the doctest and callers)
from jprefs.errors import ConfigError


def _h(text: str) -> dict:
    return {"help": text}


@dataclass
class TranslateConfig:
    """Everything a translation job needs; saved as ``config.yaml`` next to the output."""

    # ---- input / output
    input: str = field(default="", metadata=_h("input file (JSONL/Parquet/CSV/...) or Hub dataset id"))
    source: str = field(default="jprefs", metadata=_h(
        "source adapter (hh-rlhf, webgpt, gptj-pairwise, summarize, generic, ...); 'jprefs' = canonical pairs"))
    mapping: dict = field(default_factory=dict, metadata=_h("field mapping for the generic adapter"))
    split: str = field(default="train", metadata=_h("split of a Hub dataset"))
    license: str = field(default="", metadata=_h("licence to record when the source does not give one"))
    limit: int = field(default=0, metadata=_h("translate only the first N input rows (0 = all)"))
    output: str = field(default="", metadata=_h("output folder (pairs.jsonl, binary.jsonl, rejects.jsonl, README.md)"))
    dataset_name: str = field(default="", metadata=_h("name shown in the dataset card (default: output folder name)"))
    keep_source_text: bool = field(default=False, metadata=_h("also store the English row in meta.translation.source"))
    # ---- engine
    engine: str = field(default="vllm", metadata=_h("vllm | openai | transformers"))
    model: str = field(default="cyberagent/calm3-22b-chat", metadata=_h("model id or path (for openai: the served name)"))
    revision: str = field(default="", metadata=_h("model revision (commit) recorded per row and passed to the engine"))
    base_url: str = field(default="", metadata=_h(
        "openai engine: server URL ending in /v1; credentials in it (user:KEY@, ?api_key=) are used but saved "
        "masked (user:***@), so give them again on each run; better: api_key_env"))
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=_h("openai engine: env var holding the API key (never saved)"))
    concurrency: int = field(default=8, metadata=_h("openai engine: requests in flight"))
    timeout: float = field(default=120.0, metadata=_h("openai engine: per-request timeout, seconds"))
    max_retries: int = field(default=6, metadata=_h("openai engine: retries on 429/5xx/timeouts/connection errors"))
    backoff: float = field(default=1.0, metadata=_h("openai engine: base of the exponential backoff, seconds"))
    tensor_parallel_size: int = field(default=1, metadata=_h("vllm engine: GPUs per model replica"))
    max_model_len: int = field(default=0, metadata=_h("vllm engine: context length (0 = the model's)"))
    gpu_memory_utilization: float = field(default=0.9, metadata=_h("vllm engine: share of GPU memory to use"))
    dtype: str = field(default="auto", metadata=_h("vllm/transformers: auto, bfloat16, float16, float32"))
    device: str = field(default="auto", metadata=_h("transformers engine: auto, cpu, cuda"))
    batch_size: int = field(default=8, metadata=_h("transformers engine: sequences per generate() call"))
    # ---- prompt and sampling
    template: str = field(default="builtin:en-ja", metadata=_h("prompt template YAML"))
    temperature: float = field(default=0.0, metadata=_h("sampling temperature (0 = greedy: reproducible)"))
    top_p: float = field(default=1.0, metadata=_h("nucleus sampling"))
    max_tokens: int = field(default=2048, metadata=_h("max new tokens per request"))
    seed: int = field(default=0, metadata=_h("sampling seed"))
    stop: list[str] = field(default_factory=list, metadata=_h("stop strings"))
    # ---- segmentation, packing, checkpoints
    max_unit_tokens: int = field(default=1024, metadata=_h(
        "split texts over this many (estimated) tokens at paragraph/sentence boundaries"))
    pack_units: int = field(default=1, metadata=_h(
        "units per request (>1 packs short units to cut instruction overhead where there is no prefix cache)"))
    pack_max_tokens: int = field(default=768, metadata=_h("max (estimated) source tokens in one packed request"))
    chunk_size: int = field(default=256, metadata=_h("requests per engine call and per checkpoint file"))
    cache_dir: str = field(default="", metadata=_h("translation cache/checkpoints (default OUTPUT/cache)"))
    shard: str = field(default="", metadata=_h("'i/n': translate only shard i of n (0-based); join with `jprefs translate merge`"))
    # ---- quality checks
    min_japanese_ratio: float = field(default=0.5, metadata=_h("min kana+kanji share of letters"))
    min_letters: int = field(default=20, metadata=_h("apply the Japanese-share check to sources with this many letters"))
    max_english_run: int = field(default=6, metadata=_h("flag runs of this many English words"))
    min_length_ratio: float = field(default=0.15, metadata=_h("min translated/source characters"))
    max_length_ratio: float = field(default=2.5, metadata=_h("max translated/source characters"))
    min_chars: int = field(default=40, metadata=_h("apply the length-ratio check to sources this long"))
    reject_on: list[str] = field(default_factory=lambda: ["empty", "truncated", "low_japanese_ratio", "leftover_english",
                                                          "length_ratio", "repetition", "refusal", "placeholder_lost",
                                                          "low_similarity", "identical_after_translation", "template_leak"],
                                 metadata=_h("flags that send a row to rejects.jsonl (others are only recorded)"))
    similarity_model: str = field(default="", metadata=_h(
        "sentence-transformers model for source/translation similarity (empty = off), e.g. intfloat/multilingual-e5-small"))
    min_similarity: float = field(default=0.75, metadata=_h("min cosine similarity when similarity_model is set"))

    def validate(self) -> None:
        from jprefs.translate.engines import ENGINES
        from jprefs.translate.quality import FLAGS

        if self.engine not in ENGINES:
            raise ConfigError(f"config key 'engine': unknown engine {self.engine!r}; available: {', '.join(ENGINES)}")
        if self.engine == "openai" and not self.base_url:
            raise ConfigError("config key 'base_url' is required with engine=openai\n"
                              "  fix: --base-url http://127.0.0.1:8000/v1 (e.g. a `vllm serve` server)")
        bad = [f for f in self.reject_on if f not in FLAGS]
        if bad:
            raise ConfigError(f"config key 'reject_on': unknown flag(s) {bad}; valid: {', '.join(FLAGS)}")
        for k in ("max_unit_tokens", "pack_units", "pack_max_tokens", "chunk_size", "max_tokens"):
            if getattr(self, k) < 1:
                raise ConfigError(f"config key '{k}': must be >= 1, got {getattr(self, k)}")
        check_ranges(self, {"timeout": "> 0", "backoff": ">= 0", "gpu_memory_utilization": "(0, 1]",
                            "temperature": ">= 0", "top_p": "(0, 1]", "min_japanese_ratio": "[0, 1]",
                            "min_length_ratio": ">= 0", "max_length_ratio": "> 0"})
        if self.min_length_ratio >= self.max_length_ratio:
            raise ConfigError(f"config keys 'min_length_ratio' ({self.min_length_ratio}) and 'max_length_ratio' "
                              f"({self.max_length_ratio}): the minimum must be below the maximum")
        self.shard_index()

    def shard_index(self) -> tuple[int, int]:
        """``"1/4"`` -> ``(1, 4)``; no shard -> ``(0, 1)``."""
        if not self.shard:
            return 0, 1
        try:
            i, n = (int(x) for x in self.shard.split("/"))
        except ValueError:
            i, n = -1, 0
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"config key 'shard': expected 'i/n' with 0 <= i < n, got {self.shard!r} (e.g. --shard 0/4)")
        return i, n

    def sampling_dict(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "stop": list(self.stop)}
