"""The scorer's shortcuts (packed contexts, head only at targets, last MLP only at targets) on
several architectures, and the fallback when a model breaks one of them."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from evalsuite.engine.packing import ScoreUnit  # noqa: E402
from evalsuite.engine.scoring import Scorer  # noqa: E402

VOCAB = 97


def _model(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, max_position_embeddings=128)
    if kind == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=64, **common)
    elif kind == "llama":
        cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=64, **common)
    else:
        cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                      vocab_size=VOCAB)
    cfg._attn_implementation = "sdpa"
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    return model


def _units(model):
    """Contexts shared by several continuations of mixed lengths; every other continuation is
    the model's own greedy continuation, so greedy flags come out both true and false."""
    gen = torch.Generator().manual_seed(7)

    def toks(n):
        return tuple(torch.randint(0, VOCAB, (n,), generator=gen).tolist())

    def greedy(ctx, n):
        seq = list(ctx)
        with torch.no_grad():
            for _ in range(n):
                seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
        return tuple(seq[len(ctx):])

    units = []
    for c_len, cont_lens in [(12, (3, 1, 5, 2)), (7, (4, 4)), (20, (1,)), (9, (6,)),
                             (15, (2, 7, 1)), (3, (1, 1, 1))]:
        ctx = toks(c_len)
        for k in cont_lens:
            cont = greedy(ctx, k) if len(units) % 2 else toks(k)
            units.append(ScoreUnit(len(units), ctx, cont))
    return units


def _plain(model, units):
    out = {}
    for u in units:
        seq = torch.tensor([u.context + u.continuation[:-1]])
        with torch.no_grad():
            logits = model(input_ids=seq, use_cache=False).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)[len(u.context) - 1:]
        tgt = torch.tensor(u.continuation)
        out[u.request_index] = (float(lp.gather(1, tgt[:, None]).sum()),
                                bool((lp.argmax(-1) == tgt).all()))
    return out


def _assert_same(got, want):
    for i, (lp, greedy) in want.items():
        assert got[i][0] == pytest.approx(lp, abs=1e-4), i
        assert got[i][1] == greedy, i


@pytest.mark.parametrize("kind", ["gpt_neox", "llama", "gpt2"])
def test_all_shortcuts_hold_and_scores_equal_plain_forward(kind):
    model = _model(kind)
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    paths = scorer.check_fast_paths(tol=1e-4)
    assert paths == {"share_context": True, "head_only_at_targets": True,
                     "last_mlp_at_targets": True, "last_attention_at_targets": True}
    units = _units(model)
    want = _plain(model, units)
    assert any(g for _, g in want.values())  # the greedy flags are exercised both ways
    _assert_same(scorer.score(units, max_length=64, batch_size=3), want)
    # the shortcut really skips work: the last MLP sees only the head's rows
    seen = []
    mlp = model.base_model.layers[-1].mlp if kind != "gpt2" else model.base_model.h[-1].mlp
    first_linear = next(m for m in mlp.modules() if getattr(m, "weight", None) is not None)
    handle = first_linear.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].reshape(-1, a[0].shape[-1]).shape[0]))
    scorer.score(units, max_length=64, batch_size=64)
    handle.remove()
    targets = sum(len(u.continuation) for u in units)
    assert 0 < sum(seen) <= targets  # distinct target positions only, no context positions
    assert scorer.stats.tokens_forwarded > 2 * targets


def test_a_trim_that_changes_scores_is_switched_off(monkeypatch):
    """If feeding the last MLP only the target rows changed any score (an MLP that is not
    position-wise, say), the probe notices and turns that shortcut off, keeping the others;
    scores then equal a plain forward. Simulated by scaling the trimmed MLP's output."""
    original = Scorer._trim_last_mlp

    def wrong(self, mlp_forward, hidden, *args, **kwargs):
        out = original(self, mlp_forward, hidden, *args, **kwargs)
        return out if self._rows is None or not self.trim_last_mlp else 1.5 * out

    monkeypatch.setattr(Scorer, "_trim_last_mlp", wrong)
    model = _model("gpt_neox")
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    assert scorer.check_fast_paths(tol=1e-4) == {
        "share_context": True, "head_only_at_targets": True, "last_mlp_at_targets": False,
        "last_attention_at_targets": True}
    units = _units(model)
    _assert_same(scorer.score(units, max_length=64, batch_size=4), _plain(model, units))


