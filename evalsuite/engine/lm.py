"""``EvalsuiteLM``: the engine behind lm-eval's ``LM`` interface (registered as ``"evalsuite"``).

lm-eval tasks drive it unchanged (``simple_evaluate(model=lm, ...)`` or ``--model evalsuite``).
What differs from lm-eval's ``HFLM`` is only how the same numbers are computed:

- request strings are tokenized once per tokenizer (:mod:`.tokens`), shared across checkpoints;
- a context shared by several continuations is run once (:mod:`.packing`);
- log-softmax only at continuation positions (:mod:`.scoring`);
- one model object per architecture, new checkpoints' weights copied in (:mod:`.loading`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from . import loading
from .generation import generate_greedy
from .packing import ScoreUnit, truncate_unit
from .scoring import Scorer
from ..series import hash_tokenizer_files
from .tokens import TokenCache, fingerprint_tokenizer

log = logging.getLogger(__name__)

DEFAULT_CPU_BATCH_SIZE = 16
MAX_GEN_TOKS = 256  # lm-eval's default when a task sets none
#: CUDA ``batch_size="auto"``: (architecture key, row width) -> rows per batch, found once per
#: process; every checkpoint of a series (and every group on a Ray worker) reuses it.
AUTO_BATCH_SIZES: dict[tuple, int] = {}


@register_model("evalsuite")
class EvalsuiteLM(LM):
    """Score lm-eval requests with a Hugging Face causal LM; see :func:`create_lm`.

    Constructor keywords mirror ``create_lm`` so ``--model evalsuite --model_args
    pretrained=PATH,batch_size=8`` works from lm-eval's CLI too.
    """

    def __init__(self, pretrained: str, *, device: str = "cpu", batch_size: int | str = 8,
                 dtype: str = "float32", trust_remote_code: bool = False,
                 add_bos_token: bool | None = None, max_length: int | None = None,
                 reuse: "EvalsuiteLM | None" = None, **_ignored) -> None:
        super().__init__()
        self.source = str(pretrained)
        self._device = loading.resolve_device(device)
        self.weight_dtype, self.autocast_dtype = loading.resolve_dtype(str(dtype), self._device)
        self.dtype_name = str(dtype)
        self.trust_remote_code = bool(trust_remote_code)
        self.add_bos_token = add_bos_token
        self._batch_size_arg = _parse_batch_size(batch_size)
        self.batch_sizes: dict[int, int] = {}
        self.reused_model = False
        self.reused_tokens = False
        self._load(reuse)
        self._max_length = int(max_length) if max_length else self._resolve_max_length()

    # ------------------------------------------------------------------ loading
    def _load(self, reuse: "EvalsuiteLM | None") -> None:
        config = loading.load_config(self.source, self.trust_remote_code)
        file_hash = hash_tokenizer_files(self.source)
        same_settings = (reuse is not None and isinstance(reuse, EvalsuiteLM)
                         and reuse.add_bos_token == self.add_bos_token)
        if same_settings and file_hash is not None and file_hash == reuse.tokenizer_file_hash:
            self.tokenizer = reuse.tokenizer
            fingerprint = reuse.tokens.fingerprint
        else:
            self.tokenizer = loading.load_tokenizer(self.source, self.trust_remote_code)
            fingerprint = fingerprint_tokenizer(self.tokenizer, self.add_bos_token)
        self.tokenizer_file_hash = file_hash
        if same_settings and reuse.tokens.fingerprint == fingerprint:
            self.tokens = reuse.tokens
            self.tokens.tokenizer = self.tokenizer
            self.reused_tokens = True
        else:
            prefix = (self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None
                      else self.tokenizer.eos_token_id)
            self.tokens = TokenCache(self.tokenizer, prefix_token_id=prefix,
                                     add_bos_token=self.add_bos_token, fingerprint=fingerprint)

        model = None
        if (reuse is not None and isinstance(reuse, EvalsuiteLM) and reuse.model is not None
                and reuse._device == self._device and reuse.weight_dtype == self.weight_dtype
                and next(reuse.model.parameters()).dtype == self.weight_dtype
                and reuse.trust_remote_code == self.trust_remote_code
                and loading.comparable_config(reuse.model.config)
                == loading.comparable_config(config)):
            if loading.swap_weights(reuse.model, self.source):
                model = reuse.model
                model.config._name_or_path = self.source
                self.reused_model = True
                scorer = reuse.scorer
                reuse.model = None  # the old LM no longer owns valid weights
                reuse.scorer = None
        if model is None:
            model = loading.load_model(self.source, device=self._device,
                                       weight_dtype=self.weight_dtype,
                                       trust_remote_code=self.trust_remote_code)
            scorer = Scorer(model, device=self._device, pad_token_id=self.tokenizer.pad_token_id,
                            autocast_dtype=self.autocast_dtype)
            exact = self.weight_dtype.is_floating_point and str(self.weight_dtype) == "torch.float32"
            self.fast_paths = scorer.check_fast_paths(
                tol=1e-4 if exact and self.autocast_dtype is None else 5e-2)
        else:
            self.fast_paths = reuse.fast_paths
            scorer.stats = type(scorer.stats)()
        self.model = model
        self.scorer = scorer

    def _resolve_max_length(self) -> int:
        from lm_eval.models.utils import resolve_max_length

        return resolve_max_length(self.model.config, self.tokenizer, default=2048)

    # ------------------------------------------------------------------ lm-eval LM properties
    @property
    def device(self):
        return self._device

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def batch_size(self) -> int | str:
        return self._batch_size_arg

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokens.prefix_token_id

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    @property
    def config(self):
        return self.model.config

    @property
    def stats(self):
        """Work counters of this checkpoint's scoring (see :class:`~.scoring.ScoreStats`)."""
        return self.scorer.stats

    def get_model_info(self) -> dict:
        return {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                "model_dtype": str(self.weight_dtype), "model_source": self.source,
                "engine": "evalsuite", "engine_reused_model": self.reused_model,
                "engine_reused_tokenization": self.reused_tokens,
                "engine_fast_paths": dict(self.fast_paths)}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None) -> list[int]:
        return list(self.tokens.encode(string, add_special_tokens))

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------ batch sizes
    def _fixed_batch_size(self) -> int | None:
        if isinstance(self._batch_size_arg, int):
            return self._batch_size_arg
        if self._device.type != "cuda":
            return DEFAULT_CPU_BATCH_SIZE
        return None

    def _auto_batch_size_fn(self):
        """CUDA only: the largest batch of rows fitting in memory, searched once per process for
        each architecture, dtype and row width (:data:`AUTO_BATCH_SIZES`)."""
        import torch

        arch = loading.architecture_key(self.model.config, self.weight_dtype, self.autocast_dtype,
                                        self._device)

        def fn(rows_remaining) -> int:
            width = rows_remaining[0].length
            bucket = 1 << max(0, (width - 1).bit_length())
            key = (arch, bucket)
            if key not in AUTO_BATCH_SIZES:
                def try_forward(n: int) -> None:
                    ids = torch.zeros((n, bucket), dtype=torch.long, device=self._device)
                    with torch.no_grad():
                        self.model(input_ids=ids, use_cache=False)
                    torch.cuda.synchronize(self._device)
                AUTO_BATCH_SIZES[key] = loading.find_batch_size(try_forward)
                torch.cuda.empty_cache()
            self.batch_sizes[bucket] = AUTO_BATCH_SIZES[key]
            self._last_auto_key = key
            return AUTO_BATCH_SIZES[key]
        return fn

    def _halve_batch_size(self) -> bool:
        """After a CUDA out-of-memory error: halve the batch size the failed pass used (the
        cached auto size of its row width, or the fixed size). False when it was already 1."""
        if isinstance(self._batch_size_arg, int):
            if self._batch_size_arg <= 1:
                return False
            self._batch_size_arg //= 2
            return True
        key = getattr(self, "_last_auto_key", None)
        if key is None or AUTO_BATCH_SIZES.get(key, 1) <= 1:
            return False
        AUTO_BATCH_SIZES[key] //= 2
        log.warning("CUDA out of memory at batch %d; retrying the same requests at %d",
                    AUTO_BATCH_SIZES[key] * 2, AUTO_BATCH_SIZES[key])
        return True

    def _on_device(self, run):
        """``run()``; on CUDA, an out-of-memory error halves the batch and runs it again (the
        same requests, so the numbers do not depend on where memory ran out)."""
        if self._device.type != "cuda":
            return run()
        return loading.retry_on_oom(run, self._halve_batch_size)

    def _score_units(self, units: list[ScoreUnit], progress=None) -> dict[int, tuple[float, bool]]:
        before = dataclasses.replace(self.scorer.stats,
                                     batch_sizes=list(self.scorer.stats.batch_sizes))

        def run():
            # A retried pass (CUDA out of memory) must not count the failed attempt's work.
            for f in dataclasses.fields(before):
                value = getattr(before, f.name)
                setattr(self.scorer.stats, f.name, list(value) if isinstance(value, list) else value)
            fixed = self._fixed_batch_size()
            return self.scorer.score(units, max_length=self.max_length, batch_size=fixed,
                                     batch_size_fn=None if fixed else self._auto_batch_size_fn(),
                                     progress=progress)
        return self._on_device(run)

    # ------------------------------------------------------------------ request types
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        units = []
        self.tokens.prefetch_pairs(req.args for req in requests)
        for i, req in enumerate(requests):
            context, continuation = req.args
            ctx, cont = self.tokens.encode_pair(context, continuation)
            units.append(truncate_unit(i, ctx, cont, self.max_length))
        scores = self._score_units(units)
        out = [scores[i] for i in range(len(requests))]
        for req, res in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        units, owner = [], []
        for r, req in enumerate(requests):
            (string,) = req.args
            windows = get_rolling_token_windows(
                token_list=list(self.tokens.encode(string)), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)
            for ctx, cont in map(make_disjoint_window, windows):
                units.append(truncate_unit(len(units), tuple(ctx), tuple(cont), self.max_length))
                owner.append(r)
        scores = self._score_units(units)
        totals = [0.0] * len(requests)
        for unit, r in zip(units, owner):
            totals[r] += scores[unit.request_index][0]
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        def run():
            batch = self._fixed_batch_size() or self._generation_batch_size()
            return generate_greedy(
                self.model, self.tokenizer, self.tokens, [req.args for req in requests],
                device=self._device, max_length=self.max_length,
                default_max_gen_toks=MAX_GEN_TOKS, batch_size=batch,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eot_token_id,
                autocast_dtype=self.autocast_dtype)
        out = self._on_device(run)
        for req, text in zip(requests, out):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return out

    def _generation_batch_size(self) -> int:
        """CUDA auto batch size for generation: rows of full model length must fit."""
        from .packing import PackedRow
        fn = self._auto_batch_size_fn()
        return fn([PackedRow(tuple(range(self.max_length)))])

    # ------------------------------------------------------------------ accounting
    def minimum_tokens(self, requests) -> int:
        """Tokens a perfect scorer must feed for these loglikelihood requests: every distinct
        context once plus every continuation once (the benchmark's yardstick)."""
        contexts, total = set(), 0
        self.tokens.prefetch_pairs(req.args for req in requests)
        for req in requests:
            ctx, cont = self.tokens.encode_pair(*req.args)
            unit = truncate_unit(0, ctx, cont, self.max_length)
            contexts.add(unit.context)
            total += len(unit.continuation)
        return total + sum(len(c) for c in contexts)


