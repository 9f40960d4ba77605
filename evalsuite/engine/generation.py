"""Greedy ``generate_until``: batched, left-padded, stopping per row on any stop sequence.

Follows lm-eval's ``HFLM.generate_until`` semantics (requests grouped by generation kwargs,
context left-truncated to ``max_length - max_gen_toks``, EOS added to the stop sequences, the
text cut at the first stop sequence), with contexts tokenized through the shared
:class:`~evalsuite.engine.tokens.TokenCache` and each row stopping as soon as its own text holds
a stop sequence, rather than one criterion object per stop string.
"""

from __future__ import annotations

from contextlib import nullcontext


def _stopping_criteria(tokenizer, stops: list[str], prompt_width: int):
    """A transformers StoppingCriteria: row done once its generated text contains a stop string."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    # decode only a tail long enough to contain any stop string (tokens are >= 1 character)
    lookback = max((len(s) for s in stops), default=1) + 2

    class StopOnSequences(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            generated = input_ids[:, prompt_width:]
            tails = tokenizer.batch_decode(generated[:, -lookback:])
            done = [any(s in t for s in stops) for t in tails]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnSequences()])


def generate_greedy(model, tokenizer, token_cache, requests: list[tuple[str, dict]], *,
                    device, max_length: int, default_max_gen_toks: int, batch_size: int,
                    pad_token_id: int, eos_token_id: int, autocast_dtype=None,
                    progress=None) -> list[str]:
    """Generate for ``(context, gen_kwargs)`` requests; returns texts in request order."""
    import torch
    from lm_eval.models.utils import (handle_stop_sequences, normalize_gen_kwargs,
                                      postprocess_generated_text)

    eos_text = tokenizer.decode(eos_token_id)
    order: dict[str, list[int]] = {}
    kwargs_by_key: dict[str, dict] = {}
    for i, (_, gen_kwargs) in enumerate(requests):
        key = repr(sorted(gen_kwargs.items(), key=lambda kv: kv[0]))
        order.setdefault(key, []).append(i)
        kwargs_by_key[key] = gen_kwargs

    out: list[str | None] = [None] * len(requests)
    for key, indices in order.items():
        kwargs = normalize_gen_kwargs(kwargs_by_key[key], default_max_gen_toks)
        stops = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
        max_gen_toks = int(kwargs.pop("max_gen_toks"))
        max_ctx_len = max_length - max_gen_toks
        if max_ctx_len <= 0:
            raise ValueError(f"max_gen_toks={max_gen_toks} leaves no room for context in the "
                             f"model's max_length={max_length}; lower max_gen_toks in the task")
        kwargs.pop("max_length", None)
        if not kwargs.get("do_sample"):  # greedy, as HFLM: drop the unused temperature
            kwargs.pop("temperature", None)
            kwargs["do_sample"] = False
        encoded = {i: token_cache.encode(requests[i][0])[-max_ctx_len:] for i in indices}
        indices = sorted(indices, key=lambda i: (-len(encoded[i]), requests[i][0]))
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, i in enumerate(chunk):
                toks = encoded[i]
                ids[b, width - len(toks):] = torch.tensor(toks, dtype=torch.long)
                mask[b, width - len(toks):] = 1
            ids, mask = ids.to(device), mask.to(device)
            amp = (torch.autocast(device_type="cuda", dtype=autocast_dtype)
                   if autocast_dtype is not None and device.type == "cuda" else nullcontext())
            with torch.no_grad(), amp:
                generated = model.generate(
                    input_ids=ids, attention_mask=mask, max_length=width + max_gen_toks,
                    stopping_criteria=_stopping_criteria(tokenizer, stops, width),
                    pad_token_id=pad_token_id, use_cache=True, **kwargs)
            for b, i in enumerate(chunk):
                text = tokenizer.decode(generated[b, width:].tolist(), skip_special_tokens=True)
                out[i] = postprocess_generated_text(generation=text, stop=stops,
                                                    think_end_token=None)
            if progress is not None:
                progress(len(chunk))
    return [s if s is not None else "" for s in out]