def test_a_model_without_a_findable_mlp_scores_without_the_trim(monkeypatch):
    import evalsuite.engine.scoring as scoring

    monkeypatch.setattr(scoring, "_last_mlp", lambda model: None)
    model = _model("llama")
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    assert scorer.trim_last_mlp is False
    assert scorer.check_fast_paths(tol=1e-4)["last_mlp_at_targets"] is False
    units = _units(model)
    _assert_same(scorer.score(units, max_length=64, batch_size=4), _plain(model, units))


def test_cpu_allocator_tuning_is_opt_out(monkeypatch):
    import sys

    from evalsuite.engine import patches

    monkeypatch.setattr(patches, "_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("EVALSUITE_MALLOC_TUNING", "0")
    assert patches.tune_cpu_allocator() is False
    monkeypatch.delenv("EVALSUITE_MALLOC_TUNING")
    if sys.platform.startswith("linux"):
        import ctypes.util

        if ctypes.util.find_library("c"):
            assert patches.tune_cpu_allocator() is True


def test_no_side_effect_outside_the_runs_switch(monkeypatch, tmp_path):
    """Creating the engine's LM tunes nothing; ``apply_run_tuning(False)`` touches nothing;
    the run's switch turns each speed-up on (docs/engine.md, "Side effects")."""
    from lm_eval import utils

    from evalsuite.engine import create_lm, patches
    from evalsuite.testing import build_tiny_model

    def forbidden():
        raise AssertionError("tuned outside the run's switch")

    monkeypatch.setattr(patches, "tune_cpu_allocator", forbidden)
    monkeypatch.setattr(patches, "cache_compiled_templates", forbidden)
    create_lm(str(build_tiny_model(tmp_path / "m")), batch_size=2)
    assert patches.apply_run_tuning(False) == patches.RunTuning(False, False, False)
    monkeypatch.undo()
    on = patches.apply_run_tuning(True, device="cuda:0")
    assert on.template_cache and on.request_memo and not on.allocator  # allocator: CPU only
    assert getattr(utils.apply_template, "_evalsuite_cached", False)


def _reference_head(rows, inverse, tokens, head):
    lp = torch.log_softmax((head(rows) if head is not None else rows).float(), dim=-1)
    picked = lp[inverse, tokens]
    return picked, lp.argmax(dim=-1)[inverse] == tokens


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_head_chunks_give_lm_evals_logprobs_and_greedy_flags_with_ties(bias, chunk):
    """``chunked_target_logprobs`` (reused buffers and ``amax`` for a bias-free fp32 head, the
    module call otherwise) equals log-softmax over all rows with lm-eval's ``argmax`` greedy
    flag, also where the maximum is tied: the first index wins, so a later tied token is not
    greedy."""
    from evalsuite.engine.scoring import chunked_target_logprobs

    torch.manual_seed(3)
    head = torch.nn.Linear(8, 11, bias=bias)
    rows = torch.randn(10, 8)
    with torch.no_grad():
        head.weight[5] = head.weight[2]  # tokens 2 and 5 always tie
        if bias:
            head.bias[5] = head.bias[2]
        rows[1] = 10 * head.weight[2]  # ... and are the maximum of row 1
        best = head(rows).argmax(-1)
    assert int(best[1]) == 2
    inverse = torch.tensor([0, 0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 9])
    tokens = torch.tensor([int(best[0]), 1, 2, 5, 5, int(best[3]), 0, 3, 10, 2,
                           int(best[7]), 4, int(best[9]), 0])
    got_lp, got_greedy = chunked_target_logprobs(rows, inverse, tokens, head=head,
                                                 chunk_rows=chunk)
    with torch.no_grad():
        want_lp, want_greedy = _reference_head(rows, inverse, tokens, head)
    assert torch.allclose(got_lp, want_lp, atol=1e-6)
    assert got_greedy.tolist() == want_greedy.tolist()
    assert want_greedy[2].item() and not want_greedy[3].item()  # row 1: token 2 wins the tie
    assert got_lp[2] == got_lp[3]


def test_head_chunks_with_tied_maxima_on_logits_rows():
    from evalsuite.engine.scoring import chunked_target_logprobs

    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 5.0, 5.0]])
    inverse = torch.tensor([0, 0, 1, 1, 2, 2])
    tokens = torch.tensor([1, 2, 0, 3, 2, 3])
    lp, greedy = chunked_target_logprobs(logits, inverse, tokens, head=None, chunk_rows=2)
    assert greedy.tolist() == [True, False, True, False, True, False]
    assert torch.allclose(lp, torch.log_softmax(logits, -1)[inverse, tokens])


