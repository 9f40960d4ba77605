"""Engine request types against HFLM on direct lm-eval Instances: truncation, rolling
windows, empty contexts, greedy-true continuations, and reuse across checkpoints."""

from __future__ import annotations

import json

import pytest

from conftest import shared_data_path


def _instances(kind, args_list):
    from lm_eval.api.instance import Instance

    return [Instance(kind, {}, args, i) for i, args in enumerate(args_list)]



pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from evalsuite.testing import build_tiny_model, perturb_model

    root = tmp_path_factory.mktemp("series")
    a = build_tiny_model(root / "step0", hidden_size=32, num_layers=2, seed=1)
    b = perturb_model(a, root / "step1", scale=0.5, seed=7)
    other = build_tiny_model(root / "wide", hidden_size=48, num_layers=1, num_heads=3, seed=2)
    return {"a": a, "b": b, "other": other}


@pytest.fixture(scope="module")
def lambada_texts():
    path = shared_data_path("benchmarks", "lambada_openai", "lambada_openai_test.llmfoundry.jsonl")
    docs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:12]]
    return [(d["context"], " " + d["continuation"]) for d in docs]


def _hflm(path, **kw):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(path), device="cpu", batch_size=4, **kw)


def _close(a, b):
    return all(abs(x[0] - y[0]) <= max(1e-4, 5e-7 * abs(y[0])) and x[1] == y[1]
               for x, y in zip(a, b, strict=True))


def test_truncation_and_rolling_match_hflm(series, lambada_texts):
    from evalsuite.engine import EvalsuiteLM

    ours = EvalsuiteLM(str(series["a"]), max_length=48, batch_size=3)
    ref = _hflm(series["a"], max_length=48)
    # long contexts are left-truncated exactly as HFLM does; shared contexts still share
    reqs = _instances("loglikelihood", lambada_texts + [(lambada_texts[0][0], " x y z")])
    assert _close(ours.loglikelihood(reqs), ref.loglikelihood(reqs))
    rolling = _instances("loglikelihood_rolling", [(c + w,) for c, w in lambada_texts[:4]])
    got, want = ours.loglikelihood_rolling(rolling), ref.loglikelihood_rolling(rolling)
    assert all(abs(x - y) <= max(1e-4, 5e-7 * abs(y)) for x, y in zip(got, want, strict=True))


def test_empty_context_and_trailing_space(series):
    from evalsuite.engine import create_lm

    reqs = _instances("loglikelihood", [("", "Hello there"), ("The answer is ", "42"),
                                        ("Q: 2+2=", "4"), ("Q: 2+2=", "5")])
    assert _close(create_lm(series["a"]).loglikelihood(reqs), _hflm(series["a"]).loglikelihood(reqs))


def test_greedy_flags_true_for_the_models_own_continuations(series):
    from evalsuite.engine import create_lm

    lm = create_lm(series["a"], batch_size=4)
    prompts = ["Question: What is 12 plus 30?\nAnswer:", "The cat sat on the", "Once upon"]
    gens = lm.generate_until(_instances("generate_until", [
        (p, {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}) for p in prompts]))
    ref_gens = _hflm(series["a"]).generate_until(_instances("generate_until", [
        (p, {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}) for p in prompts]))
    assert gens == ref_gens
    # bytes that decode to U+FFFD do not re-encode to the generated tokens: skip those
    reqs = _instances("loglikelihood", [(p, g) for p, g in zip(prompts, gens)
                                        if g and "\ufffd" not in g])
    scores = lm.loglikelihood(reqs)
    assert scores and all(greedy for _, greedy in scores)


def test_reuse_swaps_weights_and_shares_tokenization(series, lambada_texts):
    import torch

    from evalsuite.engine import create_lm

    reqs = _instances("loglikelihood", lambada_texts[:6])
    lm_a = create_lm(series["a"])
    score_a = lm_a.loglikelihood(reqs)
    model_obj, cache = lm_a.model, lm_a.tokens
    calls = cache.n_encode_calls
    lm_b = create_lm(series["b"], reuse=lm_a)
    assert lm_b.reused_model and lm_b.model is model_obj
    assert lm_b.reused_tokens and lm_b.tokens is cache
    score_b = lm_b.loglikelihood(reqs)
    assert cache.n_encode_calls == calls  # nothing tokenized again
    fresh_b = create_lm(series["b"]).loglikelihood(reqs)
    assert score_b == fresh_b  # same weights, same numbers
    assert score_b != score_a  # and truly the new checkpoint's scores
    # lm_a handed its model to lm_b; passing lm_a again is still safe (a fresh load)
    again = create_lm(series["a"], reuse=lm_a)
    assert not again.reused_model and again.loglikelihood(reqs) == score_a
    # a model changed after loading (here: cast to bf16 by a precision step) is never reused
    again.model.to(torch.bfloat16)
    assert not create_lm(series["b"], reuse=again).reused_model
    # a different architecture is loaded fresh; the shared tokenizer still shares the cache
    lm_c = create_lm(series["other"], reuse=lm_b)
    assert not lm_c.reused_model and lm_c.reused_tokens
    assert _close(lm_c.loglikelihood(reqs), _hflm(series["other"]).loglikelihood(reqs))