def _parse_batch_size(batch_size: int | str) -> int | str:
    if isinstance(batch_size, str):
        if batch_size.startswith("auto"):
            return "auto"
        batch_size = int(batch_size)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    return int(batch_size)


def create_lm(source: str | Path, *, device: str = "cpu", batch_size: int | str = 8,
              dtype: str = "float32", trust_remote_code: bool = False,
              reuse: EvalsuiteLM | None = None) -> EvalsuiteLM:
    """An lm-eval ``LM`` for the Hugging Face model folder ``source``.

    Pass the LM returned for the previous checkpoint of a series as ``reuse``: when the
    architecture, device and dtype match, its model object is kept and the new weights are
    copied in (``reuse`` must not be used afterwards); when the tokenizer's content matches,
    its tokenization cache is shared. Anything that does not match is loaded fresh, so passing
    ``reuse`` is always safe.

    ``batch_size`` counts packed rows per forward pass; ``"auto"`` searches the largest that fits
    on CUDA and uses 16 on CPU. ``dtype``: ``"float32"``, ``"bfloat16"``/``"float16"`` (weights),
    or ``"autocast-bfloat16"`` (fp32 weights, bf16 matmuls; CUDA only).
    """
    source = str(source)
    if not Path(source).is_dir():
        raise FileNotFoundError(f"model source {source!r} is not a local folder; create_lm "
                                "takes a Hugging Face model folder (config.json, weights, "
                                "tokenizer files)")
    return EvalsuiteLM(source, device=device, batch_size=batch_size, dtype=dtype,
                       trust_remote_code=trust_remote_code, reuse=reuse)