def test_the_head_waits_for_rows_from_several_batches():
    """With a head chunk larger than one batch's targets, the head runs on rows gathered from
    several batches (fewer, fuller chunks) and the scores still equal a plain forward."""
    model = _model("gpt_neox")
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    scorer.check_fast_paths(tol=1e-4)
    units = _units(model)
    calls = []
    original = scorer._head_scores

    def spy(pending):
        calls.append(len(pending))
        return original(pending)

    scorer._head_scores = spy
    scorer._chunk_rows = lambda vocab: 12
    ticks = []
    _assert_same(scorer.score(units, max_length=64, batch_size=1, progress=ticks.append),
                 _plain(model, units))
    assert max(calls) > 1 and sum(calls) == scorer.stats.forward_calls
    assert sum(ticks) == len(units)


@pytest.mark.parametrize("kind", ["gpt_neox", "llama", "gpt2"])
def test_the_last_attention_computes_only_target_queries(kind, monkeypatch):
    """The last layer's attention runs SDPA for the head's rows only (plus padding queries when
    rows hold different numbers of targets), and the scores equal a plain forward."""
    import transformers.integrations.sdpa_attention as sdpa

    model = _model(kind)
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    assert scorer.check_fast_paths(tol=1e-4)["last_attention_at_targets"] is True
    units = _units(model)
    queries, original = [], sdpa.sdpa_attention_forward

    def spy(module, query, *args, **kwargs):
        queries.append(query.shape[0] * query.shape[2])
        return original(module, query, *args, **kwargs)

    want = _plain(model, units)
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", spy)
    _assert_same(scorer.score(units, max_length=64, batch_size=64), want)
    fed = scorer.stats.tokens_forwarded + scorer.stats.tokens_padded
    assert queries and sum(queries) < fed / 2  # the trimmed call sees far fewer queries


def test_an_attention_trim_that_changes_scores_is_switched_off(monkeypatch):
    from transformers.modeling_utils import AttentionInterface

    from evalsuite.engine import scoring

    model = _model("llama")
    Scorer(model, device=torch.device("cpu"), pad_token_id=0)  # registers the function
    original = AttentionInterface._global_mapping[scoring._ATTENTION_NAME]

    def wrong(module, query, *args, **kwargs):
        out, w = original(module, query, *args, **kwargs)
        scorer = model._evalsuite_scorer
        active = scorer._rows is not None and scorer.trim_last_attention
        return (1.5 * out if active else out), w

    monkeypatch.setitem(AttentionInterface._global_mapping, scoring._ATTENTION_NAME, wrong)
    scorer = Scorer(model, device=torch.device("cpu"), pad_token_id=0)
    assert scorer.check_fast_paths(tol=1e-4) == {
        "share_context": True, "head_only_at_targets": True, "last_mlp_at_targets": True,
        "last_attention_at_targets": False}
    units = _units(model)
    _assert_same(scorer.score(units, max_length=64, batch_size=4), _plain(model, units))