def test_tokenization_cache_is_keyed_by_tokenizer_content(series, tmp_path):
    import shutil

    from evalsuite.engine import create_lm

    changed = tmp_path / "changed_tok"
    shutil.copytree(series["a"], changed)
    tok = json.loads((changed / "tokenizer.json").read_text())
    # swap two byte tokens: same architecture, different token ids for the same text
    vocab = tok["model"]["vocab"]
    ka, kb = "a", "b"
    vocab[ka], vocab[kb] = vocab[kb], vocab[ka]
    (changed / "tokenizer.json").write_text(json.dumps(tok))
    lm_a = create_lm(series["a"])
    lm_x = create_lm(changed, reuse=lm_a)
    assert lm_x.reused_model and not lm_x.reused_tokens
    assert lm_x.tokens.fingerprint != lm_a.tokens.fingerprint
    reqs = _instances("loglikelihood", [("abba", " ab")])
    assert _close(lm_x.loglikelihood(reqs), _hflm(changed).loglikelihood(reqs))


def test_cuda_paths_are_guarded():
    import torch

    from evalsuite.engine.loading import resolve_device, resolve_dtype

    assert resolve_dtype("float32", torch.device("cpu")) == (torch.float32, None)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_dtype("autocast-bfloat16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    from evalsuite.engine import EvalsuiteLM

    assert get_model("evalsuite") is EvalsuiteLM


def test_prompt_templates_compile_once_and_render_the_same():
    """The runner's template cache changes how often Jinja compiles, never the text."""
    from lm_eval import utils

    from evalsuite.engine.patches import cache_compiled_templates

    doc = {"question": "What is 2 + 2?", "choices": {"text": ["3", "4"]}, "answerKey": "B"}
    templates = ["Question: {{question}}\nAnswer:", "{{choices.text}}",
                 "{{ question | regex_replace('\\\\d', '#') }}"]
    before = [utils.env.from_string(t).render(**doc) for t in templates]
    cache_compiled_templates()
    cache_compiled_templates()  # idempotent
    assert utils.apply_template._evalsuite_cached
    assert [utils.apply_template(t, doc) for t in templates] == before
    compiles = []
    original = utils.env.compile
    utils.env.compile = lambda *a, **k: compiles.append(1) or original(*a, **k)
    try:
        for _ in range(5):
            utils.apply_template(templates[0], doc)
    finally:
        utils.env.compile = original
    assert compiles == []  # already compiled above: served from the cache


@pytest.mark.parametrize("kind", ["bpe", "byte"])
def test_batched_prefetch_gives_the_ids_of_one_call_per_string(kind, lambada_texts):
    """``prefetch_pairs`` encodes all strings of a request list in batched tokenizer calls; the
    pairs must equal the one-string-at-a-time encodings (trailing spaces, a BOS-prefixed
    context, a repeated context, an empty context)."""
    from evalsuite.engine.tokens import TokenCache
    from evalsuite.testing import build_bpe_tokenizer, build_byte_tokenizer

    texts = [c + w for c, w in lambada_texts[:40]]
    tok = build_bpe_tokenizer(texts, vocab_size=400) if kind == "bpe" else build_byte_tokenizer()
    bos = tok.decode(tok.eos_token_id)
    pairs = list(lambada_texts[:40]) + [
        ("Question: 2 + 2 =  ", "4"), ("Question: 2 + 2 =  ", "5"), (bos + "Hello", " world"),
        ("", "lone continuation"), ("trailing\n", "next line")]
    prefix = tok.eos_token_id

    one = TokenCache(tok, prefix_token_id=prefix)
    want = [one.encode_pair(c, w) for c, w in pairs]
    batched = TokenCache(tok, prefix_token_id=prefix)
    batched.prefetch_pairs(pairs)
    calls = batched.n_encode_calls
    assert calls < len(pairs) / 4
    assert [batched.encode_pair(c, w) for c, w in pairs] == want
    assert batched.n_encode_calls == calls + 1  # only the empty-context continuation
